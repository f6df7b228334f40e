"""``treadle gateway``: one OpenAI endpoint in front of replicas given by URL or launched here.

``--replica URL`` (repeatable) fronts servers that already run (Treadle or vLLM). ``--launch N``
starts N ``treadle serve`` replicas with ``--launcher local|ray`` and, with ``--autoscale``, keeps
their number between ``--min-replicas`` and ``--max-replicas`` by the autoscaler. Replicas on one
machine split its cores (``--replica-threads`` overrides). SIGTERM drains the gateway, then stops
the replicas it launched (each drains too).
"""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--replica", action="append", default=[], metavar="URL",
                   help="a running OpenAI-compatible replica (repeat for several); a port range names several: "
                        "http://127.0.0.1:8001-8004")
    p.add_argument("--launch", type=int, default=0, metavar="N", help="start N treadle serve replicas")
    p.add_argument("--launcher", default="local", choices=["local", "ray"])
    p.add_argument("--ray-address", default=None, help="Ray cluster to join (default: start/attach a local one)")
    p.add_argument("--model", default="default", help="model of the launched replicas, and the tokenizer for "
                   "prefix hashing: 'default' or a local HF folder")
    p.add_argument("--served-model-name", default=None, help="the model name the replicas serve")
    p.add_argument("--replica-args", default="", help="extra `treadle serve` flags for launched replicas, "
                   "e.g. '--num-kv-blocks 300 --max-num-seqs 8'")
    p.add_argument("--replica-threads", type=int, default=None, help="threads per launched replica "
                   "(default: the cores split over --max-replicas)")
    p.add_argument("--policy", default="prefix_affinity", help="round_robin, least_loaded or prefix_affinity")
    p.add_argument("--max-load-gap", type=int, default=4, help="prefix_affinity: load bound over the least loaded")
    p.add_argument("--index-blocks", type=int, default=4096, help="prefix_affinity: index size per replica (blocks)")
    p.add_argument("--balance", choices=("gap", "cost"), default="gap",
                   help="prefix_affinity: longest match within --max-load-gap (gap), or the least estimated "
                   "prefill work ahead, queue included (cost)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' on /v1 routes")
    p.add_argument("--replica-api-key", default=None, help="key the gateway sends to the replicas")
    p.add_argument("--admin-api-key", default=None, help="key for the admin API (route aliases, adapter "
                   "load/unload sent to every replica with this same key); without it the admin API is off")
    p.add_argument("--request-timeout", type=float, default=600.0, help="seconds per request, end to end")
    p.add_argument("--max-attempts", type=int, default=3, help="replicas one request may try")
    p.add_argument("--health-interval", type=float, default=1.0, help="seconds between health probes")
    add_autoscale_flags(p)
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    from treadle.feedback.config import add_feedback_args

    add_feedback_args(p)  # launched replicas run with --no-log-interactions: the gateway logs for them


def add_autoscale_flags(p: argparse.ArgumentParser) -> None:
    """The autoscaling flags (``treadle sim`` takes the same)."""
    p.add_argument("--autoscale", action="store_true", help="scale launched replicas with demand")
    p.add_argument("--min-replicas", type=int, default=1)
    p.add_argument("--max-replicas", type=int, default=None, help="default: --launch")
    p.add_argument("--target-load", type=float, default=4.0, help="requests in flight one replica should carry")
    p.add_argument("--upscale-delay", type=float, default=5.0)
    p.add_argument("--downscale-delay", type=float, default=300.0, help="seconds of low load before a scale-down")
    p.add_argument("--downscale-breach-share", type=float, default=0.1, help="with --ttft-slo: the share of "
                   "those seconds whose TTFT may exceed it and still allow a scale-down")
    p.add_argument("--ttft-slo", type=float, default=None, help="seconds; p90 TTFT above it asks for a replica more")


def autoscaler_config(args: argparse.Namespace, max_replicas: int):  # noqa: ANN201 - AutoscalerConfig
    """The autoscaler's settings from the flags of :func:`add_autoscale_flags`."""
    from treadle.fleet.autoscaler import AutoscalerConfig

    return AutoscalerConfig(min_replicas=args.min_replicas, max_replicas=max_replicas,
                            target_load_per_replica=args.target_load, upscale_delay_s=args.upscale_delay,
                            downscale_delay_s=args.downscale_delay, ttft_slo_s=args.ttft_slo,
                            downscale_breach_share=args.downscale_breach_share)


