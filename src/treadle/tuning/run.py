"""``tune(config)``: one training run from the base model to an adapter folder and a run record.

Steps: validate the config; read and validate the dataset; render it with the engine's chat template;
load the base model (float32) and wrap it in a PEFT LoRA (unless ``full``); build the method's TRL
trainer (SFT: padding-free batches + the shared-prefix loss; DPO/KTO: the reference model is the base
with the adapter disabled); train (``resume`` picks the newest checkpoint in OUT/checkpoints); save the
adapter (or the full model) in OUT with ``tune_config.json`` and ``run_record.json``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

from treadle.tuning.config import SFTConfig, TuneConfig
from treadle.tuning.data import DatasetError, load_dataset
from treadle.tuning.record import (
    cpu_seconds,
    file_sha256,
    library_versions,
    model_sha256,
    training_metrics,
    write_record,
)

CHECKPOINTS = "checkpoints"


def machine_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def last_checkpoint(out: Path) -> Path | None:
    """Newest complete checkpoint: the Trainer writes trainer_state.json last, so a kill mid-save is skipped."""
    folder = out / CHECKPOINTS
    found = [p for p in folder.glob("checkpoint-*")
             if p.name.split("-")[-1].isdigit() and (p / "trainer_state.json").is_file()] if folder.is_dir() else []
    return max(found, key=lambda p: int(p.name.split("-")[-1])) if found else None


def _build_rows(config: TuneConfig, records: list[dict], model_dir: Path) -> tuple[list[dict], list[str]]:
    """Trainer rows for the method, and each row's group key (first message, for prefix batching)."""
    from treadle.tuning.chat import ChatRenderer

    r = ChatRenderer(model_dir)
    rows, keys = [], []
    name = Path(config.data).name
    for rec in records:
        if config.method == "sft":
            row = r.sft_example(rec["messages"], rec.get("complete", True))
            n = len(row["input_ids"])
            first = rec["messages"][0]
        elif config.method == "dpo":
            prompt, chosen = r.prompt_and_reply(rec["prompt"], rec["chosen"])
            _, rejected = r.prompt_and_reply(rec["prompt"], rec["rejected"])
            row = {"prompt": prompt, "chosen": chosen, "rejected": rejected}
            n = len(r.encode(prompt)) + max(len(r.encode(chosen)), len(r.encode(rejected)))
            first = rec["prompt"][0]
        else:
            prompt, completion = r.prompt_and_reply(rec["prompt"], rec["completion"])
            row = {"prompt": prompt, "completion": completion, "label": rec["label"]}
            n = len(r.encode(prompt + completion))
            first = rec["prompt"][0]
        if n > config.max_length:
            raise DatasetError(f"{name} line {rec['line']}: {n} tokens > max_length {config.max_length} "
                               "(raise --max-length or shorten the example)")
        rows.append(row)
        keys.append(f"{first['role']}\n{first['content']}" if first["role"] == "system" else "")
    return rows, keys


def _trl_args(config: TuneConfig, out: Path) -> Any:
    import trl

    common = dict(
        output_dir=str(out / CHECKPOINTS), per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum, num_train_epochs=config.epochs, max_steps=config.max_steps,
        learning_rate=config.learning_rate, lr_scheduler_type=config.lr_scheduler, warmup_steps=config.warmup_ratio,
        weight_decay=config.weight_decay, max_grad_norm=config.max_grad_norm, seed=config.seed,
        data_seed=config.seed, logging_steps=config.logging_steps, save_steps=config.save_steps,
        save_total_limit=config.save_total_limit, report_to="none", disable_tqdm=True, use_cpu=True,
        dataloader_num_workers=0, bf16=False, fp16=False, activation_checkpointing=False,
    )
    if config.method == "sft":
        return trl.SFTConfig(**common, padding_free=True, max_length=None, include_num_input_tokens_seen="all",
                             dataset_kwargs={"skip_prepare_dataset": True}, completion_only_loss=None)
    common.update(max_length=config.max_length, include_num_input_tokens_seen="non_padding")
    if config.method == "dpo":
        return trl.DPOConfig(**common, beta=config.beta, loss_type=[config.loss_type])
    return trl.KTOConfig(**common, beta=config.beta, desirable_weight=config.desirable_weight,
                         undesirable_weight=config.undesirable_weight)


def _load_model(config: TuneConfig, model_dir: Path) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if config.full:
        return model
    import peft

    if config.init_adapter:  # continue an adapter: its own weights and shape, trainable again
        return peft.PeftModel.from_pretrained(model, config.init_adapter, is_trainable=True)
    lora = peft.LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                           target_modules=config.modules(), use_rslora=config.use_rslora, bias="none",
                           task_type="CAUSAL_LM")
    return peft.get_peft_model(model, lora)


