"""Compile a :class:`StructuredSpec` into an llguidance matcher, once per spec (LRU cache).

Parameters: ``cache_size`` compiled grammars are kept (least recently used dropped). The
llguidance tokenizer (the vocabulary as byte strings, ~0.4 s for a 49k vocabulary) is built once,
on first use, and its time is reported apart (``tokenizer_setup_s``). A compiled grammar is kept as
a template matcher in its initial state; each request gets a ``deep_copy`` (microseconds).

Thread safety: the server compiles on its threads (to answer 400 before admission) while the
engine thread copies templates; one lock guards the cache and the tokenizer, and is not held
while a grammar compiles.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict

from treadle.structured.spec import StructuredSpec

log = logging.getLogger("treadle.structured")


class GrammarError(ValueError):
    """The spec cannot be compiled; the message says what is wrong or unsupported."""


class GrammarCompiler:
    def __init__(self, tokenizer_json: str, vocab_size: int, eos_token_ids: tuple[int, ...],
                 cache_size: int = 256) -> None:
        self._tokenizer_json, self.vocab_size = tokenizer_json, vocab_size
        self.eos_token_ids = tuple(eos_token_ids)
        self.cache_size = cache_size
        self._cache: OrderedDict[StructuredSpec, object] = OrderedDict()
        self._lock = threading.Lock()
        self._tok: object | None = None
        self.tokenizer_setup_s: float | None = None
        self.compiles = 0  # grammars compiled (cache misses)
        self.last_compile_s: float | None = None

    @property
    def ll_tokenizer(self):  # noqa: ANN201 - llguidance.LLTokenizer
        with self._lock:
            return self._tokenizer_locked()

    def _tokenizer_locked(self):  # noqa: ANN202
        if self._tok is None:
            from llguidance import LLTokenizer

            t0 = time.perf_counter()
            self._tok = LLTokenizer(self._tokenizer_json, n_vocab=self.vocab_size,
                                    eos_token=list(self.eos_token_ids) or None)
            self.tokenizer_setup_s = time.perf_counter() - t0
            log.info("structured outputs: grammar tokenizer (%d tokens) ready in %.2f s", self.vocab_size,
                     self.tokenizer_setup_s)
        return self._tok

    def template(self, spec: StructuredSpec):  # noqa: ANN201 - llguidance.LLMatcher
        """The compiled matcher of ``spec`` in its initial state (do not advance it: copy it)."""
        from llguidance import LLMatcher

        with self._lock:
            hit = self._cache.get(spec)
            if hit is not None:
                self._cache.move_to_end(spec)
                return hit
            tok = self._tokenizer_locked()
        # Compiled outside the lock (llguidance releases the GIL): a large grammar compiling for a
        # new request does not hold up the engine thread copying cached ones.
        t0 = time.perf_counter()
        grammar = to_grammar(spec)
        error = LLMatcher.validate_grammar(grammar, tok)
        if error and not error.startswith("WARNING"):
            raise GrammarError(error.strip())
        matcher = LLMatcher(tok, grammar, log_level=0)
        if matcher.is_error():
            raise GrammarError(matcher.get_error().strip())
        with self._lock:
            self.last_compile_s = time.perf_counter() - t0
            self.compiles += 1
            matcher = self._cache.setdefault(spec, matcher)
            self._cache.move_to_end(spec)
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
            return matcher

    def matcher(self, spec: StructuredSpec):  # noqa: ANN201
        """A fresh matcher for one request."""
        return self.template(spec).deep_copy()


def to_grammar(spec: StructuredSpec) -> str:
    """The llguidance grammar text of ``spec`` (raises GrammarError for malformed input)."""
    from llguidance import LLMatcher
    from llguidance.gbnf_to_lark import any_to_lark

    if spec.kind == "json":
        try:
            return LLMatcher.grammar_from_json_schema(
                spec.source, defaults={"whitespace_flexible": spec.whitespace_flexible})
        except ValueError as e:
            raise GrammarError(f"invalid JSON schema: {e}") from None
    if spec.kind == "regex":
        return LLMatcher.grammar_from_regex(spec.source)
    if spec.kind == "choice":
        options = json.loads(spec.source)
        return LLMatcher.grammar_from_lark("start: " + " | ".join(json.dumps(o) for o in options))
    try:  # Lark as llguidance reads it; GBNF (llama.cpp) is converted first
        lark = any_to_lark(spec.source)
    except Exception as e:  # noqa: BLE001 - the converter raises many kinds on bad input
        raise GrammarError(f"invalid grammar: {e}") from None
    return LLMatcher.grammar_from_lark(lark)
