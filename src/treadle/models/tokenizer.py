"""Tokenizer and chat template from a Hugging Face folder, without importing transformers.

``tokenizer.json`` is read with the ``tokenizers`` library; the chat template (Jinja) comes from
``tokenizer_config.json`` (or ``chat_template.jinja``) and is rendered in a sandbox the way
transformers renders it (trim_blocks, lstrip_blocks, ``raise_exception``, ``tojson``).
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer as HFTokenizer

Message = dict[str, object]


def _raise(message: str) -> None:
    raise TemplateError(message)


def _token_text(value: object) -> str | None:
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


class Tokenizer:
    def __init__(self, folder: str | Path) -> None:
        folder = Path(folder)
        path = folder / "tokenizer.json"
        if not path.is_file():
            raise ValueError(f"model folder {folder} has no tokenizer.json")
        self._tok = HFTokenizer.from_file(str(path))
        cfg_path = folder / "tokenizer_config.json"
        self.config: dict = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
        template = self.config.get("chat_template")
        jinja_path = folder / "chat_template.jinja"
        if template is None and jinja_path.is_file():
            template = jinja_path.read_text()
        if isinstance(template, list):  # named templates: take "default"
            template = next((t["template"] for t in template if t.get("name") == "default"), None)
        self.chat_template: str | None = template
        self.bos_token = _token_text(self.config.get("bos_token"))
        self.eos_token = _token_text(self.config.get("eos_token"))
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)

    @property
    def eos_token_id(self) -> int | None:
        return None if self.eos_token is None else self._tok.token_to_id(self.eos_token)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self._tok.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self._tok.decode(ids, skip_special_tokens=skip_special_tokens)

    def to_json(self) -> str:
        """The tokenizer as ``tokenizer.json`` text (what llguidance reads)."""
        return self._tok.to_str()

    def id_to_token(self, token_id: int) -> str | None:
        return self._tok.id_to_token(token_id)

    @cached_property
    def _template(self):  # noqa: ANN202 - jinja Template
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
        env.filters["tojson"] = lambda x, indent=None, ensure_ascii=False: json.dumps(
            x, indent=indent, ensure_ascii=ensure_ascii
        )
        env.globals["raise_exception"] = _raise
        return env.from_string(self.chat_template)

    def apply_chat_template(self, messages: list[Message], add_generation_prompt: bool = True,
                            tools: list[dict] | None = None) -> str:
        """Render chat messages (and the tool definitions, for templates that use them) to the prompt
        text the model was trained on. Any failure inside the template is a ValueError (bad input)."""
        if self.chat_template is None:
            raise ValueError("this model has no chat template: send a plain prompt instead of messages")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or "role" not in m:
                raise ValueError(f"messages[{i}] must be an object with 'role' and 'content'")
        try:
            return self._template.render(
                messages=messages,
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token or "",
                eos_token=self.eos_token or "",
                tools=tools,
            )
        except (TemplateError, TypeError, ValueError, KeyError, AttributeError, IndexError) as e:
            raise ValueError(f"messages rejected by the chat template: {e}") from e

    def encode_chat(self, messages: list[Message], add_generation_prompt: bool = True) -> list[int]:
        # The template already holds any BOS, so no special tokens are added again.
        return self.encode(self.apply_chat_template(messages, add_generation_prompt), add_special_tokens=False)


class IncrementalDetokenizer:
    """Turns a growing list of token ids into text deltas that never split a UTF-8 character.

    Two windows of ids are decoded: ``[prefix, read)`` (already emitted) and ``[prefix, end)``.
    Their difference is the new text, held back while it ends in U+FFFD (an incomplete
    multi-byte character). Decoding windows keeps the cost per token constant, and starting a few
    tokens back keeps leading spaces right for tokenizers that strip them at a window start.
    """

    def __init__(self, tokenizer: Tokenizer, prompt_ids: list[int], skip_special_tokens: bool = True) -> None:
        self.tok = tokenizer
        self.skip = skip_special_tokens
        self.ids: list[int] = list(prompt_ids[-5:])
        self.prefix = 0
        self.read = len(self.ids)
        self.text = ""

    def add(self, token_ids: list[int]) -> str:
        """Append tokens; return the newly complete text (may be empty)."""
        self.ids.extend(token_ids)
        prefix_text = self.tok.decode(self.ids[self.prefix : self.read], self.skip)
        new_text = self.tok.decode(self.ids[self.prefix :], self.skip)
        if len(new_text) > len(prefix_text) and not new_text.endswith("\ufffd"):
            delta = new_text[len(prefix_text) :]
            self.prefix, self.read = self.read, len(self.ids)
            self.text += delta
            return delta
        return ""

    def flush(self) -> str:
        """At the end: emit whatever is left, replacement characters included."""
        if self.read >= len(self.ids):
            return ""
        prefix_text = self.tok.decode(self.ids[self.prefix : self.read], self.skip)
        new_text = self.tok.decode(self.ids[self.prefix :], self.skip)
        delta = new_text[len(prefix_text) :]
        self.prefix = self.read = len(self.ids)
        self.text += delta
        return delta
