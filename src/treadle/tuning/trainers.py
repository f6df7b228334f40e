"""TRL trainers as ``treadle tune`` uses them: SFT with the shared-prefix loss and prefix-grouped batches;
DPO and KTO with length-grouped batches (their collators pad to the longest example of a batch).

``SharedPrefixSFTTrainer`` is TRL's ``SFTTrainer`` (padding-free batches) whose ``compute_loss`` takes the
shared-prefix path (``treadle.tuning.shared_prefix``) when a training batch qualifies and TRL's own loss
otherwise. ``PrefixGroupedSampler`` orders examples so that a batch holds examples with the same first
message (a system prompt) wherever a group has enough of them: a seeded shuffle, stable grouping, batches
cut inside each group, then the batch order shuffled. Same seed and epoch, same order (resume relies on it).
``LengthGroupedSampler``: a seeded shuffle cut into windows of 32 batches, each window sorted by length and
cut into batches, the batch order shuffled: batches of similar lengths, little padding, still random.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from trl import DPOTrainer, KTOTrainer, SFTTrainer

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


class LengthGroupedSampler(torch.utils.data.Sampler[int]):
    WINDOW_BATCHES = 32

    def __init__(self, lengths: list[int], batch_size: int, seed: int) -> None:
        self.lengths, self.batch_size, self.seed, self.epoch = lengths, batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(len(self.lengths), generator=g).tolist()
        window = self.batch_size * self.WINDOW_BATCHES
        batches = []
        for a in range(0, len(perm), window):
            chunk = sorted(perm[a: a + window], key=lambda i: -self.lengths[i])
            batches += [chunk[b: b + self.batch_size] for b in range(0, len(chunk), self.batch_size)]
        for b in torch.randperm(len(batches), generator=g).tolist():
            yield from batches[b]


def _length_sampler(trainer, train_dataset, reply_columns: tuple[str, ...]):  # noqa: ANN001, ANN202
    ds = train_dataset if train_dataset is not None else trainer.train_dataset
    if ds is None or "prompt_ids" not in ds.column_names or not all(c in ds.column_names for c in reply_columns):
        return None
    cols = [ds["prompt_ids"], *(ds[c] for c in reply_columns)]
    lengths = [len(p) + max(len(r[i]) for r in cols[1:]) for i, p in enumerate(cols[0])]
    return LengthGroupedSampler(lengths, trainer.args.per_device_train_batch_size, trainer.args.seed)


class GroupedDPOTrainer(DPOTrainer):
    """DPOTrainer with length-grouped batches (length = prompt + the longer of chosen/rejected)."""

    def _get_train_sampler(self, train_dataset=None):  # noqa: ANN001, ANN202
        return _length_sampler(self, train_dataset, ("chosen_ids", "rejected_ids")) or \
            super()._get_train_sampler(train_dataset)


class GroupedKTOTrainer(KTOTrainer):
    """KTOTrainer with length-grouped batches (length = prompt + completion)."""

    def _get_train_sampler(self, train_dataset=None):  # noqa: ANN001, ANN202
        return _length_sampler(self, train_dataset, ("completion_ids",)) or super()._get_train_sampler(train_dataset)


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
