"""One configuration dataclass per training method; its fields ARE the ``treadle tune`` flags.

``TuneConfig`` holds what every method shares (data, base model, LoRA, schedule, budget); ``SFTConfig``,
``DPOConfig`` and ``KTOConfig`` add their own fields. ``treadle.config_args`` (the project's helper) turns a
class into argparse flags (``lora_r`` -> ``--lora-r``, help from ``metadata["help"]``): no second list to keep.
A run writes ``asdict(config)`` (resolved: model path, threads) as ``tune_config.json`` beside the adapter.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The projections Treadle's engine can serve a LoRA on (attention q/k/v/o and the MLP's gate/up/down).
SERVABLE_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _f(default: Any, help: str) -> Any:  # noqa: A002 - mirrors argparse's name
    return field(default=default, metadata={"help": help})


@dataclass
class TuneConfig:
    """Fields shared by every method. Invariant after ``validate()``: values are in range, modules servable."""

    data: str = field(metadata={"help": "dataset JSONL (sft.jsonl / preference.jsonl / kto.jsonl format)"})
    out: str = field(metadata={"help": "output folder: adapter, tune_config.json, run_record.json, checkpoints/"})
    model: str = _f("default", "base model: 'default' (the bundled model) or a local Hugging Face folder")
    full: bool = _f(False, "full fine-tuning instead of LoRA (small models only; writes a whole model)")
    init_adapter: str = _f("", "continue training this LoRA adapter folder (e.g. production's) instead of a new "
                               "LoRA; its rank, alpha, modules and dropout replace the LoRA flags")
    lora_r: int = _f(16, "LoRA rank")
    lora_alpha: float = _f(32.0, "LoRA alpha (scale alpha/r)")
    lora_dropout: float = _f(0.05, "dropout on the LoRA input")
    target_modules: str = _f(",".join(SERVABLE_MODULES), "comma list of projections to adapt (servable ones only)")
    use_rslora: bool = _f(False, "rank-stabilised LoRA (scale alpha/sqrt(r))")
    epochs: float = _f(1.0, "passes over the dataset")
    max_steps: int = _f(-1, "stop after this many optimizer steps (-1: from --epochs)")
    batch_size: int = _f(8, "examples per optimizer step (per micro-batch)")
    grad_accum: int = _f(1, "micro-batches per optimizer step")
    learning_rate: float = _f(2e-4, "peak learning rate")
    lr_scheduler: str = _f("linear", "learning-rate schedule (transformers name: linear, cosine, constant, ...)")
    warmup_ratio: float = _f(0.0, "share of steps with linear warm-up")
    weight_decay: float = _f(0.0, "AdamW weight decay")
    max_grad_norm: float = _f(1.0, "gradient clipping norm")
    max_length: int = _f(1024, "longest example in tokens; longer examples are an error (never silently cut)")
    seed: int = _f(0, "seed for data order, initialisation and dropout (same seed, same adapter)")
    threads: int = _f(0, "CPU threads for torch (0: every core this process may use)")
    save_steps: int = _f(50, "write a checkpoint every N steps (for --resume)")
    save_total_limit: int = _f(2, "keep only the newest N checkpoints")
    resume: bool = _f(False, "continue from the newest checkpoint in OUT/checkpoints")
    max_minutes: float | None = _f(None, "time budget: stop cleanly after N minutes and write a usable adapter")
    logging_steps: int = _f(1, "log loss and speed every N steps")
    progress: bool = _f(True, "show the progress bar (loss, tokens/s, time left)")

    method = "base"

    def modules(self) -> list[str]:
        return [m.strip() for m in self.target_modules.split(",") if m.strip()]

    def validate(self) -> None:
        """Raise ValueError naming the field and what is valid."""
        for name in ("data", "out"):
            if not getattr(self, name):
                raise ValueError(f"{name}: required (--{name} on the command line)")
        bad = [m for m in self.modules() if m not in SERVABLE_MODULES]
        if bad or not self.modules():
            raise ValueError(f"target_modules: {bad or 'empty'} not servable; choose among {list(SERVABLE_MODULES)}")
        positive = {"lora_r": self.lora_r, "batch_size": self.batch_size, "grad_accum": self.grad_accum,
                    "learning_rate": self.learning_rate, "max_length": self.max_length, "save_steps": self.save_steps}
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.epochs <= 0 and self.max_steps <= 0:
            raise ValueError("epochs must be > 0 (or set max_steps)")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ValueError(f"max_minutes must be > 0, got {self.max_minutes}")
        if self.init_adapter:
            if self.full:
                raise ValueError("init_adapter: continues a LoRA adapter; it cannot be combined with full=True")
            if self.method != "sft":
                raise ValueError(f"init_adapter: only sft continues an adapter ({self.method}'s reference model is "
                                 "the base with the adapter off, not the adapter it starts from)")
            if not (Path(self.init_adapter) / "adapter_config.json").is_file():
                raise ValueError(f"init_adapter: {self.init_adapter!r} is not a LoRA adapter folder "
                                 "(no adapter_config.json)")

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, **dataclasses.asdict(self)}

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")


@dataclass
class SFTConfig(TuneConfig):
    """Supervised fine-tuning on ``messages``; loss on assistant turns only."""

    shared_prefix: bool = _f(True, "run a prefix shared by the whole batch once and reuse its KV (same loss)")
    min_shared_prefix: int = _f(16, "shortest shared prefix (tokens) worth the shared-prefix path")
    group_by_prefix: bool = _f(True, "batch examples with the same first message together (more shared prefixes)")

    method = "sft"


@dataclass
class DPOConfig(TuneConfig):
    """Direct preference optimisation on ``prompt``/``chosen``/``rejected``; reference = base (adapter off)."""

    learning_rate: float = _f(5e-5, "peak learning rate")
    beta: float = _f(0.1, "DPO beta: strength of the pull towards the reference model")
    loss_type: str = _f("sigmoid", "DPO loss (TRL name: sigmoid, ipo, hinge, ...)")

    method = "dpo"


@dataclass
class KTOConfig(TuneConfig):
    """KTO on unpaired ``prompt``/``completion``/``label`` (thumbs up/down); reference = base (adapter off)."""

    learning_rate: float = _f(5e-5, "peak learning rate")
    beta: float = _f(0.1, "KTO beta: strength of the pull towards the reference model")
    desirable_weight: float = _f(1.0, "loss weight of label=true examples")
    undesirable_weight: float = _f(1.0, "loss weight of label=false examples")

    method = "kto"


METHODS: dict[str, type[TuneConfig]] = {"sft": SFTConfig, "dpo": DPOConfig, "kto": KTOConfig}


def config_for(method: str, **values: Any) -> TuneConfig:
    """The config of ``method`` from keyword values (Python API)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    names = {f.name for f in dataclasses.fields(METHODS[method])}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown {method} option(s) {unknown}; valid: {sorted(names)}")
    return METHODS[method](**values)