def init_adapter_shape(config: TuneConfig) -> dict[str, Any]:
    """The LoRA fields of ``config.init_adapter`` (rank, alpha, modules, rsLoRA, dropout), so the written config says what
    was trained; {} without one. A module Treadle cannot serve is an error, as for a new adapter."""
    if not config.init_adapter:
        return {}
    ac = json.loads((Path(config.init_adapter) / "adapter_config.json").read_text())
    modules = ac.get("target_modules") or []
    modules = [modules] if isinstance(modules, str) else sorted(modules)
    shape = {"lora_r": int(ac["r"]), "lora_alpha": float(ac["lora_alpha"]), "target_modules": ",".join(modules),
             "use_rslora": bool(ac.get("use_rslora", False)), "lora_dropout": float(ac.get("lora_dropout", 0.0))}
    dataclasses.replace(config, **shape).validate()
    return shape


def _init_adapter_record(config: TuneConfig) -> dict[str, Any] | None:
    if not config.init_adapter:
        return None
    weights = Path(config.init_adapter) / "adapter_model.safetensors"
    return {"path": str(Path(config.init_adapter).resolve()),
            "sha256": file_sha256(weights) if weights.is_file() else None}


def build_trainer(config: TuneConfig, model_dir: Path, out: Path) -> Any:
    """The TRL trainer for ``config`` (model loaded and wrapped, dataset rendered); nothing trained yet."""
    from datasets import Dataset
    from transformers import AutoTokenizer, PrinterCallback, set_seed

    records = load_dataset(config.data, config.method)
    rows, keys = _build_rows(config, records, model_dir)
    set_seed(config.seed)
    model = _load_model(config, model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    args = _trl_args(config, out)
    dataset = Dataset.from_list(rows)
    if config.method == "sft":
        from treadle.tuning.trainers import SharedPrefixSFTTrainer

        trainer = SharedPrefixSFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
        trainer.shared_prefix_min = config.min_shared_prefix if config.shared_prefix else 0
        trainer.group_keys = keys if config.group_by_prefix else None
    else:
        from treadle.tuning.trainers import GroupedDPOTrainer, GroupedKTOTrainer

        cls = GroupedDPOTrainer if config.method == "dpo" else GroupedKTOTrainer
        trainer = cls(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    trainer.remove_callback(PrinterCallback)
    return trainer


def tune(config: TuneConfig, extra_callbacks: list | None = None) -> dict[str, Any]:
    """Train per ``config``; write OUT/{adapter files, tune_config.json, run_record.json}; return the record."""
    import torch

    from treadle.models.registry import resolve_model
    from treadle.tuning.callbacks import ProgressBar, TimeBudget

    config.validate()
    if not config.progress:  # no bars at all: model loading and dataset mapping have their own
        import datasets
        import transformers

        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()
    t0, cpu0 = time.monotonic(), cpu_seconds()
    model_dir, _ = resolve_model(config.model)
    config = dataclasses.replace(config, model=str(model_dir), threads=config.threads or machine_threads(),
                                 **init_adapter_shape(config))
    torch.set_num_threads(config.threads)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    resume_from = last_checkpoint(out) if config.resume else None
    trainer = build_trainer(config, model_dir, out)
    budget = TimeBudget(config.max_minutes) if config.max_minutes else None
    bar = ProgressBar(config.progress, budget.budget_s if budget else None)
    for cb in [bar, budget, *(extra_callbacks or [])]:
        if cb is not None:
            trainer.add_callback(cb)
    config.write(out / "tune_config.json")
    train_t0, train_cpu0 = time.monotonic(), cpu_seconds()
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    train_wall, train_cpu = time.monotonic() - train_t0, cpu_seconds() - train_cpu0
    trainer.save_model(str(out))
    state = trainer.state
    tokens = state.num_input_tokens_seen - (bar.tokens0 or 0)
    record = {
        "kind": "treadle.tune.run", "method": config.method, "adapter_dir": str(out.resolve()),
        "adapter": "full" if config.full else "lora",
        "dataset": {"path": str(Path(config.data).resolve()), "sha256": file_sha256(Path(config.data)),
                    "examples": len(trainer.train_dataset)},
        "base_model": {"path": str(model_dir), "sha256": model_sha256(Path(model_dir))},
        "config": config.to_json(),
        "metrics": {**training_metrics(state.log_history), "steps": state.global_step, "max_steps": state.max_steps,
                    "epochs_done": state.epoch, "input_tokens_seen": state.num_input_tokens_seen,
                    "step_elapsed_s": bar.step_elapsed},
        "ended": "max_minutes" if budget and budget.hit else "completed",
        "resumed_from": str(resume_from) if resume_from else None,
        "init_adapter": _init_adapter_record(config),
        "wall_s": round(time.monotonic() - t0, 2), "train_wall_s": round(train_wall, 2),
        "train_cpu_s": round(train_cpu, 2), "cpu_s": round(cpu_seconds() - cpu0, 2),
        "tokens_per_s": round(tokens / train_wall, 2) if train_wall > 0 else None,
        "threads": config.threads, "versions": library_versions(),
    }
    if isinstance(config, SFTConfig):
        record["shared_prefix"] = dict(trainer.prefix_stats)
    write_record(out / "run_record.json", record)
    return record