def build(args: argparse.Namespace):  # noqa: ANN201 - (Gateway, FleetController | None)
    """The gateway (and its fleet controller when it launches replicas) from the flags."""
    import shlex

    from treadle.gateway.app import Gateway, GatewaySettings
    from treadle.gateway.policies import make_policy
    from treadle.gateway.prefix import load_hasher
    from treadle.server.command import served_name

    if not args.replica and args.launch < 1:
        raise ValueError("give --replica URL (repeatable) or --launch N")
    if args.replica and args.launch:
        raise ValueError("--replica and --launch are exclusive: front running replicas or launch them")
    params = {"max_load_gap": args.max_load_gap, "index_blocks": args.index_blocks, "balance": args.balance} \
        if args.policy == "prefix_affinity" else {}
    policy = make_policy(args.policy, **params)
    name = served_name(args.model, args.served_model_name)
    hasher = load_hasher(args.model, name) if policy.needs_prefix else None
    from treadle.feedback.config import feedback_config_from_args

    settings = GatewaySettings(api_key=args.api_key, replica_api_key=args.replica_api_key,
                               admin_api_key=args.admin_api_key,
                               request_timeout_s=args.request_timeout, max_attempts=args.max_attempts,
                               health_interval_s=args.health_interval, feedback=feedback_config_from_args(args))
    gw = Gateway(policy, settings, hasher)
    from treadle.gateway.urls import expand_replica_url

    for url in [u for given in args.replica for u in expand_replica_url(given)]:
        gw.replicas.add(url)
    controller = None
    if args.launch:
        from treadle.fleet.controller import FleetController
        from treadle.fleet.launchers import ReplicaSpec, make_launcher
        from treadle.fleet.threads import threads_per_replica

        max_r = args.max_replicas or args.launch
        threads = args.replica_threads or threads_per_replica(max_r)
        extra = tuple(shlex.split(args.replica_args))
        if "--no-log-interactions" not in extra:
            extra += ("--no-log-interactions",)
        if args.served_model_name:
            extra += ("--served-model-name", args.served_model_name)
        if args.replica_api_key:
            extra += ("--api-key", args.replica_api_key)
        if args.admin_api_key:
            extra += ("--admin-api-key", args.admin_api_key)
        spec = ReplicaSpec(args.model, threads, extra)
        opts = {"address": args.ray_address} if args.launcher == "ray" else {}
        launcher = make_launcher(args.launcher, spec, **opts)
        cfg = None
        if args.autoscale:
            cfg = autoscaler_config(args, max_r)
        controller = FleetController(gw, launcher, args.launch, cfg, interval_s=args.health_interval)
        settings.background.append(controller.run)
    return gw, controller


def quiet_probe_logs(level: str) -> None:
    """httpx logs every request at INFO, which for the gateway is a line per health probe and metric
    scrape of every replica each second: keep those at DEBUG (``--log-level debug`` shows them)."""
    if level.lower() != "debug":
        logging.getLogger("httpx").setLevel(logging.WARNING)


def run(args: argparse.Namespace) -> int:
    from treadle.gateway.app import create_gateway_app
    from treadle.server.command import DrainingServer

    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_probe_logs(args.log_level)
    gw, _ = build(args)
    app = create_gateway_app(gw)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False,
                            timeout_graceful_shutdown=5, lifespan="on")
    DrainingServer(config, _DrainState(gw), args.request_timeout).run()
    return 0


class _DrainState:
    """Adapts the gateway to :class:`DrainingServer` (``draining`` flag and in-flight count)."""

    def __init__(self, gw) -> None:  # noqa: ANN001
        self.gw = gw

    @property
    def draining(self) -> bool:
        return self.gw.draining

    @draining.setter
    def draining(self, value: bool) -> None:
        self.gw.draining = value

    @property
    def inflight(self) -> int:
        return sum(r.inflight for r in self.gw.replicas.replicas.values())
