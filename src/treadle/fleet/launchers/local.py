"""``local``: each replica is a ``treadle serve`` process on this machine, on 127.0.0.1."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
from pathlib import Path

from treadle.fleet.launchers.base import Launched, Launcher, ReplicaSpec, die_with_parent


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalLauncher(Launcher):
    name = "local"

    def __init__(self, spec: ReplicaSpec, log_dir: str | Path | None = None, stop_timeout_s: float = 60.0) -> None:
        self.spec, self.stop_timeout_s = spec, stop_timeout_s
        self.log_dir = Path(log_dir) if log_dir else None
        self.procs: dict[str, subprocess.Popen] = {}
        self._ids = itertools.count()

    async def start(self) -> Launched:
        port = free_port()
        rid = f"r{next(self._ids)}-{port}"
        out = subprocess.DEVNULL
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = open(self.log_dir / f"{rid}.log", "wb")  # noqa: SIM115 - the child holds it
        env = {**os.environ, **self.spec.env, "PYTHONUNBUFFERED": "1"}
        self.procs[rid] = subprocess.Popen(self.spec.command("127.0.0.1", port), stdout=out,
                                           stderr=subprocess.STDOUT, env=env, preexec_fn=die_with_parent)
        if out is not subprocess.DEVNULL:
            out.close()
        return Launched(rid, f"http://127.0.0.1:{port}", "local")

    async def stop(self, replica_id: str) -> None:
        proc = self.procs.pop(replica_id, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait)

    async def alive(self, replica_id: str) -> bool:
        proc = self.procs.get(replica_id)
        return proc is not None and proc.poll() is None

    def running(self) -> list[str]:
        return list(self.procs)

    def kill(self, replica_id: str) -> None:
        """SIGKILL, no drain (tests use it to simulate a crash)."""
        proc = self.procs.get(replica_id)
        if proc is not None:
            proc.kill()
