"""TRL trainers as ``treadle tune`` uses them: SFT with the shared-prefix loss and prefix-grouped batches.

``SharedPrefixSFTTrainer`` is TRL's ``SFTTrainer`` (padding-free batches) whose ``compute_loss`` takes the
shared-prefix path (``treadle.tuning.shared_prefix``) when a training batch qualifies and TRL's own loss
otherwise. ``PrefixGroupedSampler`` orders examples so that a batch holds examples with the same first
message (a system prompt) wherever a group has enough of them: a seeded shuffle, stable grouping, batches
cut inside each group, then the batch order shuffled. Same seed and epoch, same order (resume relies on it).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from trl import SFTTrainer

from treadle.tuning.shared_prefix import shared_prefix_len, shared_prefix_loss, split_packed


class PrefixGroupedSampler(torch.utils.data.Sampler[int]):
    def __init__(self, keys: list[str], batch_size: int, seed: int) -> None:
        self.keys, self.batch_size, self.seed, self.epoch = keys, batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.keys)

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        groups: dict[str, list[int]] = {}
        for i in torch.randperm(len(self.keys), generator=g).tolist():
            groups.setdefault(self.keys[i], []).append(i)
        order = [i for members in groups.values() for i in members]
        batches = [order[a: a + self.batch_size] for a in range(0, len(order), self.batch_size)]
        for b in torch.randperm(len(batches), generator=g).tolist():
            yield from batches[b]


class SharedPrefixSFTTrainer(SFTTrainer):
    """SFTTrainer; set ``shared_prefix_min`` (0 = off) and ``group_keys`` (None = TRL's sampler) after init."""

    shared_prefix_min: int = 0
    group_keys: list[str] | None = None

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.prefix_stats = {"batches": 0, "shared_batches": 0, "tokens": 0, "tokens_computed": 0}

    def _get_train_sampler(self, train_dataset=None):  # noqa: ANN001, ANN202 - transformers' signature
        if self.group_keys is None:
            return super()._get_train_sampler(train_dataset)
        return PrefixGroupedSampler(self.group_keys, self.args.per_device_train_batch_size, self.args.seed)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001, ANN201
        training = model.training and not return_outputs and "position_ids" in inputs
        if training:
            seqs = split_packed(inputs["input_ids"], inputs["position_ids"], inputs["labels"])
            total = sum(len(ids) for ids, _ in seqs)
            self.prefix_stats["batches"] += 1
            self.prefix_stats["tokens"] += total
            prefix = shared_prefix_len(seqs, self.shared_prefix_min) if self.shared_prefix_min > 0 else 0
            if prefix:
                loss, _ = shared_prefix_loss(model, seqs, prefix, num_items_in_batch)
                self.prefix_stats["shared_batches"] += 1
                self.prefix_stats["tokens_computed"] += total - prefix * (len(seqs) - 1)
                self._total_train_tokens += total
                self._metrics["train"]["num_tokens"] = [self._total_train_tokens]
                return loss
            self.prefix_stats["tokens_computed"] += total
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
