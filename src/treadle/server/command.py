"""``treadle serve``: the OpenAI-compatible server (uvicorn) with a graceful SIGTERM drain.

On SIGTERM (or Ctrl-C) the server stops admitting work: ``/ready`` and new ``/v1`` requests get
503 while in-flight requests finish (up to ``--drain-timeout`` seconds), then it exits 0. A second
signal exits at once.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from pathlib import Path
from types import FrameType

import uvicorn

from treadle.commands.engine_args import add_engine_args, engine_config_from_args
from treadle.server.middleware import ServerState

log = logging.getLogger("treadle.server")


def register(p: argparse.ArgumentParser) -> None:
    add_engine_args(p)
    p.add_argument("--served-model-name", default=None, help="the model name clients send (default: the folder name)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' on /v1 routes")
    p.add_argument("--admin-api-key", default=None, help="key for the admin endpoints (load/unload LoRA "
                   "adapters); also accepted as an API key. Without it those endpoints are disabled")
    p.add_argument("--lora", action="append", default=[], metavar="NAME=PATH",
                   help="serve the PEFT LoRA adapter in folder PATH as model NAME (repeatable)")
    p.add_argument("--max-queue", type=int, default=256,
                   help="most sequences allowed to wait for a slot; beyond it requests get 429 (-1: unlimited)")
    p.add_argument("--default-max-tokens", type=int, default=256, help="max_tokens when a request sends none")
    p.add_argument("--num-kv-blocks", type=int, default=None, help="KV-cache blocks (overrides --kv-cache-gb)")
    p.add_argument("--drain-timeout", type=float, default=120.0, help="seconds SIGTERM waits for in-flight requests")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def served_name(model: str, override: str | None) -> str:
    if override:
        return override
    from treadle.models.registry import DEFAULT_MODEL_NAME

    if model in ("default", DEFAULT_MODEL_NAME):
        return DEFAULT_MODEL_NAME
    return Path(model).expanduser().resolve().name


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from treadle.server.app import create_app
    from treadle.server.serving import ServerSettings

    t0 = time.perf_counter()
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = engine_config_from_args(args)
    if args.num_kv_blocks is not None:
        config = dataclasses.replace(config, num_kv_blocks=args.num_kv_blocks)
    if args.default_max_tokens < 1:
        raise ValueError(f"--default-max-tokens must be >= 1, got {args.default_max_tokens}")
    settings = ServerSettings(
        served_model_name=served_name(args.model, args.served_model_name),
        api_key=args.api_key or None,
        default_max_tokens=args.default_max_tokens,
        max_queue=None if args.max_queue < 0 else args.max_queue,
        max_num_seqs=config.max_num_seqs,
        admin_api_key=args.admin_api_key or None,
    )

    def factory():  # noqa: ANN202 - AsyncEngine, imported here to keep `--help` fast
        from treadle.engine.async_engine import AsyncEngine

        return AsyncEngine(config)

    def on_ready(engine) -> None:  # noqa: ANN001
        e = engine.engine
        source = "bundled default, converted cache" if args.model in ("default", e.model_name) else "local folder"
        print(f"[treadle] serving {settings.served_model_name} from {e.model_path} ({source}); "
              f"loaded in {e.load_seconds:.2f} s, ready {time.perf_counter() - t0:.2f} s after start; "
              f"max_model_len={e.max_model_len} on http://{args.host}:{args.port}", file=sys.stderr, flush=True)

    app = create_app(settings, factory, on_ready)
    uv_config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level,
                               access_log=False, timeout_graceful_shutdown=5, lifespan="on")
    server = DrainingServer(uv_config, app.state.server, args.drain_timeout)
    server.run()
    return 0


class DrainingServer(uvicorn.Server):
    """uvicorn.Server whose first SIGTERM/SIGINT drains instead of stopping at once."""

    def __init__(self, config: uvicorn.Config, state: ServerState, drain_timeout: float) -> None:
        super().__init__(config)
        self.state, self.drain_timeout = state, drain_timeout
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Not calling super(): it records the signal and re-raises it after shutdown (exit != 0).
        if self.state.draining or self._loop is None:  # a second signal: stop now
            self.force_exit = self.state.draining
            self.should_exit = True
            return
        self.state.draining = True
        log.info("received %s: draining %d in-flight request(s)", signal.Signals(sig).name, self.state.inflight)
        # A signal handler may run in the middle of the loop's own code: only schedule from here.
        self._loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        self._drain_task = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        deadline = time.monotonic() + self.drain_timeout
        while self.state.inflight > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.state.inflight:
            log.warning("drain timeout: %d request(s) still in flight", self.state.inflight)
        log.info("drained; shutting down")
        self.should_exit = True
