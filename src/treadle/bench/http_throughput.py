"""The throughput workload over HTTP: a real ``treadle serve`` process, 64 streaming clients.

Each client sends one prompt (as token ids, so both paths compute exactly the same tokens) to
``/v1/completions`` with ``stream: true`` and ``include_usage``; tok/s = the sum of the servers'
reported completion tokens / wall time from the first request to the last byte.
Also reports seconds from process start to ``/ready``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, threads: int, port: int, extra: list[str] | None = None,
                 env: dict[str, str] | None = None) -> tuple[subprocess.Popen, float]:
    """Start ``treadle serve`` on 127.0.0.1 (``env`` added to this process's environment); return (process,
    seconds from spawn to /ready). RuntimeError (the process killed) when it is not ready within 300 s."""
    import os

    cmd = [sys.executable, "-m", "treadle.cli", "serve", "--model", model, "--port", str(port),
           "--threads", str(threads), "--log-level", "warning", *(extra or [])]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    try:
        wait_ready(f"http://127.0.0.1:{port}", 300.0, proc)
    except RuntimeError:
        proc.kill()
        raise
    return proc, time.perf_counter() - t0


def wait_ready(url: str, timeout_s: float = 600.0, proc: subprocess.Popen | None = None) -> None:
    """Until ``url``/ready answers 200. RuntimeError after ``timeout_s``, or as soon as ``proc`` (the server's
    process, when given) has exited."""
    deadline = time.perf_counter() + timeout_s
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server for {url} exited with {proc.returncode} before it was ready: "
                               f"{' '.join(map(str, proc.args))}")
        try:
            if httpx.get(f"{url}/ready", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.perf_counter() > deadline:
            raise RuntimeError(f"the server at {url} was not ready within {timeout_s:.0f} s")
        time.sleep(0.1)


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


async def _one(client: httpx.AsyncClient, url: str, model: str, prompt: list[int], max_tokens: int) -> int:
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0, "ignore_eos": True,
            "stream": True, "stream_options": {"include_usage": True}}
    tokens = 0
    async with client.stream("POST", url, json=body) as resp:
        resp.raise_for_status()
        async for line in resp.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    return tokens


async def _run(base: str, model: str, prompts: list[list[int]], max_tokens: int) -> tuple[int, float]:
    limits = httpx.Limits(max_connections=len(prompts) + 4)
    async with httpx.AsyncClient(timeout=httpx.Timeout(900.0), limits=limits) as client:
        t0 = time.perf_counter()
        counts = await asyncio.gather(*(_one(client, f"{base}/v1/completions", model, p, max_tokens) for p in prompts))
        return sum(counts), time.perf_counter() - t0


def http_throughput(
    model: str, threads: int, prompts: list[list[int]], max_tokens: int, extra: list[str] | None = None
) -> dict[str, float]:
    port = free_port()
    proc, ready_s = start_server(model, threads, port, ["--kv-cache-gb", "4", "--max-queue", "-1", *(extra or [])])
    try:
        served = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=10).json()["data"][0]["id"]
        base = f"http://127.0.0.1:{port}"
        asyncio.run(_run(base, served, prompts[:8], 8))  # untimed warm-up, as the offline side has
        tokens, elapsed = asyncio.run(_run(base, served, prompts, max_tokens))
    finally:
        stop_server(proc)
    return {"http_throughput_tok_s": tokens / elapsed, "http_output_tokens": tokens, "server_ready_s": ready_s}
