"""What a launcher does: start a replica (returns its URL at once; readiness is the gateway's probe),
stop one gracefully (SIGTERM: the server drains), and say whether it is still alive."""

from __future__ import annotations

import ctypes
import signal
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ReplicaSpec:
    """The ``treadle serve`` command of every replica (the port and host are the launcher's)."""

    model: str = "default"
    threads: int = 1
    extra_args: tuple[str, ...] = ()  # e.g. ("--num-kv-blocks", "300", "--max-num-seqs", "8")
    env: dict[str, str] = field(default_factory=dict)

    def command(self, host: str, port: int) -> list[str]:
        return [sys.executable, "-m", "treadle.cli", "serve", "--model", self.model, "--host", host,
                "--port", str(port), "--threads", str(self.threads), "--log-level", "warning", *self.extra_args]


@dataclass(frozen=True)
class Launched:
    replica_id: str
    url: str
    node: str = "local"  # where it runs (a Ray node id for the ray launcher)


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when the process that started it dies (Linux), so a
    replica never outlives its launcher (or its Ray actor, when the actor's node dies)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Launcher(ABC):
    name = ""

    @abstractmethod
    async def start(self) -> Launched:
        """Start one replica; return as soon as it is spawned."""

    @abstractmethod
    async def stop(self, replica_id: str) -> None:
        """Stop it gracefully (it drains) and wait for it to exit; idempotent."""

    @abstractmethod
    async def alive(self, replica_id: str) -> bool:
        """False once the replica's process (or actor, or node) has died."""

    async def close(self) -> None:
        """Stop every replica still running."""
        for rid in list(self.running()):
            await self.stop(rid)

    @abstractmethod
    def running(self) -> list[str]:
        """Ids of the replicas started and not stopped."""
