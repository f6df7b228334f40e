"""The labelled safety texts in data/, one source each, for the live unsafe-content classifier.

label 1 = unsafe content (hateful or offensive text, a harmful request, a reply that gives harmful
help), 0 = safe. Every source is sampled with ``random.Random(SEED)``; sizes are parameters so a
test can use a handful. Texts are cut to ``MAX_CHARS`` (what a live reply of ~64-100 tokens shows).

| source | texts | label |
|---|---|---|
| davidson | tweets, stratified: ``n_davidson`` hate, as many offensive, twice as many neither | hate/offensive 1, neither 0 |
| hh_rlhf | per dialogue of the harmless-base test split: first user turn, rejected and chosen replies | turn 1, rejected 1, chosen 0 (crowdworkers' "more harmless": weak labels) |
| xstest | the 2,250 human-labelled replies + the 450 prompts | unsafe prompt 1, full compliance to an unsafe prompt 1, the rest 0 |
| advbench | the 520 harmful behaviors (requests) + 574 harmful strings | all 1 |
| assistant | Bitext test requests and reference replies, MT-Bench GPT-4 answers | all 0 |
| sharegpt | ShareGPT first turns: the user's prompt (1,000 conversations) | all 0 |
| clinc150 | CLINC150 train requests (``n_clinc``, seeded sample; 150 intents of an assistant) | all 0 |

The last two (added in VERSION 2 of the head) give the safe class varied everyday text, so that
"imperative request" or "customer-service style" stops standing in for "unsafe": held out, plain
assistant replies were flagged 34% of the time without them and 3% with them (docs/QUALITY.md).

HH-RLHF's labels are pairwise (chosen judged more harmless than rejected, not harmless): the
evaluation reports the pairwise ordering beside the per-text scores.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path

SEED = 0
MAX_CHARS = 400
SOURCES = ("davidson", "hh_rlhf", "xstest", "advbench", "assistant", "sharegpt", "clinc150")


@dataclass(frozen=True)
class LabelledText:
    source: str
    text: str
    label: int  # 1 unsafe, 0 safe
    kind: str  # request | reply | post
    group: str = ""  # pairs texts that belong together (HH-RLHF dialogue id)


def _csv(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _cut(text: str) -> str:
    return text.strip()[:MAX_CHARS]


def davidson(data: Path, n_hate: int = 1000) -> list[LabelledText]:
    from treadle.evals.classifiers import DAVIDSON, clean_tweet

    rows = _csv(data / DAVIDSON / "split_train.csv") + _csv(data / DAVIDSON / "split_test.csv")
    rng = random.Random(SEED)
    out = []
    for cls, n in (("0", n_hate), ("1", n_hate), ("2", 2 * n_hate)):
        pool = [r for r in rows if r["class"] == cls]
        for r in rng.sample(pool, min(n, len(pool))):
            out.append(LabelledText("davidson", _cut(clean_tweet(r["tweet"])), int(cls != "2"), "post"))
    return out


def hh_rlhf(data: Path, n_dialogues: int = 1200) -> list[LabelledText]:
    path = data / "prompts/hh_rlhf_harmless_test/harmless_base_test_turns.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = random.Random(SEED).sample(rows, min(n_dialogues, len(rows)))
    out = []
    for r in rows:
        g = f"hh-{r['id']}"
        first = next(t["content"] for t in r["context"] if t["role"] == "user")
        out.append(LabelledText("hh_rlhf", _cut(first), 1, "request", g))
        if r["chosen_response"].strip() != r["rejected_response"].strip():
            out.append(LabelledText("hh_rlhf", _cut(r["rejected_response"]), 1, "reply", g))
            out.append(LabelledText("hh_rlhf", _cut(r["chosen_response"]), 0, "reply", g))
    return out


def xstest(data: Path) -> list[LabelledText]:
    prompts = _csv(data / "safety/xstest/xstest_prompts.csv")
    unsafe = {p["prompt"].strip(): p["label"] == "unsafe" for p in prompts}
    out = [LabelledText("xstest", _cut(p["prompt"]), int(p["label"] == "unsafe"), "request") for p in prompts]
    for f in sorted((data / "safety/xstest/model_completions_human_labelled").glob("*.csv")):
        for r in _csv(f):
            harmful = unsafe.get(r["prompt"].strip(), r["type"].startswith("contrast_")) and \
                r["final_label"].startswith("1")
            out.append(LabelledText("xstest", _cut(r["completion"]), int(harmful), "reply"))
    return out


def advbench(data: Path) -> list[LabelledText]:
    out = [LabelledText("advbench", _cut(r["goal"]), 1, "request")
           for r in _csv(data / "safety/advbench/harmful_behaviors.csv")]
    out += [LabelledText("advbench", _cut(r["target"]), 1, "post")
            for r in _csv(data / "safety/advbench/harmful_strings.csv")]
    return out


def assistant(data: Path, n_bitext: int = 600) -> list[LabelledText]:
    rows = random.Random(SEED).sample(_csv(data / "tasks/bitext_customer_support/split_test.csv"), n_bitext)
    out = [LabelledText("assistant", _cut(r["instruction"]), 0, "request") for r in rows[: n_bitext // 2]]
    out += [LabelledText("assistant", _cut(r["response"]), 0, "reply") for r in rows]
    ref = data / "prompts/mt_bench/mt_bench_reference_answer_gpt-4.jsonl"
    for line in ref.read_text(encoding="utf-8").splitlines():
        if line.strip():
            out.append(LabelledText("assistant", _cut(json.loads(line)["choices"][0]["turns"][0]), 0, "reply"))
    return out


def sharegpt(data: Path) -> list[LabelledText]:
    rows = json.loads((data / "prompts/sharegpt_first_turn/ShareGPT_V3_filtered_1000.json").read_text(encoding="utf-8"))
    return [LabelledText("sharegpt", _cut(t["value"]), 0, "request") for r in rows for t in r["conversations"][:1]
            if t["from"] == "human"]


def clinc150(data: Path, n_clinc: int = 1500) -> list[LabelledText]:
    rows = json.loads((data / "tasks/clinc150/clinc150_train_val.json").read_text(encoding="utf-8"))["train"]
    return [LabelledText("clinc150", _cut(r[0]), 0, "request") for r in random.Random(SEED).sample(rows, n_clinc)]


def load_sources(data: Path, scale: float = 1.0) -> list[LabelledText]:
    """Every source's texts (empty texts dropped); ``scale`` < 1 shrinks the sampled sources (tests)."""
    items = (davidson(data, max(4, int(1000 * scale))) + hh_rlhf(data, max(4, int(1200 * scale)))
             + xstest(data) + advbench(data) + assistant(data, max(4, int(600 * scale)))
             + sharegpt(data) + clinc150(data, max(4, int(1500 * scale))))
    if scale < 1:
        rng = random.Random(SEED)
        items = [t for t in items if t.source in ("davidson", "hh_rlhf", "assistant", "clinc150")
                 or rng.random() < scale]
    return [t for t in items if t.text]
