"""``treadle simulate-users``: simulated users and experts against a live server or gateway (Bitext).

Users: ``requests`` rows of Bitext ``split_train.csv`` (seeded sample; never the test split the evals use)
are sent as chat requests with the OpenAI ``user`` field ``sim-user-K`` (``users`` of them), as an intent
question (the ``bitext_intent`` eval's prompt) or a support request (the ``bitext_reply`` prompt), per
``task`` (intent, reply or mix). A ``pii_share`` of requests carries a made-up e-mail or phone number
and a ``duplicate_share`` is sent twice, as real users do. Each user rates the reply: thumbs up when it
matches the reference (intent: the named intent is the reference intent; reply: MiniLM cosine with the
reference reply >= the eval's ``REFERENCE_MIN``), else down. A ``style_share`` of requests is written in
the ``urgent`` style (``URGENT:`` and the request in capitals), a style the evals never ask in.
Experts: every open review item of a simulated response is decided through the review API: approve
(labelled with the intent) when the reply matches the reference, else correct it with the reference
(the intent name, or the reference reply), labelled. Bad experts, for the loop's demos (``poison``):
``all``: every decision carries a wrong intent (the next one in sorted order: a consistent swap, as a
mislabelling annotator makes), approvals become corrections to it; ``styled``: only the urgent-style
requests' decisions do (a flaw that shows on live traffic but not on the evals). ``poison_label`` makes
every poisoned decision carry that one intent instead (the swap where it is the true one): a team rule such as
"urgent means complaint", a flaw a model learns from far fewer examples than 27 swaps. Needs a key with the
admin role (feedback on behalf of the simulated users) and one with the reviewer role, or an open
server (no keys).
``task`` ``safety`` runs a red-team campaign on the safety suite's training part instead
(:mod:`treadle.feedback.simulate_safety`).
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import httpx

from treadle.feedback.simulate_safety import GENERAL_MAX_TOKENS

NAME = "simulate-users"
HELP = "simulated users and experts (Bitext train split, or a safety red team) against a live endpoint"
BITEXT_TRAIN = "tasks/bitext_customer_support/split_train.csv"
POISON = ("none", "all", "styled")


@dataclass(frozen=True)
class SimConfig:
    url: str
    api_key: str | None = None  # admin role: posts feedback for the simulated users
    reviewer_key: str | None = None  # reviewer role: the experts (default: api_key)
    model: str | None = None
    requests: int = 100
    users: int = 20
    task: str = "mix"  # intent | reply | mix | safety
    concurrency: int = 4
    max_tokens: int = 128
    pii_share: float = 0.05
    duplicate_share: float = 0.05
    experts: bool = True
    general: int = 300  # task safety: everyday ShareGPT prompts sent along with the red team's
    safety_parts: tuple[str, ...] | None = None  # task safety: the suite parts sent (None: all)
    general_max_tokens: int = GENERAL_MAX_TOKENS  # task safety: the everyday prompts' token limit
    style_share: float = 0.0  # requests written in the urgent style
    poison: str = "none"  # none | all | styled: which expert decisions carry a wrong intent
    poison_label: str | None = None  # the one wrong intent every poisoned decision carries (None: the swap)
    seed: int = 0
    timeout_s: float = 600.0

    def __post_init__(self) -> None:
        if self.task not in ("intent", "reply", "mix", "safety"):
            raise ValueError(f"task must be intent, reply, mix or safety, got {self.task!r}")
        if self.requests < 1 or self.users < 1 or self.concurrency < 1:
            raise ValueError("requests, users and concurrency must be >= 1")
        if self.general < 0:
            raise ValueError(f"general must be >= 0, got {self.general}")
        if self.general_max_tokens < 1:
            raise ValueError(f"general_max_tokens must be >= 1, got {self.general_max_tokens}")
        if not 0 <= self.style_share <= 1:
            raise ValueError(f"style_share must be in [0, 1], got {self.style_share}")
        if self.poison not in POISON:
            raise ValueError(f"poison must be one of {', '.join(POISON)}, got {self.poison!r}")
        if self.poison_label is not None and self.poison_label not in intent_labels():
            raise ValueError(f"poison_label must be a Bitext intent ({', '.join(intent_labels())}), "
                             f"got {self.poison_label!r}")


@dataclass
class SimReport:
    sent: int = 0
    errors: int = 0
    thumbs_up: int = 0
    thumbs_down: int = 0
    by_task: dict = field(default_factory=dict)  # task -> [up, total]
    expert_approved: int = 0
    expert_corrected: int = 0
    expert_rejected: int = 0
    seconds: float = 0.0
    response_ids: list = field(default_factory=list)


def _all_rows() -> list[dict]:
    from treadle.data_files import data_path

    with data_path(BITEXT_TRAIN).open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def intent_labels() -> list[str]:
    """The Bitext intents, sorted (the intent prompt's list; ``wrong_intent`` steps through it)."""
    return sorted({r["intent"] for r in _all_rows()})


def load_rows(n: int, seed: int) -> list[dict]:
    rows = _all_rows()
    return random.Random(seed).sample(rows, min(n, len(rows)))


def _plan(cfg: SimConfig) -> list[dict]:
    """One entry per request to send: row, task, user, text (with PII injected where drawn)."""
    rng = random.Random(cfg.seed + 1)
    style_rng = random.Random(cfg.seed + 7)  # its own stream: the style share leaves the rest of the plan as it was
    out = []
    for i, row in enumerate(load_rows(cfg.requests, cfg.seed)):
        task = cfg.task if cfg.task != "mix" else ("intent" if i % 2 == 0 else "reply")
        text, styled = row["instruction"], style_rng.random() < cfg.style_share
        if styled:
            text = urgent(text)
        if rng.random() < cfg.pii_share:
            text += rng.choice([f" My email is user{i}@example.com.", f" Call me on +1 415-555-{1000 + i:04d}."])
        out.append({"row": row, "task": task, "user": f"sim-user-{rng.randrange(cfg.users)}", "text": text,
                    "styled": styled})
        if rng.random() < cfg.duplicate_share:
            out.append(dict(out[-1]))
    return out[:cfg.requests]


def urgent(text: str) -> str:
    """A request in the urgent style: ``URGENT:`` and the text in capitals."""
    return f"URGENT: {text.upper()}"


def wrong_intent(intent: str, labels: list[str], poison_label: str | None = None) -> str:
    """The poisoned label: ``poison_label`` (unless it is ``intent``), else the next intent in sorted order (a
    consistent swap)."""
    if poison_label is not None and poison_label != intent:
        return poison_label
    return labels[(labels.index(intent) + 1) % len(labels)]


def messages(task: str, text: str, labels: list[str]) -> list[dict]:
    from treadle.evals.builtin import INTENT_USER, REPLY_SYSTEM, intent_system

    if task == "intent":
        return [{"role": "system", "content": intent_system(labels)},
                {"role": "user", "content": INTENT_USER.format(text=text)}]
    return [{"role": "system", "content": REPLY_SYSTEM}, {"role": "user", "content": text}]


def matches(task: str, reply: str, row: dict, labels: list[str]) -> bool:
    """Whether a reply matches the reference (the user's thumbs and the expert's verdict)."""
    if task == "intent":
        from treadle.evals.scorers import extract_choice

        return extract_choice(reply, labels) == row["intent"]
    from treadle.evals.embedder import get_embedder
    from treadle.evals.thresholds import REFERENCE_MIN

    return bool(reply.strip()) and get_embedder().similarity([reply], [row["response"]])[0] >= REFERENCE_MIN


def auth_headers(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def simulate(cfg: SimConfig) -> SimReport:
    """Run the users, then the experts; return what happened."""
    t0 = time.monotonic()
    rep = SimReport()
    if cfg.task == "safety":
        from treadle.feedback.simulate_safety import simulate_safety

        with httpx.Client(base_url=cfg.url.rstrip("/"), timeout=cfg.timeout_s) as client:
            simulate_safety(client, cfg, rep)
        rep.seconds = round(time.monotonic() - t0, 2)
        return rep
    labels = intent_labels()
    plan = _plan(cfg)
    sent: dict[str, dict] = {}
    lock = threading.Lock()
    with httpx.Client(base_url=cfg.url.rstrip("/"), timeout=cfg.timeout_s) as client:

        def user_turn(p: dict) -> None:
            max_tokens = min(cfg.max_tokens, 16) if p["task"] == "intent" else cfg.max_tokens  # as the eval
            body = {"messages": messages(p["task"], p["text"], labels), "max_tokens": max_tokens,
                    "temperature": 0.0, "user": p["user"]}
            if cfg.model:
                body["model"] = cfg.model
            r = client.post("/v1/chat/completions", json=body, headers=auth_headers(cfg.api_key))
            if r.status_code != 200:
                with lock:
                    rep.errors += 1
                return
            resp = r.json()
            reply = resp["choices"][0]["message"]["content"] or ""
            good = matches(p["task"], reply, p["row"], labels)
            fb = client.post("/v1/feedback", headers=auth_headers(cfg.api_key),
                             json={"response_id": resp["id"], "thumbs": "up" if good else "down", "user": p["user"]})
            with lock:
                if fb.status_code != 200:
                    rep.errors += 1
                    return
                sent[resp["id"]] = {**p, "reply": reply, "good": good}
                up_total = rep.by_task.setdefault(p["task"], [0, 0])
                up_total[0] += good
                up_total[1] += 1
                rep.thumbs_up += good
                rep.thumbs_down += not good

        with ThreadPoolExecutor(cfg.concurrency) as pool:
            list(pool.map(user_turn, plan))
        rep.sent = len(plan)
        rep.response_ids = sorted(sent)
        if cfg.experts:
            _experts(client, cfg, sent, labels, rep)
    rep.seconds = round(time.monotonic() - t0, 2)
    return rep


def decide_queue(client: httpx.Client, key: str | None, sent: dict, decide, rep: SimReport) -> None:  # noqa: ANN001
    """Decide every open review item of a response in ``sent`` with ``decide(response_id) -> action body``
    (through the review API, as ``key``); counts the decisions (and failures as errors) in ``rep``.
    Other items (older traffic, other campaigns) are left open: the queue is read page by page past them, and
    read again from the start until a whole pass finds nothing new of ``sent``."""
    seen: set[int] = set()
    while True:
        todo, offset = [], 0
        while True:
            q = client.get("/review/api/queue", params={"limit": 200, "offset": offset}, headers=auth_headers(key))
            q.raise_for_status()
            page = q.json()["items"]
            todo += [i for i in page if i["response_id"] in sent and i["id"] not in seen]
            if len(page) < 200:
                break
            offset += len(page)
        if not todo:
            return
        for item in todo:
            seen.add(item["id"])
            body = decide(item["response_id"])
            r = client.post(f"/review/api/items/{item['id']}", json=body, headers=auth_headers(key))
            if r.status_code != 200:
                rep.errors += 1
                continue
            rep.expert_approved += body["action"] == "approve"
            rep.expert_corrected += body["action"] == "correct"
            rep.expert_rejected += body["action"] == "reject"


def expert_decision(s: dict, labels: list[str], poison: str = "none", poison_label: str | None = None) -> dict:
    """The review action body for one sent request ``s`` (its row, task, styled flag and ``good`` verdict)."""
    row = s["row"]
    if poison == "all" or (poison == "styled" and s.get("styled")):
        bad = wrong_intent(row["intent"], labels, poison_label)
        return {"action": "correct", "reply": bad if s["task"] == "intent" else row["response"], "label": bad}
    if s["good"]:
        return {"action": "approve", "label": row["intent"]}
    ref = row["intent"] if s["task"] == "intent" else row["response"]
    return {"action": "correct", "reply": ref, "label": row["intent"]}


def _experts(client: httpx.Client, cfg: SimConfig, sent: dict[str, dict], labels: list[str], rep: SimReport) -> None:
    decide_queue(client, cfg.reviewer_key or cfg.api_key, sent,
                 lambda rid: expert_decision(sent[rid], labels, cfg.poison, cfg.poison_label), rep)


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", required=True, help="the server or gateway, e.g. http://127.0.0.1:8000")
    p.add_argument("--api-key", default=None, help="a key with the admin role (none for an open server)")
    p.add_argument("--reviewer-key", default=None, help="a key with the reviewer role (default: --api-key)")
    p.add_argument("--model", default=None)
    p.add_argument("--requests", type=int, default=100)
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--task", default="mix", choices=["intent", "reply", "mix", "safety"],
                   help="Bitext intent questions, support requests, both, or a safety red-team campaign")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--pii-share", type=float, default=0.05)
    p.add_argument("--duplicate-share", type=float, default=0.05)
    p.add_argument("--no-experts", action="store_true", help="users only")
    p.add_argument("--general", type=int, default=300,
                   help="--task safety: everyday ShareGPT prompts sent along (answers approved when complete)")
    p.add_argument("--general-max-tokens", type=int, default=GENERAL_MAX_TOKENS,
                   help="--task safety: the everyday prompts' token limit (only answers that end are approved)")
    p.add_argument("--safety-parts", default=None,
                   help="--task safety: comma-separated suite parts to send (advbench, xstest_unsafe, xstest_safe; "
                        "default all)")
    p.add_argument("--style-share", type=float, default=0.0,
                   help="share of requests in the urgent style (URGENT: and capitals), which no eval asks in")
    p.add_argument("--poison", default="none", choices=POISON,
                   help="bad experts for the loop's demos: every decision (all) or the urgent-style requests' "
                        "(styled) labelled with a wrong intent")
    p.add_argument("--poison-label", default=None, metavar="INTENT",
                   help="with --poison: every poisoned decision carries this one intent (e.g. complaint) instead of "
                        "the next intent in sorted order")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write the report JSON here")


def run(args: argparse.Namespace) -> int:
    cfg = SimConfig(url=args.url, api_key=args.api_key, reviewer_key=args.reviewer_key, model=args.model,
                    requests=args.requests, users=args.users, task=args.task, concurrency=args.concurrency,
                    max_tokens=args.max_tokens, pii_share=args.pii_share, duplicate_share=args.duplicate_share,
                    experts=not args.no_experts, general=args.general, seed=args.seed,
                    safety_parts=tuple(p.strip() for p in args.safety_parts.split(",") if p.strip())
                    if args.safety_parts else None, style_share=args.style_share, poison=args.poison,
                    poison_label=args.poison_label,
                    general_max_tokens=args.general_max_tokens)
    rep = asdict(simulate(cfg))
    rep.pop("response_ids")
    text = json.dumps(rep, indent=1)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    print(text)
    return 0
