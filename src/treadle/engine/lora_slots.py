"""Which adapters are resident (activated for the model) at once: ``max_loras`` slots, LRU.

Algorithm: an adapter a running request uses is *pinned* (its slot cannot change). To admit a
request for adapter X: if X holds a slot, touch it (most recently used); else take an empty slot,
else evict the least recently used unpinned adapter; if every slot is pinned, the request waits
(a return value, not an error). Registered adapters beyond the slots stay in CPU memory; the
runner activates an adapter when it first appears in a slot. No torch here.
"""

from __future__ import annotations

from collections.abc import Set


class LoraSlots:
    def __init__(self, max_loras: int) -> None:
        if max_loras < 1:
            raise ValueError(f"max_loras must be >= 1, got {max_loras}")
        self.slots: list[str | None] = [None] * max_loras
        self._lru: list[str] = []  # resident adapters, least recently used first

    def slot_of(self, adapter_id: str) -> int | None:
        try:
            return self.slots.index(adapter_id)
        except ValueError:
            return None

    def acquire(self, adapter_id: str, pinned: Set[str]) -> int | None:
        """A slot holding ``adapter_id`` (placing it if needed), or None when all slots are pinned."""
        slot = self.slot_of(adapter_id)
        if slot is None:
            if None in self.slots:
                slot = self.slots.index(None)
            else:
                victim = next((a for a in self._lru if a not in pinned), None)
                if victim is None:
                    return None
                slot = self.slots.index(victim)
                self._lru.remove(victim)
            self.slots[slot] = adapter_id
        else:
            self._lru.remove(adapter_id)
        self._lru.append(adapter_id)
        return slot

    def evict(self, adapter_id: str) -> None:
        """Drop ``adapter_id`` from its slot (it was unloaded). No-op when not resident."""
        slot = self.slot_of(adapter_id)
        if slot is not None:
            self.slots[slot] = None
            self._lru.remove(adapter_id)

    def check_integrity(self) -> None:
        resident = [a for a in self.slots if a is not None]
        if len(set(resident)) != len(resident):
            raise RuntimeError(f"an adapter holds two slots: {self.slots}")
        if sorted(resident) != sorted(self._lru):
            raise RuntimeError(f"LRU order {self._lru} disagrees with the slots {self.slots}")
