"""Split a machine's cores between replicas that share it, so they do not oversubscribe them."""

from __future__ import annotations

from treadle.cpus import usable_cpus


def split_threads(replicas: int, cores: int | None = None) -> list[int]:
    """Threads for each of ``replicas`` replicas on ``cores`` cores (default: the CPUs this process
    may use, affinity and cgroup quota).

    The counts sum to ``cores`` when ``replicas <= cores`` (the first ``cores % replicas`` get one
    more); with more replicas than cores each gets 1 thread and the cores are shared by time.
    """
    if replicas < 1:
        raise ValueError(f"replicas must be >= 1, got {replicas}")
    cores = cores or usable_cpus()
    if replicas >= cores:
        return [1] * replicas
    base, extra = divmod(cores, replicas)
    return [base + (1 if i < extra else 0) for i in range(replicas)]


def threads_per_replica(max_replicas: int, cores: int | None = None) -> int:
    """One thread count for every replica a fleet of at most ``max_replicas`` may start (the smallest share)."""
    return min(split_threads(max_replicas, cores))
