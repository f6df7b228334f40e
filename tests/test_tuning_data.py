"""treadle tune inputs: dataset validation errors, engine chat-template tokens, CLI flags, built-in sets."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import pytest

from treadle.config_args import add_dataclass_args, dataclass_from_args
from treadle.models.tokenizer import Tokenizer
from treadle.tuning.chat import IGNORE, ChatRenderer
from treadle.tuning.config import METHODS, DPOConfig, SFTConfig, config_for
from treadle.tuning.data import DatasetError, load_dataset

GOOD_SFT = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"},
                         {"role": "assistant", "content": "Hello!"}]}


def _write(tmp_path: Path, name: str, lines: list) -> Path:
    p = tmp_path / name
    p.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return p


@pytest.mark.parametrize(("method", "lines", "needle"), [
    ("sft", [GOOD_SFT, {"msgs": []}], "line 2: field 'messages' is missing"),
    ("sft", [GOOD_SFT, GOOD_SFT, {"messages": [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}]}],
     "line 3: messages[1].role: must be one of ['system', 'user', 'assistant'], got 'bot'"),
    ("sft", [{"messages": [{"role": "user", "content": "a"}]}], "line 1: messages[0].role: the last message must be 'assistant'"),
    ("sft", [{"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "s"},
                           {"role": "assistant", "content": "b"}]}], "line 1: messages[1].role: 'system' is only allowed"),
    ("sft", [GOOD_SFT, "{not json"], "line 2: not valid JSON"),
    ("sft", [{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": ""}]}],
     "line 1: messages[1].content: must be a non-empty string"),
    ("dpo", [{"prompt": "q", "chosen": "a"}], "line 1: field 'rejected' is missing"),
    ("dpo", [{"prompt": "q", "chosen": [{"role": "user", "content": "a"}], "rejected": "b"}],
     "line 1: chosen[0].role: the last message must be 'assistant'"),
    ("sft", [{**GOOD_SFT, "complete": "no"}], "line 1: complete: must be true or false, got 'no'"),
    ("kto", [{"prompt": "q", "completion": "a", "label": "yes"}], "line 1: label: must be true or false"),
    ("kto", [{"prompt": "q", "completion": "a", "label": True}], "needs both label=true and label=false"),
])
def test_bad_datasets_name_line_and_field(tmp_path: Path, method: str, lines: list, needle: str) -> None:
    path = _write(tmp_path, "data.jsonl", lines)
    with pytest.raises(DatasetError) as e:
        load_dataset(path, method)
    assert needle in str(e.value) and "data.jsonl" in str(e.value)


def test_empty_dataset(tmp_path: Path) -> None:
    path = tmp_path / "sft.jsonl"
    path.write_text("\n\n")
    with pytest.raises(DatasetError, match="empty"):
        load_dataset(path, "sft")


def test_string_and_conversational_forms_normalise(tmp_path: Path) -> None:
    path = _write(tmp_path, "p.jsonl", [
        {"prompt": "q", "chosen": "a", "rejected": "b"},
        {"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": "a"}],
         "rejected": [{"role": "assistant", "content": "b"}]}])
    a, b = load_dataset(path, "dpo")
    assert {k: a[k] for k in ("prompt", "chosen", "rejected")} == {k: b[k] for k in ("prompt", "chosen", "rejected")}
    assert (a["line"], b["line"]) == (1, 2)


def test_sft_tokens_are_the_engines_and_labels_cover_replies(tiny_llama: Path) -> None:
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello world!"},
            {"role": "assistant", "content": "Hello how are you"}, {"role": "user", "content": "fine"},
            {"role": "assistant", "content": "The quick fox"}]
    ex = ChatRenderer(tiny_llama).sft_example(msgs)
    tok = Tokenizer(tiny_llama)
    assert ex["input_ids"] == tok.encode_chat(msgs, add_generation_prompt=False)
    trained = [t for t, lab in zip(ex["input_ids"], ex["labels"], strict=True) if lab != IGNORE]
    eos = tok.encode("<|im_end|>", add_special_tokens=False)
    assert trained == tok.encode("Hello how are you", False) + eos + tok.encode("The quick fox", False) + eos
    assert all(lab in (IGNORE, t) for t, lab in zip(ex["input_ids"], ex["labels"], strict=True))


def test_a_cut_reply_trains_its_text_and_no_end_of_turn(tiny_llama: Path, tmp_path: Path) -> None:
    msgs = [{"role": "user", "content": "Tell me a story"}, {"role": "assistant", "content": "Once upon a"}]
    path = _write(tmp_path, "sft.jsonl", [{"messages": msgs, "complete": False}, {"messages": msgs}])
    cut, whole = load_dataset(path, "sft")
    assert (cut["complete"], whole["complete"]) == (False, True)
    r, tok = ChatRenderer(tiny_llama), Tokenizer(tiny_llama)
    ex, full = r.sft_example(msgs, complete=False), r.sft_example(msgs)
    head = tok.encode_chat(msgs[:1], add_generation_prompt=True)
    reply = tok.encode("Once upon a", False)
    assert ex["input_ids"] == head + reply  # the text ends where the reply does: no <|im_end|>, no newline
    assert [t for t, lab in zip(ex["input_ids"], ex["labels"], strict=True) if lab != IGNORE] == reply
    eos = tok.encode("<|im_end|>", add_special_tokens=False)
    assert [t for t, lab in zip(full["input_ids"], full["labels"], strict=True) if lab != IGNORE] == reply + eos


def test_preference_prompt_reply_split_matches_engine(tiny_llama: Path) -> None:
    r = ChatRenderer(tiny_llama)
    prompt = [{"role": "user", "content": "Hello world!"}]
    head, reply = r.prompt_and_reply(prompt, "Fine thanks")
    tok = Tokenizer(tiny_llama)
    assert head == tok.apply_chat_template(prompt, add_generation_prompt=True)
    assert reply == "Fine thanks<|im_end|>"
    full = tok.encode_chat([*prompt, {"role": "assistant", "content": "Fine thanks"}], add_generation_prompt=False)
    assert r.encode(head + reply) == full[: len(r.encode(head + reply))]


def test_hf_tokenizer_used_by_trl_gives_engine_tokens(tiny_llama: Path) -> None:
    """DPO/KTO text goes through TRL's tokenizer (transformers): it must give the engine's ids."""
    from transformers import AutoTokenizer

    r = ChatRenderer(tiny_llama)
    head, reply = r.prompt_and_reply([{"role": "user", "content": "Über naïve café 😀"}], "Paged attention")
    hf = AutoTokenizer.from_pretrained(tiny_llama)
    assert hf(head + reply)["input_ids"] == Tokenizer(tiny_llama).encode(head + reply, add_special_tokens=False)
    assert hf.eos_token == "<|im_end|>"


def test_cli_flags_are_the_config_fields() -> None:
    for method, cls in METHODS.items():
        p = argparse.ArgumentParser()
        add_dataclass_args(p, cls)
        args = p.parse_args(["--data", "d.jsonl", "--out", "o", "--lora-r", "8", "--no-shared-prefix"]
                            if method == "sft" else ["--data", "d.jsonl", "--out", "o", "--lora-r", "8",
                                                     "--max-minutes", "2.5"])
        cfg = dataclass_from_args(cls, args)
        assert cfg.lora_r == 8 and cfg.data == "d.jsonl"
        flags = {a.dest for a in p._actions} - {"help"}
        assert flags == {f.name for f in dataclasses.fields(cls)}
    assert dataclass_from_args(SFTConfig, argparse.Namespace(**{**dataclasses.asdict(
        SFTConfig("d", "o")), "shared_prefix": False})).shared_prefix is False
    assert "beta" in {f.name for f in dataclasses.fields(DPOConfig)}


def test_config_validation_names_field() -> None:
    with pytest.raises(ValueError, match="lm_head"):
        config_for("sft", data="d", out="o", target_modules="q_proj,lm_head").validate()
    with pytest.raises(ValueError, match="lora_dropout"):
        config_for("sft", data="d", out="o", lora_dropout=1.5).validate()
    with pytest.raises(ValueError, match="unknown sft option"):
        config_for("sft", data="d", out="o", beta=0.1)


def test_bitext_intent_set_uses_the_suites_prompt() -> None:
    from treadle.evals.builtin import bitext_intent
    from treadle.tuning.builtin_data import bitext_intent_sft

    rows = bitext_intent_sft()
    item = bitext_intent().items[0]
    assert len(rows) == 3612
    assert rows[0]["messages"][0] == item.messages[0]
    user = rows[0]["messages"][1]["content"]
    probe = item.messages[1]["content"]
    assert user.endswith(probe[probe.index("\n\n"):])
    assert rows[0]["messages"][2]["content"] in item.choices


def test_safety_mix_holds_back_named_split() -> None:
    from treadle.tuning.builtin_data import held_back, safety_mix

    sft, pref, heldout = safety_mix()
    held_prompts = {it["messages"][-1]["content"] for it in heldout["items"]}
    assert heldout["name"] == "safety_heldout" and len(heldout["items"]) == 194
    assert all(held_back(it["id"]) for it in heldout["items"])
    trained = {r["messages"][-2]["content"] for r in sft} | {
        (r["prompt"][-1]["content"] if isinstance(r["prompt"], list) else r["prompt"]) for r in pref}
    assert not held_prompts & trained
    parts = {it["part"] for it in heldout["items"]}
    assert parts == {"advbench", "xstest_safe", "xstest_unsafe"}
    from treadle.tuning.builtin_data import REFUSALS

    refusals = sum(r["messages"][-1]["content"] in REFUSALS for r in sft)
    answers = len(sft) - refusals
    assert refusals == 576 and 0.9 < answers / refusals < 1.1  # balanced: each safe answer 3 times
    once, _, _ = safety_mix(answer_repeat=1)
    assert len(once) == refusals + answers // 3
    with pytest.raises(ValueError, match="answer_repeat"):
        safety_mix(answer_repeat=0)


SMOLLM_TEMPLATE = (  # SmolLM2-Instruct's template: a default system turn when the first message is not one
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def test_default_system_turn_template_tokens_match(tiny_llama: Path, tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "tok"
    folder.mkdir()
    shutil.copy(tiny_llama / "tokenizer.json", folder / "tokenizer.json")
    cfg = json.loads((tiny_llama / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**cfg, "chat_template": SMOLLM_TEMPLATE}))
    msgs = [{"role": "user", "content": "Hello world!"}, {"role": "assistant", "content": "Fine"}]
    ex = ChatRenderer(folder).sft_example(msgs)
    tok = Tokenizer(folder)
    assert ex["input_ids"] == tok.encode_chat(msgs, add_generation_prompt=False)
    assert [t for t, lab in zip(ex["input_ids"], ex["labels"], strict=True) if lab != IGNORE] == tok.encode(
        "Fine<|im_end|>", add_special_tokens=False)
