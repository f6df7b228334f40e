"""Read and validate the three training-set formats (JSONL, one example per line).

| method | file (from ``treadle dataset build``) | fields |
|---|---|---|
| sft | ``sft.jsonl`` | ``messages``: [{role, content}], roles system/user/assistant, ends with assistant; optional ``complete`` (bool, default true; false: the last reply was cut at a token limit, so no end of turn is trained after it) |
| dpo | ``preference.jsonl`` | ``prompt``, ``chosen``, ``rejected`` |
| kto | ``kto.jsonl`` | ``prompt``, ``completion``, ``label`` (true = desirable) |

``prompt`` is a string (one user turn) or a list of messages ending with a user turn; ``chosen``,
``rejected`` and ``completion`` are a string (the assistant reply) or a list of one assistant message
(TRL's conversational form). Every error names the file, the 1-based line and the field.
Normalised records hold messages only: ``{"messages"}``, ``{"prompt", "chosen", "rejected"}`` (prompt a
message list, replies strings) or ``{"prompt", "completion", "label"}``, each with its ``line``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROLES = ("system", "user", "assistant")
Messages = list[dict[str, str]]


class DatasetError(ValueError):
    """Bad training data; the message names the file, line and field."""


def _messages(value: Any, where: str, last_role: str) -> Messages:
    if not isinstance(value, list) or not value:
        raise DatasetError(f"{where}: must be a non-empty list of {{role, content}} messages")
    out: Messages = []
    for i, m in enumerate(value):
        if not isinstance(m, dict):
            raise DatasetError(f"{where}[{i}]: must be an object with 'role' and 'content'")
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise DatasetError(f"{where}[{i}].role: must be one of {list(ROLES)}, got {role!r}")
        if role == "system" and i != 0:
            raise DatasetError(f"{where}[{i}].role: 'system' is only allowed as the first message")
        if not isinstance(content, str) or not content.strip():
            raise DatasetError(f"{where}[{i}].content: must be a non-empty string")
        out.append({"role": role, "content": content})
    if out[-1]["role"] != last_role:
        raise DatasetError(f"{where}[{len(out) - 1}].role: the last message must be '{last_role}', "
                           f"got {out[-1]['role']!r}")
    return out


def _prompt(value: Any, where: str) -> Messages:
    if isinstance(value, str):
        if not value.strip():
            raise DatasetError(f"{where}: must be a non-empty string or a list of messages")
        return [{"role": "user", "content": value}]
    msgs = _messages(value, where, "user")
    return msgs


def _reply(value: Any, where: str) -> str:
    if isinstance(value, str):
        if not value.strip():
            raise DatasetError(f"{where}: must be a non-empty string")
        return value
    msgs = _messages(value, where, "assistant")
    if len(msgs) != 1:
        raise DatasetError(f"{where}: must hold exactly one assistant message, got {len(msgs)}")
    return msgs[0]["content"]


def _require(obj: dict, fields: tuple[str, ...], where: str) -> None:
    for name in fields:
        if name not in obj:
            raise DatasetError(f"{where}: field '{name}' is missing (required: {list(fields)})")


def parse_sft(obj: dict, where: str) -> dict:
    _require(obj, ("messages",), where)
    msgs = _messages(obj["messages"], f"{where}: messages", "assistant")
    if not any(m["role"] == "user" for m in msgs):
        raise DatasetError(f"{where}: messages: needs at least one 'user' message")
    complete = obj.get("complete", True)
    if not isinstance(complete, bool):
        raise DatasetError(f"{where}: complete: must be true or false, got {complete!r}")
    return {"messages": msgs, "complete": complete}


def parse_preference(obj: dict, where: str) -> dict:
    _require(obj, ("prompt", "chosen", "rejected"), where)
    rec = {"prompt": _prompt(obj["prompt"], f"{where}: prompt"),
           "chosen": _reply(obj["chosen"], f"{where}: chosen"),
           "rejected": _reply(obj["rejected"], f"{where}: rejected")}
    if rec["chosen"] == rec["rejected"]:
        raise DatasetError(f"{where}: chosen and rejected are the same reply")
    return rec


def parse_kto(obj: dict, where: str) -> dict:
    _require(obj, ("prompt", "completion", "label"), where)
    if not isinstance(obj["label"], bool):
        raise DatasetError(f"{where}: label: must be true or false, got {obj['label']!r}")
    return {"prompt": _prompt(obj["prompt"], f"{where}: prompt"),
            "completion": _reply(obj["completion"], f"{where}: completion"), "label": obj["label"]}


PARSERS = {"sft": parse_sft, "dpo": parse_preference, "kto": parse_kto}


def load_dataset(path: str | Path, method: str) -> list[dict]:
    """Parse every line of ``path`` for ``method``; raise DatasetError at the first bad line."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"dataset {path}: no such file")
    parse = PARSERS[method]
    records: list[dict] = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path.name} line {n}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DatasetError(f"{where}: not valid JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise DatasetError(f"{where}: must be a JSON object")
            rec = parse(obj, where)
            rec["line"] = n
            records.append(rec)
    if not records:
        raise DatasetError(f"dataset {path}: empty (no examples); the {method} format needs one JSON object a line")
    if method == "kto" and len({r["label"] for r in records}) < 2:
        raise DatasetError(f"dataset {path}: KTO needs both label=true and label=false examples")
    return records
