"""Built-in suites: loaders that read the bundled data/ folder (``treadle.data_files``).

| suite | items | type | max_tokens |
|---|---|---|---|
| bitext_intent | Bitext ``split_test.csv`` (902) | choice among the 27 intents | 16 |
| clinc150_intent | CLINC150 ``val`` + ``oos_val`` (3,100) | choice among 150 intents + out_of_scope | 16 |
| bitext_reply | Bitext ``split_test.csv`` (902) | reference reply (embedding similarity) | 128 |
| coherence | MT-Bench first turns (80) + Vicuna-bench (80) | open (coherence checks) | 128 |
| coherence_sharegpt | ShareGPT first turns (2,425): the FastChat-cleaned English sample, 10-1,000 characters, none of them in the 1,000-prompt pool the red team's everyday prompts come from | open (coherence checks) | 128 |
| safety | AdvBench behaviors (520), XSTest unsafe (200) and safe (250) | refuse / answer | 64 |

The intent suites put the full label list in the system message, identical for every item, so the
server's prefix cache serves it after the first request; the user message is the request followed
by the question (``INTENT_USER``). CLINC150's ``oos`` label is shown as
``out_of_scope``. Fine-tuning selects models on a part of CLINC150 ``train``, never on ``val``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

from treadle.evals.suite import Item, Suite

BITEXT = Path("tasks/bitext_customer_support/split_test.csv")
CLINC = Path("tasks/clinc150/clinc150_train_val.json")
MT_BENCH = Path("prompts/mt_bench/mt_bench_question.jsonl")
VICUNA = Path("prompts/mt_bench/vicuna_bench_question.jsonl")
SHAREGPT_EVAL = Path("prompts/sharegpt_first_turn/sg_90k_part1_html_cleaned_lang_first_sampled_sorted.json")
SHAREGPT_POOL = Path("prompts/sharegpt_first_turn/ShareGPT_V3_filtered_1000.json")
SHAREGPT_CHARS = (10, 1000)
ADVBENCH = Path("safety/advbench/harmful_behaviors.csv")
XSTEST = Path("safety/xstest/xstest_prompts.csv")
OOS = "out_of_scope"

INTENT_SYSTEM = (
    "You classify customer requests by intent. The possible intents are:\n{labels}\n\n"
    "Reply with exactly one intent from the list and nothing else."
)
INTENT_USER = "Request: {text}\n\nWhich intent from the list is this request? Answer with the intent name only."
REPLY_SYSTEM = "You are a helpful customer support assistant. Reply to the customer's request."


def _read(rel: Path) -> Path:
    from treadle.data_files import data_path

    return data_path(rel)


def _csv(rel: Path) -> list[dict]:
    with _read(rel).open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def intent_system(labels: list[str]) -> str:
    return INTENT_SYSTEM.format(labels="\n".join(labels))


def bitext_intent() -> Suite:
    rows = _csv(BITEXT)
    labels = sorted({r["intent"] for r in rows})
    system = intent_system(labels)
    items = [Item(f"bitext-{r['row_index']}", [{"role": "system", "content": system},
                                              {"role": "user", "content": INTENT_USER.format(text=r["instruction"])}],
                  "choice", r["intent"], labels) for r in rows]
    return Suite("bitext_intent", "accuracy", items, 16)


def clinc150_intent() -> Suite:
    data = json.loads(_read(CLINC).read_text())
    labels = sorted({label for _, label in data["train"]}) + [OOS]
    system = intent_system(labels)
    items = []
    for split in ("val", "oos_val"):
        for i, (text, label) in enumerate(data[split]):
            expected = OOS if label == "oos" else label
            user = {"role": "user", "content": INTENT_USER.format(text=text)}
            items.append(Item(f"{split}-{i}", [{"role": "system", "content": system}, user],
                              "choice", expected, labels, part="oos" if label == "oos" else "in_scope"))
    return Suite("clinc150_intent", "accuracy", items, 16, gated={"accuracy"})


def bitext_reply() -> Suite:
    items = [Item(f"bitext-{r['row_index']}", [{"role": "system", "content": REPLY_SYSTEM},
                                              {"role": "user", "content": r["instruction"]}],
                  "reference", r["response"]) for r in _csv(BITEXT)]
    return Suite("bitext_reply", "accuracy", items, 128)


def coherence() -> Suite:
    items = []
    for rel, tag in ((MT_BENCH, "mtbench"), (VICUNA, "vicuna")):
        for line in _read(rel).read_text().splitlines():
            if line.strip():
                q = json.loads(line)
                items.append(Item(f"{tag}-{q['question_id']}", [{"role": "user", "content": q["turns"][0]}], "open",
                                  language="en"))
    return Suite("coherence", "coherence", items, 128)


def coherence_sharegpt() -> Suite:
    """Open everyday prompts in numbers that give the coherence gate power (docs/LOOP.md); disjoint from
    the 1,000-prompt pool that training and benchmarks draw from (by id and by text)."""
    pool = json.loads(_read(SHAREGPT_POOL).read_text(encoding="utf-8"))
    taken = {r["id"] for r in pool} | {r["conversations"][0]["value"].strip() for r in pool if r["conversations"]}
    lo, hi = SHAREGPT_CHARS
    items, seen = [], set()
    for r in json.loads(_read(SHAREGPT_EVAL).read_text(encoding="utf-8")):
        if not r["conversations"] or r["conversations"][0]["from"] != "human":
            continue
        text = r["conversations"][0]["value"].strip()
        if not lo <= len(text) <= hi or r["id"] in taken or text in taken or text in seen:
            continue
        seen.add(text)
        items.append(Item(f"sharegpt-{r['id']}", [{"role": "user", "content": text}], "open", language="en"))
    return Suite("coherence_sharegpt", "coherence", items, 128)


def safety() -> Suite:
    items = [Item(f"advbench-{i}", [{"role": "user", "content": r["goal"]}], "refuse", part="advbench")
             for i, r in enumerate(_csv(ADVBENCH))]
    for r in _csv(XSTEST):
        unsafe = r["label"] == "unsafe"
        items.append(Item(f"xstest-{r['id']}", [{"role": "user", "content": r["prompt"]}],
                          "refuse" if unsafe else "answer", part="xstest_unsafe" if unsafe else "xstest_safe"))
    return Suite("safety", "safety", items, 64)


BUILTIN: dict[str, Callable[[], Suite]] = {
    "bitext_intent": bitext_intent,
    "clinc150_intent": clinc150_intent,
    "bitext_reply": bitext_reply,
    "coherence": coherence,
    "coherence_sharegpt": coherence_sharegpt,
    "safety": safety,
}


def load_builtin(name: str) -> Suite:
    if name not in BUILTIN:
        raise ValueError(f"suite must be one of {sorted(BUILTIN)} (or use --suite-file), got {name!r}")
    return BUILTIN[name]()
