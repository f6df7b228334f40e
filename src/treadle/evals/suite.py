"""Eval items and suites, and reading suite files (YAML or JSONL).

An item is messages plus what is expected; its ``type`` picks the scorer:
- ``label``: the reply, normalised (case, spaces/underscores, surrounding punctuation), equals ``expected``;
- ``choice``: the first of ``choices`` the reply names is ``expected``;
- ``regex``: ``expected`` (a Python regular expression) matches somewhere in the reply;
- ``reference``: the reply's embedding similarity to the reference reply ``expected`` is above the
  calibrated threshold;
- ``open``: no expected answer; the coherence checks apply;
- ``refuse`` / ``answer``: a safety item the model must refuse / must answer (``part`` names the part).

YAML file: ``{name, category?, max_tokens?, system?, choices?, items: [...]}``; JSONL file: one item
per line (the suite is named after the file). An item has ``id`` (defaults to its index), ``prompt``
or ``messages``, ``type``, ``expected``, and optional ``choices``, ``part``, ``language``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

TYPES = ("label", "choice", "regex", "reference", "open", "refuse", "answer")
CATEGORIES = ("accuracy", "coherence", "safety")
DEFAULT_MAX_TOKENS = {"label": 16, "choice": 16, "regex": 64, "reference": 128, "open": 128, "refuse": 64,
                      "answer": 64}


@dataclass
class Item:
    id: str
    messages: list[dict]
    type: str
    expected: object = None
    choices: list[str] | None = None
    part: str | None = None
    language: str | None = None

    @property
    def request(self) -> str:
        """The last user message: what the reply must be on topic for."""
        return next((m["content"] for m in reversed(self.messages) if m.get("role") == "user"), "")


@dataclass
class Suite:
    name: str
    category: str
    items: list[Item]
    max_tokens: int
    gated: set[str] = field(default_factory=set)  # metric names the gate checks

    def __post_init__(self) -> None:
        if self.category not in CATEGORIES:
            raise ValueError(f"suite {self.name}: category must be one of {CATEGORIES}, got {self.category!r}")
        if not self.gated:
            self.gated = default_gated(self.items)


def default_gated(items: list[Item]) -> set[str]:
    """One gated metric per suite (``accuracy`` / ``coherent``) and one per safety part."""
    out: set[str] = set()
    for it in items:
        if it.type in ("label", "choice", "regex", "reference"):
            out.add("accuracy")
        elif it.type == "open":
            out.add("coherent")
        else:
            out |= {f"{it.part or 'safety'}_{'refused' if it.type == 'refuse' else 'answered'}", "non_toxic", "overall"}
    return out


def make_item(raw: dict, index: int, system: str | None = None, choices: list[str] | None = None) -> Item:
    """Build an Item from a dict; ValueError names the field and what is valid."""
    where = f"item {raw.get('id', index)}"
    kind = raw.get("type", "choice" if raw.get("choices") or choices else "label")
    if kind not in TYPES:
        raise ValueError(f"{where}: type must be one of {TYPES}, got {kind!r}")
    if "messages" in raw:
        messages = raw["messages"]
        if not isinstance(messages, list) or not all(isinstance(m, dict) and "content" in m for m in messages):
            raise ValueError(f"{where}: messages must be a list of {{role, content}} objects")
    elif isinstance(raw.get("prompt"), str):
        messages = [{"role": "user", "content": raw["prompt"]}]
    else:
        raise ValueError(f"{where}: needs 'prompt' (a string) or 'messages'")
    if system and not any(m.get("role") == "system" for m in messages):
        messages = [{"role": "system", "content": system}, *messages]
    expected = raw.get("expected")
    item_choices = raw.get("choices", choices)
    if kind in ("label", "choice", "regex", "reference") and not isinstance(expected, str):
        raise ValueError(f"{where}: type {kind} needs 'expected' (a string)")
    if kind == "choice" and (not item_choices or expected not in item_choices):
        raise ValueError(f"{where}: type choice needs 'choices' containing 'expected'")
    return Item(str(raw.get("id", index)), messages, kind, expected, item_choices, raw.get("part"), raw.get("language"))


def infer_category(items: list[Item]) -> str:
    kinds = {it.type for it in items}
    if kinds & {"refuse", "answer"}:
        return "safety"
    return "coherence" if kinds == {"open"} else "accuracy"


def load_suite_file(path: str | Path) -> Suite:
    """Read a YAML (``.yaml``/``.yml``) or JSONL (``.jsonl``) suite file."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"suite file {p} does not exist")
    if p.suffix in (".yaml", ".yml"):
        import yaml

        doc = yaml.safe_load(p.read_text())
        if not isinstance(doc, dict) or not isinstance(doc.get("items"), list):
            raise ValueError(f"{p}: a YAML suite is a mapping with an 'items' list")
    elif p.suffix == ".jsonl":
        doc = {"items": [json.loads(line) for line in p.read_text().splitlines() if line.strip()]}
    else:
        raise ValueError(f"{p}: suite files end in .yaml, .yml or .jsonl")
    items = [make_item(r, i, doc.get("system"), doc.get("choices")) for i, r in enumerate(doc["items"])]
    if not items:
        raise ValueError(f"{p}: the suite has no items")
    if len({it.id for it in items}) != len(items):
        raise ValueError(f"{p}: item ids must be unique")
    max_tokens = doc.get("max_tokens") or max(DEFAULT_MAX_TOKENS[it.type] for it in items)
    return Suite(doc.get("name", p.stem), doc.get("category") or infer_category(items), items, int(max_tokens))
