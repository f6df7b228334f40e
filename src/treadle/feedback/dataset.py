"""``treadle dataset build``: reviewed and rated responses -> a versioned dataset in TRL's formats.

Steps: gather candidates (:mod:`treadle.feedback.curate`, PII scrubbed there) from responses not yet in
an earlier version of the same dataset (``include_all`` takes every one); drop exact and near duplicates
per kind (:mod:`treadle.feedback.dedup`), also of records in earlier versions (unless ``include_all``); split train/dev **by response, stratified by label**: within
each label the responses are ordered by SHA-256(seed, response id) and the first
round(``dev_share`` x n) go to dev (a response's records never straddle the split); mix in, once, a
**replay share** of earlier accepted data: round(``replay_share`` x new SFT train records) SFT train
records of earlier versions (originals, not replays, of responses not in this build), seeded, or with
``replay_all`` every one of them (a model retrained from the base each round then learns from all accepted
data, not from the newest round plus a fifth of the rest); write
``sft.jsonl`` (``messages``), ``preference.jsonl`` (``prompt``, ``chosen``, ``rejected``), ``kto.jsonl``
(``prompt``, ``completion``, ``label``), their ``*_dev.jsonl`` and ``manifest.json``; the content hash is
SHA-256 over the data files. The dataset and one ``dataset_items`` row per written record (lineage) are
stored in one transaction.

Selection and mixing options: ``users`` / ``exclude_users`` (shell-style patterns on the response's user,
e.g. ``sim-redteam-*``) choose whose responses a build takes; ``balance`` repeats the SFT train records of
each label (review label) round(largest label's count / its count) times, at most ``MAX_BALANCE_REPEAT``
(each repeat is a dataset item of its own, same source ids), or ``repeat`` (label -> K) repeats the named labels'
K times (a mixing ratio set by hand: balancing a small label up to a large one also multiplies every other
label); ``cap`` (label -> N) keeps at most N responses of a label, the first N by SHA-256(seed, response id),
before the split (the manifest counts what it dropped; a dropped response is never replayed into the build
either); ``fixed_mix`` names another dataset whose
newest version's train records join every build as replay rows (``replay_of`` = the mix's item, so each
keeps its source response and review), and whose responses this build never takes itself; ``fixed_mix_share``
takes the records of a seeded share of its responses instead of all. ``seen_datasets`` (dataset ids: a warm start's parent's
lineage) narrows "earlier" to the data the model being continued has learned, replays included (a version built
with ``replay_all`` holds most of its data as replays): responses outside them are new (also those of builds
whose candidates were never promoted), and replay draws only from them.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

from treadle.feedback.curate import Candidate, gather, record_text
from treadle.feedback.dedup import NEAR_THRESHOLD, TEMPLATE_SHARE, keep_mask
from treadle.store import Store
from treadle.store.models import Dataset, DatasetItem, utcnow

KINDS = ("sft", "preference", "kto")
MAX_BALANCE_REPEAT = 5


@dataclass(frozen=True)
class BuildOptions:
    name: str = "feedback"
    dev_share: float = 0.1
    replay_share: float = 0.2
    near_threshold: float = NEAR_THRESHOLD
    template_share: float = TEMPLATE_SHARE  # lines in this share of the texts are left out of the near pass
    embed: bool = True
    include_all: bool = False
    seed: int = 0
    users: str | None = None  # only responses whose user matches this pattern
    exclude_users: str | None = None  # never responses whose user matches this pattern
    balance: bool = False  # repeat minority labels' SFT train records
    fixed_mix: str | None = None  # a dataset name: its newest version's train records join every build
    replay_all: bool = False  # replay every earlier original SFT train record, not a share
    repeat: dict[str, int] | None = None  # label -> times its SFT train records enter (instead of balance)
    cap: dict[str, int] | None = None  # label -> most responses of that label taken (seeded)
    fixed_mix_share: float = 1.0  # seeded share of the fixed mix's responses whose records join the build
    seen_datasets: tuple[int, ...] | None = None  # dataset ids the trained model has learned (warm start)

    def __post_init__(self) -> None:
        if self.fixed_mix is not None and self.fixed_mix == self.name:
            raise ValueError(f"fixed_mix must name another dataset than the one built ({self.name!r})")
        for field_name in ("dev_share", "replay_share", "fixed_mix_share"):
            v = getattr(self, field_name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{field_name} must be within [0, 1], got {v}")
        if self.balance and self.repeat:
            raise ValueError("balance and repeat are exclusive: balance sets every label's repeats, repeat names them")
        for field_name, least in (("repeat", 1), ("cap", 0)):
            for label, n in (getattr(self, field_name) or {}).items():
                if not isinstance(n, int) or isinstance(n, bool) or n < least:
                    raise ValueError(f"{field_name}[{label!r}] must be an integer >= {least}, got {n!r}")
        if not 0.0 < self.near_threshold <= 1.0:
            raise ValueError(f"near_threshold must be within (0, 1], got {self.near_threshold}")
        if not self.template_share > 0.0:
            raise ValueError(f"template_share must be > 0 (above 1: no template lines), got {self.template_share}")


def _hash(seed: int, text: str) -> str:
    return hashlib.sha256(f"{seed}:{text}".encode()).hexdigest()


def split_responses(strata: dict[str, str], dev_share: float, seed: int) -> dict[str, str]:
    """response id -> 'train' | 'dev', stratified by ``strata`` (response id -> label)."""
    by: dict[str, list[str]] = {}
    for rid, label in strata.items():
        by.setdefault(label, []).append(rid)
    out: dict[str, str] = {}
    for rids in by.values():
        rids.sort(key=lambda r: _hash(seed, r))
        n_dev = round(dev_share * len(rids)) if len(rids) > 1 else 0
        for i, rid in enumerate(rids):
            out[rid] = "dev" if i < n_dev else "train"
    return out


def wanted_user(users: str | None, exclude_users: str | None):  # noqa: ANN201 - a predicate
    """The user filter of ``users`` / ``exclude_users`` patterns, or None for everyone."""
    if users is None and exclude_users is None:
        return None
    return lambda u: ((users is None or fnmatch.fnmatchcase(u or "", users))
                      and (exclude_users is None or not fnmatch.fnmatchcase(u or "", exclude_users)))


def build(store: Store, out_dir: str | Path, opts: BuildOptions = BuildOptions()) -> dict:
    """Build the next version of ``opts.name`` into ``out_dir``; return its manifest."""
    out = Path(out_dir)
    mix_rows, mix_info, mix_responses = _fixed_mix(store, opts.fixed_mix, opts.fixed_mix_share, opts.seed)
    with store.session() as s:
        earlier = list(s.execute(select(Dataset).where(Dataset.name == opts.name)).scalars())
        if opts.seen_datasets is not None:
            earlier = [d for d in earlier if d.id in set(opts.seen_datasets)]
        earlier_ids = [d.id for d in earlier]
        # every version's responses are the originals of all versions; a chosen few versions (a warm start's
        # parent) also learned the records they hold as replays
        held = [DatasetItem.replay_of.is_(None)] if opts.seen_datasets is None else []
        done: set[str] = set()
        if earlier_ids and not opts.include_all:
            done = set(s.execute(select(DatasetItem.response_id).where(
                DatasetItem.dataset_id.in_(earlier_ids), *held,
                DatasetItem.response_id.is_not(None))).scalars()) - mix_responses
        cur = gather(s, done | mix_responses, wanted_user(opts.users, opts.exclude_users))
        prior: dict[str, list[str]] = {k: [] for k in KINDS}
        if earlier_ids and not opts.include_all:
            for kind, rec in s.execute(select(DatasetItem.kind, DatasetItem.record).where(
                    DatasetItem.dataset_id.in_(earlier_ids), *held)):
                if not rec.get("redacted"):
                    prior[kind].append(record_text(kind, rec))
    encode = None
    if opts.embed:
        from treadle.evals.embedder import get_embedder

        encode = get_embedder().encode
    kept: list[Candidate] = []
    removed = {"exact_duplicates": 0, "near_duplicates": 0}
    for kind in KINDS:
        cands = [c for c in cur.candidates if c.kind == kind]
        mask, exact, near = keep_mask([c.text for c in cands], opts.near_threshold, encode, prior[kind],
                                       opts.template_share)
        kept += [c for c, k in zip(cands, mask, strict=True) if k]
        removed["exact_duplicates"] += exact
        removed["near_duplicates"] += near
    before = {c.response_id for c in kept}
    kept, capped = _cap(kept, opts.cap or {}, opts.seed)
    left_out = before - {c.response_id for c in kept}  # a cap's dropped responses never return as replay
    split = split_responses({c.response_id: c.stratum for c in kept}, opts.dev_share, opts.seed)
    rows: list[dict] = [{"kind": c.kind, "split": split[c.response_id], "record": c.record, "response_id": c.response_id,
                         "user": c.user, "review_item_id": c.review_item_id, "feedback_ids": list(c.feedback_ids),
                         "replay_of": None, "stratum": c.stratum} for c in kept]
    rows, balance = _balance(rows, opts.repeat) if opts.balance or opts.repeat else (rows, {})
    rows += _replay(store, earlier_ids, {c.response_id for c in kept} | left_out | mix_responses, rows, opts)
    rows += mix_rows
    extra = {"balance": balance, "fixed_mix": mix_info, "capped": capped}
    return _write(store, out, opts, rows, cur.pii, removed, cur.sources, earlier, extra)


def _cap(kept: list[Candidate], cap: dict[str, int], seed: int) -> tuple[list[Candidate], dict[str, int]]:
    """Keep at most ``cap[label]`` responses of each capped label (first by SHA-256(seed, id)); dropped counts."""
    if not cap:
        return kept, {}
    by: dict[str, set[str]] = {}
    for c in kept:
        by.setdefault(c.stratum, set()).add(c.response_id)
    keep = {label: set(sorted(rids, key=lambda r: _hash(seed, r))[:cap[label]])
            for label, rids in by.items() if label in cap}
    out = [c for c in kept if c.stratum not in keep or c.response_id in keep[c.stratum]]
    return out, {label: len(by[label]) - len(keep[label]) for label in keep}


def _balance(rows: list[dict], given: dict[str, int] | None = None) -> tuple[list[dict], dict[str, int]]:
    """Repeat each label's SFT train rows ``given[label]`` times (labels not named: once), or without ``given``
    round(largest count / its count) times (<= MAX_BALANCE_REPEAT)."""
    counts = Counter(r["stratum"] for r in rows if r["kind"] == "sft" and r["split"] == "train")
    if given:
        repeat = {k: given.get(k, 1) for k in counts}
    elif len(counts) < 2:
        return rows, {k: 1 for k in counts}
    else:
        top = max(counts.values())
        repeat = {k: min(MAX_BALANCE_REPEAT, max(1, round(top / n))) for k, n in counts.items()}
    out = []
    for r in rows:
        n = repeat[r["stratum"]] if r["kind"] == "sft" and r["split"] == "train" else 1
        out += [r] * n
    return out, repeat


def _fixed_mix(store: Store, name: str | None, share: float = 1.0,
               seed: int = 0) -> tuple[list[dict], dict | None, set[str]]:
    """(rows of the mix's newest version's train records, or those of a seeded ``share`` of its responses; its
    manifest entry; every response it ever took)."""
    if name is None:
        return [], None, set()
    with store.session() as s:
        versions = list(s.execute(select(Dataset).where(Dataset.name == name).order_by(Dataset.version)).scalars())
        if not versions:
            raise ValueError(f"fixed_mix: no dataset named {name!r} in the store (build it first)")
        ds = versions[-1]
        if ds.tainted_reason:
            raise ValueError(f"fixed_mix: dataset {name!r} v{ds.version} is tainted ({ds.tainted_reason}); "
                             "build a new version")
        responses = set(s.execute(select(DatasetItem.response_id).where(
            DatasetItem.dataset_id.in_([d.id for d in versions]), DatasetItem.response_id.is_not(None))).scalars())
        items = list(s.execute(select(DatasetItem).where(DatasetItem.dataset_id == ds.id, DatasetItem.split == "train")
                               .order_by(DatasetItem.id)).scalars())
        rows = [{"kind": it.kind, "split": "train", "record": it.record, "response_id": it.response_id,
                 "user": it.user, "review_item_id": it.review_item_id,
                 "feedback_ids": [it.feedback_id] if it.feedback_id is not None else [], "replay_of": it.id}
                for it in items if not it.record.get("redacted")]
        total = len(rows)
        if share < 1.0:  # whole responses (every record and repeat of one), so the mix keeps its ratios
            rids = sorted({r["response_id"] for r in rows}, key=str)
            keep = set(random.Random(seed).sample(rids, round(share * len(rids))))
            rows = [r for r in rows if r["response_id"] in keep]
        info = {"name": name, "version": ds.version, "dataset_id": ds.id, "content_hash": ds.content_hash,
                "count": len(rows), "of": total}
    return rows, info, responses


def _replay(store: Store, earlier_ids: list[int], current: set[str], rows: list[dict], opts: BuildOptions) -> list[dict]:
    n_new = sum(r["kind"] == "sft" and r["split"] == "train" for r in rows)
    want = round(opts.replay_share * n_new)
    if not earlier_ids or (want == 0 and not opts.replay_all):
        return []
    with store.session() as s:
        held = [DatasetItem.replay_of.is_(None)] if opts.seen_datasets is None else []  # as in build()
        pool = list(s.execute(select(DatasetItem).where(
            DatasetItem.dataset_id.in_(earlier_ids), DatasetItem.kind == "sft", DatasetItem.split == "train",
            *held, DatasetItem.user.is_not(None)).order_by(DatasetItem.id)).scalars())
    seen: set[str] = set()
    uniq = []
    for it in pool:
        if it.response_id not in current and it.response_id not in seen and not it.record.get("redacted"):
            seen.add(it.response_id)
            uniq.append(it)
    picked = uniq if opts.replay_all else random.Random(opts.seed).sample(uniq, min(want, len(uniq)))
    return [{"kind": "sft", "split": "train", "record": it.record, "response_id": it.response_id, "user": it.user,
             "review_item_id": it.review_item_id, "feedback_ids": [],
             "replay_of": it.replay_of or it.id} for it in picked]  # always the original item


def _file(kind: str, split: str) -> str:
    return f"{kind}.jsonl" if split == "train" else f"{kind}_dev.jsonl"


def _write(store: Store, out: Path, opts: BuildOptions, rows: list[dict], pii: dict, removed: dict, sources: int,
           earlier: list[Dataset], extra: dict) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, list[str]] = {_file(k, sp): [] for k in KINDS for sp in ("train", "dev")}
    items = []
    for r in rows:
        name = _file(r["kind"], r["split"])
        line = json.dumps(r["record"], ensure_ascii=False, sort_keys=True)
        items.append({"file": name, "line": len(files[name]), "response_id": r["response_id"],
                      "review_item_id": r["review_item_id"], "feedback_ids": r["feedback_ids"],
                      "replay_of": r["replay_of"], "record_hash": hashlib.sha256(line.encode()).hexdigest()})
        files[name].append(line)
    digests, whole = {}, hashlib.sha256()
    for name in sorted(files):
        data = "".join(line + "\n" for line in files[name]).encode()
        (out / name).write_bytes(data)
        digests[name] = hashlib.sha256(data).hexdigest()
        whole.update(name.encode() + b"\0" + data)
    content_hash = whole.hexdigest()
    counts = {k: {sp: len(files[_file(k, sp)]) for sp in ("train", "dev")} for k in KINDS}
    with store.session() as s:
        version = int(s.execute(select(func.coalesce(func.max(Dataset.version), 0)).where(
            Dataset.name == opts.name)).scalar()) + 1
        manifest = {"name": opts.name, "version": version, "content_hash": content_hash,
                    "created_at": utcnow().isoformat() + "Z", "options": opts.__dict__, "sources": sources,
                    "counts": counts, "removed": removed, "pii_scrubbed": pii,
                    "replay": {"count": sum(r["replay_of"] is not None for r in rows),
                               "from_versions": sorted(d.version for d in earlier)}, **extra,
                    "files": digests, "items": items}
        ds = Dataset(name=opts.name, version=version, content_hash=content_hash, out_dir=str(out.resolve()),
                     manifest={k: v for k, v in manifest.items() if k != "items"})
        s.add(ds)
        s.flush()
        manifest["dataset_id"] = ds.id
        for r, it in zip(rows, items, strict=True):
            fb = r["feedback_ids"]
            s.add(DatasetItem(dataset_id=ds.id, kind=r["kind"], split=r["split"], record_hash=it["record_hash"],
                              response_id=r["response_id"], user=r["user"], feedback_id=fb[0] if fb else None,
                              review_item_id=r["review_item_id"], replay_of=r["replay_of"], record=r["record"]))
        (out / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False))
    return manifest
