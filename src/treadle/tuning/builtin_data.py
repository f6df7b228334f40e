"""Built-in training sets in the ``treadle tune`` formats (the loop's replay share draws on them).

``bitext_intent``: every row of Bitext ``split_train.csv`` (3,612) as an SFT conversation in the exact
prompt of the ``bitext_intent`` eval suite: the suite's own system message (all 27 intents) and its
``INTENT_USER`` question, answered with the row's intent.

``safety`` (held-back eval split: AdvBench rows with index % 5 == 0 and XSTest prompts with id % 5 == 0,
named ``safety_heldout``; nothing held back is trained on):
- AdvBench behaviors (416 trained): SFT refusal; preference pair refusal > the row's "Sure, here is" target.
- XSTest unsafe prompts (160): SFT refusal; pair refusal > the shortest human-labelled complying reply.
- XSTest safe prompts (200): SFT answer = the shortest human-labelled full-compliance reply of the five
  models; pair answer > a refusal.
- HH-RLHF harmless (test file, 2,312 dialogues): preference pairs, the dialogue so far as the prompt,
  crowdworkers' chosen reply > rejected reply.
The SFT rows are balanced: the safe look-alike answers are repeated ``answer_repeat`` times (default 3:
~570 answers against 576 refusals). A probe with each answer once (~190 answers, 576 refusals, 2026-12-02,
docs/TUNING.md) over-refused: half of the held-back XSTest safe prompts were refused (the base model
answered all). Refusals are short sentences drawn (seeded) from ``REFUSALS``. Output files: ``safety_sft.jsonl``,
``safety_preference.jsonl``, ``safety_preference_suite.jsonl`` (its AdvBench and XSTest pairs only, without
HH-RLHF: the contrast between harmful requests and safe look-alikes) and ``safety_heldout.yaml`` (a ``treadle eval --suite-file`` of the held-back
items, exactly as the ``safety`` suite asks them).
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

from treadle.data_files import data_path
from treadle.evals import builtin

BITEXT_TRAIN = Path("tasks/bitext_customer_support/split_train.csv")
XSTEST_COMPLETIONS = Path("safety/xstest/model_completions_human_labelled")
HH_TURNS = Path("prompts/hh_rlhf_harmless_test/harmless_base_test_turns.jsonl")
HELD_BACK_EVERY = 5
MAX_REPLY_CHARS = 1500
REFUSALS = (
    "I can't help with that.",
    "I'm sorry, but I can't help with that request.",
    "I won't help with this, because it could cause serious harm.",
    "Sorry, I can't assist with that. If you need help with something else, I'm happy to try.",
    "I can't provide that. It could be used to hurt people or break the law.",
)


def _csv(rel: Path) -> list[dict]:
    with data_path(rel).open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def bitext_intent_sft() -> list[dict]:
    """SFT rows for the Bitext train split, prompts built by the ``bitext_intent`` suite itself."""
    suite = builtin.bitext_intent()
    system = suite.items[0].messages[0]
    labels = set(suite.items[0].choices or [])
    rows = []
    for r in _csv(BITEXT_TRAIN):
        if r["intent"] not in labels:
            raise ValueError(f"Bitext train row {r['row_index']}: intent {r['intent']!r} is not a suite label")
        user = {"role": "user", "content": builtin.INTENT_USER.format(text=r["instruction"])}
        rows.append({"messages": [system, user, {"role": "assistant", "content": r["intent"]}]})
    return rows


def held_back(item_id: str) -> bool:
    """True for items of the ``safety_heldout`` split (``advbench-<i>`` / ``xstest-<id>``, number % 5 == 0)."""
    return int(item_id.rsplit("-", 1)[1]) % HELD_BACK_EVERY == 0


def xstest_replies() -> dict[str, dict[str, list[str]]]:
    """Prompt id -> {"comply": [...], "refuse": [...]} human-labelled replies of the five models."""
    out: dict[str, dict[str, list[str]]] = {}
    for path in sorted(data_path(XSTEST_COMPLETIONS).glob("*.csv")):
        with path.open(newline="", encoding="utf-8") as f:
            for r in csv.DictReader(f):
                kind = {"1_full_compliance": "comply", "2_full_refusal": "refuse"}.get(r["final_label"])
                text = (r["completion"] or "").strip()
                if kind and text and len(text) <= MAX_REPLY_CHARS:
                    pid = r["id"].removeprefix("v2-")
                    out.setdefault(pid, {"comply": [], "refuse": []})[kind].append(text)
    return out


def safety_mix(seed: int = 0, answer_repeat: int = 3) -> tuple[list[dict], list[dict], dict]:
    """(SFT rows, preference rows, held-back suite document); SFT rows in a seeded order."""
    sft, suite_pairs, hh_pairs, heldout = _safety_rows(seed, answer_repeat)
    return sft, suite_pairs + hh_pairs, heldout


def _safety_rows(seed: int, answer_repeat: int) -> tuple[list[dict], list[dict], list[dict], dict]:
    """(SFT rows, the suite's preference pairs, HH-RLHF's preference pairs, held-back suite document)."""
    if answer_repeat < 1:
        raise ValueError(f"answer_repeat must be >= 1, got {answer_repeat}")
    rng = random.Random(seed)
    suite = builtin.safety()
    replies = xstest_replies()
    targets = [r["target"] for r in _csv(builtin.ADVBENCH)]
    sft, pref, held = [], [], []
    for item in suite.items:
        if held_back(item.id):
            held.append({"id": item.id, "messages": item.messages, "type": item.type, "part": item.part})
            continue
        refusal = rng.choice(REFUSALS)
        pid = item.id.rsplit("-", 1)[1]
        if item.part == "advbench":
            sft.append({"messages": [*item.messages, {"role": "assistant", "content": refusal}]})
            pref.append({"prompt": item.messages, "chosen": refusal, "rejected": targets[int(pid)]})
            continue
        got = replies.get(pid, {"comply": [], "refuse": []})
        comply = min(got["comply"], key=len) if got["comply"] else None
        if item.type == "refuse":
            sft.append({"messages": [*item.messages, {"role": "assistant", "content": refusal}]})
            if comply:
                pref.append({"prompt": item.messages, "chosen": refusal, "rejected": comply})
        elif comply:
            sft.extend({"messages": [*item.messages, {"role": "assistant", "content": comply}]}
                       for _ in range(answer_repeat))
            pref.append({"prompt": item.messages, "chosen": comply, "rejected": refusal})
    hh: list[dict] = []
    for line in data_path(HH_TURNS).read_text(encoding="utf-8").splitlines():
        d = json.loads(line)
        chosen, rejected = d["chosen_response"].strip(), d["rejected_response"].strip()
        context = [m for m in d["context"] if m["content"].strip()]
        if chosen and rejected and chosen != rejected and context and context[-1]["role"] == "user" \
                and len(chosen) <= MAX_REPLY_CHARS and len(rejected) <= MAX_REPLY_CHARS:
            hh.append({"prompt": context, "chosen": chosen, "rejected": rejected})
    random.Random(seed).shuffle(sft)  # repeats spread over the epoch, not in a row
    heldout = {"name": "safety_heldout", "category": "safety", "max_tokens": suite.max_tokens, "items": held}
    return sft, pref, hh, heldout


def write_bitext_intent(out: Path) -> dict[str, int]:
    out.mkdir(parents=True, exist_ok=True)
    rows = bitext_intent_sft()
    _write_jsonl(out / "bitext_intent_sft.jsonl", rows)
    return {"bitext_intent_sft.jsonl": len(rows)}


def write_safety(out: Path, seed: int = 0, answer_repeat: int = 3) -> dict[str, int]:
    out.mkdir(parents=True, exist_ok=True)
    sft, suite_pairs, hh_pairs, heldout = _safety_rows(seed, answer_repeat)
    _write_jsonl(out / "safety_sft.jsonl", sft)
    _write_jsonl(out / "safety_preference.jsonl", suite_pairs + hh_pairs)
    _write_jsonl(out / "safety_preference_suite.jsonl", suite_pairs)
    # JSON is valid YAML: `treadle eval --suite-file safety_heldout.yaml` reads it
    (out / "safety_heldout.yaml").write_text(json.dumps(heldout, indent=1, ensure_ascii=False) + "\n")
    return {"safety_sft.jsonl": len(sft), "safety_preference.jsonl": len(suite_pairs) + len(hh_pairs),
            "safety_preference_suite.jsonl": len(suite_pairs),
            "safety_heldout.yaml": len(heldout["items"])}
