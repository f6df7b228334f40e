"""Trainer callbacks: the progress bar (loss, tokens/s, time left) and the ``--max-minutes`` budget."""

from __future__ import annotations

import sys
import time

from transformers import TrainerCallback


class ProgressBar(TrainerCallback):
    """A tqdm bar over optimizer steps; postfix: last loss and input tokens/s since this process started.

    Time left is tqdm's estimate from the step rate, capped by the time budget when one is set.
    """

    def __init__(self, enabled: bool = True, budget_s: float | None = None) -> None:
        self.enabled, self.budget_s = enabled, budget_s
        self.bar = None
        self.t0 = 0.0
        self.tokens0 = 0
        self.loss: float | None = None
        self.step_elapsed: list[tuple[int, float]] = []  # (global step, seconds since train begin)

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
        self.t0, self.tokens0 = time.monotonic(), state.num_input_tokens_seen
        if self.enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="tune", unit="step",
                            file=sys.stderr, dynamic_ncols=True)

    def tokens_per_s(self, state) -> float:  # noqa: ANN001
        elapsed = time.monotonic() - self.t0
        return (state.num_input_tokens_seen - self.tokens0) / elapsed if elapsed > 0 else 0.0

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
        self.step_elapsed.append((state.global_step, round(time.monotonic() - self.t0, 3)))
        if self.bar is None:
            return
        post = {"tok/s": f"{self.tokens_per_s(state):.0f}"}
        if self.loss is not None:
            post["loss"] = f"{self.loss:.4f}"
        if self.budget_s is not None:
            post["budget_left"] = f"{max(0.0, self.budget_s - (time.monotonic() - self.t0)) / 60:.1f}min"
        self.bar.set_postfix(post, refresh=False)
        self.bar.update(1)

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001, ANN201
        if logs and "loss" in logs:
            self.loss = float(logs["loss"])

    def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class TimeBudget(TrainerCallback):
    """Ends training after ``minutes`` of wall time (checked after each step) and asks for a checkpoint."""

    def __init__(self, minutes: float) -> None:
        self.budget_s = minutes * 60.0
        self.t0 = 0.0
        self.hit = False

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
        self.t0 = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
        if time.monotonic() - self.t0 >= self.budget_s and state.global_step < state.max_steps:
            self.hit = True
            control.should_training_stop = True
            control.should_save = True
        return control
