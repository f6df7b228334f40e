"""The ray launcher on a 2-node Ray cluster started on this machine: replicas on different nodes
serve requests through the gateway; a node that dies has its replica replaced on a node left."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from gateway_support import ThreadServer

ray = pytest.importorskip("ray", reason="the ray launcher needs the `fleet` extra (pip install ray)")

from ray.cluster_utils import Cluster  # noqa: E402

from treadle.fleet.controller import FleetController  # noqa: E402
from treadle.fleet.launchers import ReplicaSpec  # noqa: E402
from treadle.gateway.app import Gateway, GatewaySettings, create_gateway_app  # noqa: E402
from treadle.gateway.policies import make_policy  # noqa: E402

pytestmark = pytest.mark.ray
MB = 1024 * 1024


def wait_for(cond, timeout: float) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


def test_replicas_on_two_ray_nodes_and_rescheduling_after_a_node_dies(tiny_llama: Path) -> None:
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "object_store_memory": 80 * MB, "resources": {"treadle_replica": 2}})
    worker = cluster.add_node(num_cpus=1, object_store_memory=80 * MB, resources={"treadle_replica": 1})
    srv = None
    try:
        from treadle.fleet.launchers.ray_launcher import RayLauncher

        ray.init(address=cluster.address, log_to_driver=False)
        head_id = cluster.head_node.node_id
        spec = ReplicaSpec(str(tiny_llama), 1, ("--num-kv-blocks", "64", "--served-model-name", "tiny"))
        launcher = RayLauncher(spec, num_cpus=1, resources={"treadle_replica": 1})
        gw = Gateway(make_policy("round_robin"), GatewaySettings(health_interval_s=0.25))
        ctl = FleetController(gw, launcher, 2, None, interval_s=0.5)
        gw.settings.background.append(ctl.run)
        srv = ThreadServer(create_gateway_app(gw))
        assert wait_for(lambda: len(gw.replicas.routable()) == 2, 300), gw.replicas.counts()
        nodes = {rid: rep.node for rid, rep in ctl.launched.items()}
        assert set(nodes.values()) == {head_id, worker.node_id}  # SPREAD: one replica per node
        served = set()
        for _ in range(6):
            r = httpx.post(f"{srv.base}/v1/completions", json={"model": "tiny", "prompt": "Hello", "max_tokens": 4},
                           timeout=30)
            assert r.status_code == 200, r.text
            served.add(r.headers["x-treadle-replica"])
        assert {nodes[rid] for rid in served} == {head_id, worker.node_id}  # served by both nodes

        cluster.remove_node(worker)  # the node dies with its replica
        lost = next(rid for rid, node in nodes.items() if node == worker.node_id)
        assert wait_for(lambda: lost not in ctl.launched and len(gw.replicas.routable()) == 2, 300), \
            (ctl.launched, gw.replicas.counts())
        assert all(rep.node == head_id for rep in ctl.launched.values())  # rescheduled on the node left
        for _ in range(4):
            r = httpx.post(f"{srv.base}/v1/completions", json={"model": "tiny", "prompt": "Hi", "max_tokens": 4},
                           timeout=30)
            assert r.status_code == 200, r.text
    finally:
        if srv is not None:
            srv.stop()  # the controller drains and stops its replicas
        ray.shutdown()
        cluster.shutdown()
