"""``treadle serve``: the OpenAI-compatible server (uvicorn) with a graceful SIGTERM drain.

On SIGTERM (or Ctrl-C) the server stops admitting work: ``/ready`` and new ``/v1`` requests get
503 while in-flight requests finish (up to ``--drain-timeout`` seconds), then it exits 0. A second
signal exits at once.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

import uvicorn

from treadle.commands.engine_args import add_engine_args, engine_config_from_args
from treadle.config_args import add_dataclass_args, dataclass_from_args
from treadle.server.middleware import ServerState
from treadle.server.settings import ListenSettings, ServerSettings

STEP_LOG_ENV = "TREADLE_STEP_LOG"  # a file: the replica appends every engine step's shape and seconds to it
ENQUEUE_LOG_ENV = "TREADLE_ENQUEUE_LOG"  # a file: the replica appends each request's hand-over to its engine

log = logging.getLogger("treadle.server")


def register(p: argparse.ArgumentParser) -> None:
    """Flags of ``treadle serve``: one per field of EngineConfig, ServerSettings and ListenSettings."""
    add_engine_args(p)
    add_dataclass_args(p.add_argument_group("server"), ServerSettings)
    add_dataclass_args(p.add_argument_group("listen"), ListenSettings)
    from treadle.feedback.config import add_feedback_args

    add_feedback_args(p)


def served_name(model: str, override: str | None) -> str:
    if override:
        return override
    from treadle.models.registry import DEFAULT_MODEL_NAME

    if model in ("default", DEFAULT_MODEL_NAME):
        return DEFAULT_MODEL_NAME
    return Path(model).expanduser().resolve().name


def run(args: argparse.Namespace) -> int:
    from treadle.feedback.config import feedback_config_from_args
    from treadle.server.app import create_app

    t0 = time.perf_counter()
    listen = dataclass_from_args(ListenSettings, args)
    logging.basicConfig(level=listen.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = engine_config_from_args(args)
    settings = dataclass_from_args(ServerSettings, args, api_key=args.api_key or None,
                                   admin_api_key=args.admin_api_key or None,
                                   served_model_name=served_name(args.model, args.served_model_name),
                                   max_num_seqs=config.max_num_seqs)

    def factory():  # noqa: ANN202 - AsyncEngine, imported here to keep `--help` fast
        from treadle.engine.async_engine import AsyncEngine

        return AsyncEngine(config)

    def on_ready(engine) -> None:  # noqa: ANN001
        e = engine.engine
        if os.environ.get(STEP_LOG_ENV):  # treadle sim calibrate --serving: every step's shape and time
            from treadle.sim.served_steps import StepLog

            e.step_observer = StepLog(os.environ[STEP_LOG_ENV], e.config.block_size)
        if os.environ.get(ENQUEUE_LOG_ENV):  # diagnostics (scripts/sim_diag): when each request reaches the engine
            from treadle.sim.served_steps import EnqueueLog

            engine.enqueue_observer = EnqueueLog(os.environ[ENQUEUE_LOG_ENV])
        source = "bundled default, converted cache" if args.model in ("default", e.model_name) else "local folder"
        print(f"[treadle] serving {settings.served_model_name} from {e.model_path} ({source}); "
              f"loaded in {e.load_seconds:.2f} s, ready {time.perf_counter() - t0:.2f} s after start; "
              f"max_model_len={e.max_model_len} on http://{listen.host}:{server.port or listen.port}", file=sys.stderr,
              flush=True)

    app = create_app(settings, factory, on_ready, feedback=feedback_config_from_args(args))
    uv_config = uvicorn.Config(app, host=listen.host, port=listen.port, log_level=listen.log_level,
                               access_log=False, timeout_graceful_shutdown=5, lifespan="on")
    server = DrainingServer(uv_config, app.state.server, listen.drain_timeout)
    server.run()
    return 0


async def end_running(state: ServerState, grace_s: float = 5.0) -> None:
    """End every running request with a 503 error (JSON, or an error event + [DONE] in a stream) and
    wait (up to ``grace_s``) until their answers are written, so none is cut by the shutdown."""
    from treadle.server.errors import ApiError

    if state.engine is not None:
        state.engine.fail_all(ApiError(503, "The server shut down (drain timeout) before this request finished; "
                                       "retry it.", None, "drain_timeout"))
    deadline = time.monotonic() + grace_s
    while state.inflight > 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


class DrainingServer(uvicorn.Server):
    """uvicorn.Server whose first SIGTERM/SIGINT drains instead of stopping at once."""

    def __init__(self, config: uvicorn.Config, state: ServerState, drain_timeout: float) -> None:
        super().__init__(config)
        self.state, self.drain_timeout = state, drain_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self.port: int | None = None  # the bound port, once listening (differs from config.port for 0)

    async def serve(self, sockets: list | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    async def startup(self, sockets: list | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.servers and self.servers[0].sockets:
            # at every log level, with the real port (also for --port 0): scripts and tests read it
            self.port = self.servers[0].sockets[0].getsockname()[1]
            print(f"[treadle] listening on http://{self.config.host}:{self.port}", file=sys.stderr, flush=True)

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
            log.warning("drain timeout: %d request(s) still in flight; ending them with 503", self.state.inflight)
            await end_running(self.state)
        log.info("drained; shutting down")
        self.should_exit = True
