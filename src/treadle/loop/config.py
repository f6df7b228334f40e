"""``loop.yaml``: what ``treadle loop`` does, with documented defaults (docs/LOOP.md).

```yaml
alias: support-bot              # the gateway route the loop improves
base_model: default             # the model every tune starts from (a local HF folder or 'default')
production: smollm2-135m-instruct  # the served name of the first production version (registered as kind base)
db: sqlite:///loop.db           # the store (default: $TREADLE_DB, else ~/.cache/treadle/treadle.db)
workdir: loop-work              # datasets, adapters, eval results per run
gateway: {url: http://127.0.0.1:9000, admin_key: KEY, api_key: null}
trigger: {min_new_approved: 200, every_minutes: null}   # N new approved items, or a schedule
dataset: {name: loop, embed: true, replay_share: 0.2, dev_share: 0.1,
          template_share: 0.2,            # lines in a fifth of the texts are a template's (near-duplicate pass)
          replay_all: false,              # true: every earlier accepted record joins, not a share
          fixed_mix: null,                # a dataset in the store (e.g. safety) joining every build
          fixed_mix_share: 1.0,           # the share of it that joins (seeded; < 1 suits warm starts)
          users: null, exclude_users: null}   # user patterns, e.g. exclude_users: 'sim-redteam-*'
tune: {method: sft, args: {epochs: 1, lora_r: 16},   # any treadle tune field
       warm_start: false}   # true: continue production's adapter on what it has not learned (sft only)
gating: {suites: [bitext_intent, safety], suite_files: [], sizes: {}, seed: 0, concurrency: 16}
gate: {margin: 0.02, margins: {}, threshold: 0.95, thresholds: {}, superiority: [bitext_intent/accuracy],
       confidence: 0.95, floor_once_reached: [safety]}
canary: {share: 0.1, looks: 5, requests_per_look: 200, poll_seconds: 10, max_minutes: 120,
         safety_classifier: unsafe, sample_per_look: 100, margins: {}, latency_margin: 0.10}
full_suites_on_promotion: []    # suites run in full on a promoted version (minutes to hours)
```
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from treadle.evals.loop_gate import LoopGatePolicy
from treadle.feedback.dedup import TEMPLATE_SHARE
from treadle.loop.canary import CanaryPolicy


@dataclass(frozen=True)
class GatewayConfig:
    url: str = "http://127.0.0.1:9000"
    admin_key: str | None = None
    api_key: str | None = None


@dataclass(frozen=True)
class TriggerConfig:
    min_new_approved: int = 200
    every_minutes: float | None = None


@dataclass(frozen=True)
class DatasetConfig:
    name: str = "loop"
    embed: bool = True
    template_share: float = TEMPLATE_SHARE  # treadle dataset build --template-share
    replay_share: float = 0.2
    replay_all: bool = False  # every earlier accepted record joins (the candidate learns from all of it)
    dev_share: float = 0.1
    seed: int = 0
    fixed_mix: str | None = None  # a dataset name: its newest version's train records join every build
    fixed_mix_share: float = 1.0  # the seeded share of the fixed mix's records that joins
    users: str | None = None  # only responses of these users (a pattern)
    exclude_users: str | None = None  # never responses of these users (a pattern)


@dataclass(frozen=True)
class TuneStep:
    method: str = "sft"
    args: dict[str, Any] = field(default_factory=dict)
    warm_start: bool = False  # continue production's adapter (its datasets count as seen) instead of a new one


@dataclass(frozen=True)
class GatingConfig:
    suites: tuple[str, ...] = ("bitext_intent", "safety")
    suite_files: tuple[str, ...] = ()
    sizes: dict[str, int] = field(default_factory=dict)  # suite -> items (default: sized for the gate's power)
    seed: int = 0
    concurrency: int = 16
    discordance: float = 0.05  # planning value of the share of items that flip between versions
    base_url: str | None = None  # where evals run (default: the gateway); a replica URL keeps eval traffic out of the log


@dataclass(frozen=True)
class CanaryStep:
    policy: CanaryPolicy = field(default_factory=CanaryPolicy)
    poll_seconds: float = 10.0
    max_minutes: float = 120.0
    safety_classifier: str = "unsafe"  # 'unsafe' (the MiniLM head) or 'keywords:w1,w2' (smoke tests)
    sample_per_look: int = 100  # live outputs checked per version per look reached (look k: k x this many)


@dataclass(frozen=True)
class LoopConfig:
    alias: str
    production: str
    base_model: str = "default"
    db: str | None = None
    workdir: str = "loop-work"
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    trigger: TriggerConfig = field(default_factory=TriggerConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    tune: TuneStep = field(default_factory=TuneStep)
    gating: GatingConfig = field(default_factory=GatingConfig)
    gate: LoopGatePolicy = field(default_factory=LoopGatePolicy)
    floor_once_reached: tuple[str, ...] = ("safety",)  # suites whose metrics keep their threshold once reached
    canary: CanaryStep = field(default_factory=CanaryStep)
    full_suites_on_promotion: tuple[str, ...] = ()

    @property
    def work(self) -> Path:
        return Path(self.workdir)


def _build(cls: type, data: dict | None, where: str) -> Any:
    """A frozen dataclass from a mapping; unknown keys are an error naming them and the valid ones."""
    data = dict(data or {})
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; valid: {sorted(names)}")
    for k, v in list(data.items()):
        if isinstance(v, list):
            data[k] = tuple(v)
    return cls(**data)


def config_from_dict(raw: dict) -> LoopConfig:
    raw = dict(raw or {})
    for key in ("alias", "production"):
        if not raw.get(key):
            raise ValueError(f"loop config: '{key}' is required")
    if "mix" in (raw.get("tune") or {}):
        raise ValueError("tune.mix: training files outside the store are not accepted (no lineage); put the mix in "
                         "a dataset (e.g. treadle simulate-users --task safety, then treadle dataset build --name "
                         "safety --users 'sim-redteam-*' --balance) and name it in dataset.fixed_mix")
    gate = dict(raw.pop("gate", None) or {})
    floor = tuple(gate.pop("floor_once_reached", ("safety",)))
    canary = dict(raw.pop("canary", None) or {})
    step_keys = {f.name for f in dataclasses.fields(CanaryStep)} - {"policy"}
    step = {k: canary.pop(k) for k in list(canary) if k in step_keys}
    policy = _build(CanaryPolicy, canary, "canary")
    policy.validate()
    gate_policy = _build(LoopGatePolicy, gate, "gate")
    gate_policy.validate()
    cfg = LoopConfig(
        alias=raw.pop("alias"), production=raw.pop("production"), base_model=raw.pop("base_model", "default"),
        db=raw.pop("db", None), workdir=raw.pop("workdir", "loop-work"),
        gateway=_build(GatewayConfig, raw.pop("gateway", None), "gateway"),
        trigger=_build(TriggerConfig, raw.pop("trigger", None), "trigger"),
        dataset=_build(DatasetConfig, raw.pop("dataset", None), "dataset"),
        tune=_build(TuneStep, raw.pop("tune", None), "tune"),
        gating=_build(GatingConfig, raw.pop("gating", None), "gating"),
        gate=gate_policy, floor_once_reached=floor,
        canary=CanaryStep(policy=policy, **step),
        full_suites_on_promotion=tuple(raw.pop("full_suites_on_promotion", ())),
    )
    if raw:
        raise ValueError(f"loop config: unknown keys {sorted(raw)}")
    if cfg.trigger.min_new_approved < 1:
        raise ValueError(f"trigger.min_new_approved must be >= 1, got {cfg.trigger.min_new_approved}")
    if cfg.tune.warm_start and cfg.tune.method != "sft":
        raise ValueError(f"tune.warm_start: only sft continues an adapter, got method {cfg.tune.method!r}")
    if cfg.tune.warm_start and cfg.dataset.replay_all:
        raise ValueError("tune.warm_start with dataset.replay_all would train the continued adapter on everything "
                         "it learned again; use dataset.replay_share")
    if not 0.0 <= cfg.dataset.fixed_mix_share <= 1.0:
        raise ValueError(f"dataset.fixed_mix_share must be within [0, 1], got {cfg.dataset.fixed_mix_share}")
    if not cfg.gating.suites and not cfg.gating.suite_files:
        raise ValueError("gating: name at least one suite or suite file")
    return cfg


def load_config(path: str | Path) -> LoopConfig:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"--config {p}: no such file")
    return config_from_dict(yaml.safe_load(p.read_text()) or {})
