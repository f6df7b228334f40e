"""``treadle tune``: fine-tune LoRA adapters (or whole small models) with TRL + PEFT.

Python API: ``tune(config_for("sft", data=..., out=...))`` returns the run record; the adapter folder,
``tune_config.json`` and ``run_record.json`` land in ``out``. See docs/TUNING.md.
"""

from treadle.tuning.config import METHODS, DPOConfig, KTOConfig, SFTConfig, TuneConfig, config_for

__all__ = ["METHODS", "DPOConfig", "KTOConfig", "SFTConfig", "TuneConfig", "config_for", "tune"]


def tune(config: TuneConfig, extra_callbacks: list | None = None) -> dict:
    """Run one training (see ``treadle.tuning.run.tune``); imports torch/TRL only when called."""
    from treadle.tuning.run import tune as _tune

    return _tune(config, extra_callbacks)
