"""Incremental detokenisation never emits half a UTF-8 character."""

from __future__ import annotations

import pytest

from treadle.models.tokenizer import IncrementalDetokenizer, Tokenizer

TEXTS = [
    "Über naïve café résumé — 東京 北京 😀 multi-byte characters must never be split in half.",
    "😀😀😀 emoji only 🚀🎉 and 🇫🇷 flags, 👩‍👩‍👧 families",
    "中文字符测试：你好，世界！日本語のテキスト。한국어 텍스트",
    "àéîõü ÀÉÎÕÜ ñ ç ß ø å æ œ — “quotes” ‘single’ … ellipsis",
    "plain ascii text with digits 0123456789",
]


@pytest.fixture(scope="module")
def tok(tiny_llama) -> Tokenizer:
    return Tokenizer(tiny_llama)


def test_texts_really_split_characters_across_tokens(tok: Tokenizer) -> None:
    """Guard: the test is only meaningful if some tokens hold part of a character."""
    ids = tok.encode(TEXTS[1], add_special_tokens=False)
    partial = [t for t in ids if "\ufffd" in tok.decode([t])]
    assert partial, "expected byte-level tokens that are incomplete UTF-8 on their own"


@pytest.mark.parametrize("prompt", ["", "Hello world! ", "東京 "])
@pytest.mark.parametrize("text", TEXTS)
def test_one_token_at_a_time(tok: Tokenizer, text: str, prompt: str) -> None:
    prompt_ids = tok.encode(prompt, add_special_tokens=False) if prompt else [1]
    ids = tok.encode(text, add_special_tokens=False)
    detok = IncrementalDetokenizer(tok, prompt_ids)
    deltas = []
    for t in ids:
        d = detok.add([t])
        assert "\ufffd" not in d, f"half a character emitted after token {t}: {d!r}"
        deltas.append(d)
    tail = detok.flush()
    assert tail == ""  # valid text: nothing was left held back
    assert "".join(deltas) == tok.decode(ids) == text
    assert detok.text == text


@pytest.mark.parametrize("chunk", [2, 3, 7])
def test_several_tokens_at_a_time(tok: Tokenizer, chunk: int) -> None:
    text = TEXTS[0] + TEXTS[1]
    ids = tok.encode(text, add_special_tokens=False)
    detok = IncrementalDetokenizer(tok, [1])
    out = ""
    for i in range(0, len(ids), chunk):
        d = detok.add(ids[i : i + chunk])
        assert "\ufffd" not in d
        out += d
    out += detok.flush()
    assert out == text


def test_special_tokens_are_skipped(tok: Tokenizer) -> None:
    ids = tok.encode("Hello", add_special_tokens=False) + [2] + tok.encode(" 😀", add_special_tokens=False)
    detok = IncrementalDetokenizer(tok, [1])
    out = "".join(detok.add([t]) for t in ids) + detok.flush()
    assert out == tok.decode(ids) == "Hello 😀"


def test_flush_emits_an_incomplete_tail(tok: Tokenizer) -> None:
    ids = tok.encode("ok 😀", add_special_tokens=False)
    partial = [t for t in ids if "\ufffd" in tok.decode([t])]
    assert partial
    cut = ids.index(partial[0]) + 1  # stop in the middle of the emoji
    detok = IncrementalDetokenizer(tok, [1])
    out = "".join(detok.add([t]) for t in ids[:cut])
    assert "\ufffd" not in out
    out += detok.flush()
    assert out == tok.decode(ids[:cut])
    assert out.endswith("\ufffd")
