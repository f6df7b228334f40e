"""Helpers for the server tests: run a real `treadle serve` process on 127.0.0.1 (no tests here)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

TIMEOUT = 120.0  # seconds, for every client call: only stops a hung call (the machine may be busy)


def free_port() -> int:
    """A port free now (bind to 0, release). Racy when another process binds meanwhile: prefer port 0."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


BOUND = re.compile(rb"\[treadle\] listening on https?://[^\s:]+:(\d+)")


def bound_port(log_path: Path, proc: subprocess.Popen, timeout: float = 180.0) -> int:
    """The port a ``treadle serve``/``gateway --port 0`` process bound, read from its ``listening on`` line.

    Waits for the line (not for a fixed time); ``timeout`` only guards against a hang. Raises
    RuntimeError with the log when the process exits first.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = BOUND.search(log_path.read_bytes()) if log_path.exists() else None
        if m:
            return int(m.group(1))
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}:\n{log_path.read_text(errors='replace')}")
        time.sleep(0.05)
    raise RuntimeError(f"no 'listening on' line after {timeout} s:\n{log_path.read_text(errors='replace')}")


class ServerProcess:
    """``treadle serve`` on 127.0.0.1 port 0: the kernel picks a free port, read back from the log."""

    def __init__(self, model: Path, log_path: Path, *extra: str, api_key: str | None = None) -> None:
        self.api_key = api_key
        self.log_path = log_path
        cmd = [
            sys.executable, "-m", "treadle.cli", "serve", "--model", str(model), "--host", "127.0.0.1",
            "--port", "0", "--num-kv-blocks", "64", "--threads", "1", *extra,
        ]
        if api_key:
            cmd += ["--api-key", api_key]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        try:
            self.port = bound_port(log_path, self.proc)
        except RuntimeError:
            self.stop()
            raise
        self.base = f"http://127.0.0.1:{self.port}"
        self._wait_ready(180.0)

    def _wait_ready(self, timeout: float) -> None:
        """Poll /ready until 200; ``timeout`` only guards against a hang (a busy machine loads slowly)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.base}/ready", timeout=TIMEOUT).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server not ready after {timeout} s:\n{self.log()}")

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def client(self, **kw: object):  # noqa: ANN201 - openai.OpenAI
        import openai

        kw.setdefault("api_key", self.api_key or "none")
        kw.setdefault("timeout", TIMEOUT)
        return openai.OpenAI(base_url=f"{self.base}/v1", max_retries=0, **kw)

    def post(self, path: str, json: object = None, **kw: object) -> httpx.Response:
        headers = {**self.headers, **kw.pop("headers", {})}  # type: ignore[arg-type]
        return httpx.post(f"{self.base}{path}", json=json, headers=headers, timeout=TIMEOUT, **kw)

    def metric(self, name: str, default: float | None = None, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``; ``default`` (if given) when none."""
        text = httpx.get(f"{self.base}/metrics", timeout=TIMEOUT).text
        total, found = 0.0, False
        for line in text.splitlines():
            m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$", line)
            if not m or m.group(1) != name:
                continue
            lab = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
            if all(lab.get(k) == v for k, v in labels.items()):
                total, found = total + float(m.group(3)), True
        if not found:
            if default is not None:
                return default
            raise KeyError(f"metric {name} {labels} not exported")
        return total

    def wait_metric(self, name: str, value: float, timeout: float = 120.0, **labels: str) -> float:
        """Poll until the metric equals ``value``; return the last reading. ``timeout`` guards a hang only."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.metric(name, 0.0, **labels)
            if got == value or time.monotonic() > deadline:
                return got
            time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_log(self, text: str, timeout: float = 120.0) -> bool:
        """Poll the log until it holds ``text`` (a line may land just after the response)."""
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
