"""PII scrubbing for dataset text: e-mail addresses, phone numbers, payment card numbers, street addresses.

Each match is replaced by a placeholder (``[EMAIL]``, ``[PHONE]``, ``[CARD]``, ``[ADDRESS]``) and counted.
Rules (pinned by tests/test_datasets.py):
- e-mail: ``local@domain.tld``;
- card: 16 digits (4-4-4-4, spaces or dashes, up to 3 more), 15 as 4-6-5 (Amex) or 16 bare digits, passing
  the Luhn check (checked before phones, so a card number is never counted as a phone); bare runs of other
  lengths are order or tracking numbers and stay;
- phone: an optional ``+country``, then 7 to 15 digits in groups separated by spaces, dots, dashes or
  parentheses (at least 7 digits in all); bare digit runs without separators must have a leading ``+``
  (so order numbers such as 113542617735902 stay); ISO dates (2024-05-06) are not phones;
- address: a house number, one to four capitalised words, then a street suffix (Street, St, Avenue,
  Ave, Road, Rd, Boulevard, Blvd, Lane, Ln, Drive, Dr, Court, Ct, Way, Place, Pl, Terrace, Square).
Bitext's own placeholders (``{{Order Number}}``) are left alone.
"""

from __future__ import annotations

import re

EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
CARD = re.compile(r"\b(?:\d{4}[ -]\d{4}[ -]\d{4}[ -]\d{4}(?:[ -]\d{1,3})?|\d{4}[ -]\d{6}[ -]\d{5}|\d{16})\b")
PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?\d{2,4}(?:[\s.-]\d{2,4}){1,4}\b"
                   r"|\+\d{7,15}\b")
_SUFFIX = (r"Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|"
           r"Square")
ADDRESS = re.compile(rf"\b\d{{1,5}}\s+(?:[A-Z][a-z]+\s+){{1,4}}(?:{_SUFFIX})\b\.?")
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
KINDS = ("email", "card", "phone", "address")


def luhn_ok(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = int(ch)
        if i % 2 == parity:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def scrub(text: str, counts: dict[str, int] | None = None) -> str:
    """``text`` with PII replaced; adds what it replaced to ``counts`` (kind -> matches)."""
    counts = counts if counts is not None else {}

    def sub(pattern: re.Pattern, kind: str, check=None) -> None:  # noqa: ANN001
        nonlocal text

        def repl(m: re.Match) -> str:
            if check is not None and not check(m.group(0)):
                return m.group(0)
            counts[kind] = counts.get(kind, 0) + 1
            return f"[{kind.upper()}]"

        text = pattern.sub(repl, text)

    sub(EMAIL, "email")
    sub(CARD, "card", lambda s: 13 <= len(d := re.sub(r"\D", "", s)) <= 19 and luhn_ok(d))
    sub(PHONE, "phone", lambda s: 7 <= len(re.sub(r"\D", "", s)) <= 15 and not DATE.fullmatch(s))
    sub(ADDRESS, "address")
    return text


def scrub_messages(messages: list[dict], counts: dict[str, int]) -> list[dict]:
    return [{**m, "content": scrub(m.get("content") or "", counts)} for m in messages]
