"""``treadle bench peers``: its plan, the peers' pinned start settings, the result layout, start/stop."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from treadle.bench import peers

ROOT = Path(__file__).resolve().parents[1]


def test_plan_has_the_decode_levels_then_sharegpt_at_16() -> None:
    levels = peers.plan_levels([1, 16, 64], 2, 128, 64, 64)
    assert [(lv.name, lv.concurrency, lv.num_requests, lv.ignore_eos) for lv in levels] == [
        ("decode-1", 1, 2, True), ("decode-16", 16, 32, True), ("decode-64", 64, 128, True),
        ("sharegpt-chat-16", 16, 64, False)]
    assert peers.plan_levels([4], 1, 8, 64, 0)[-1].name == "decode-4"
    with pytest.raises(ValueError, match="concurrency"):
        peers.plan_levels([0], 1, 8, 64, 0)


def test_level_requests_follow_the_level() -> None:
    lv = peers.plan_levels([4], 2, 16, 64, 0)[0]
    reqs = peers.level_requests(lv, seed=0)
    assert len(reqs) == 8 and all(r.ignore_eos and r.max_tokens == 16 for r in reqs)


def test_peer_settings_are_pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    import treadle.models.registry as reg

    monkeypatch.setattr(reg, "bundled_gguf_path", lambda: Path("/m.gguf"))
    monkeypatch.setattr(reg, "default_model_path", lambda convert=True: Path("/m"))
    vllm = peers.peer_spec("vllm", ROOT, 8100, 16, "treadle")
    env = dict(vllm.env)
    assert env["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0" and env["VLLM_CPU_KVCACHE_SPACE"] == "4"
    assert env["MAX_NUM_SEQS"] == "64" and not vllm.per_level_restart
    llama = peers.peer_spec("llama-server", ROOT, 8100, 16, "treadle")
    assert dict(llama.env)["NP"] == "16" and llama.per_level_restart and dict(llama.env)["GGUF"] == "/m.gguf"
    assert "--quantization" in peers.peer_spec("treadle-int8", ROOT, 8100, 1, "treadle").argv
    with pytest.raises(ValueError, match="servers"):
        peers.peer_spec("sglang", ROOT, 8100, 1, "treadle")
    # The script itself gives vLLM both cores when run by hand, too.
    assert "VLLM_CPU_NUM_OF_RESERVED_CPU=${VLLM_CPU_NUM_OF_RESERVED_CPU:-0}" in (
        ROOT / "scripts/peers/vllm_cpu.sh").read_text()


def _cell(tok: float, ttft: float, tpot: float) -> dict:
    s = {"output_tok_s": tok, "requests_per_s": tok / 100, "completed": 4, "failed": 0,
         "ttft_ms": {"p50": ttft}, "tpot_ms": {"p50": tpot}}
    return peers.figures(s, "fp32")


def test_levels_list_and_ratios_to_the_best_peer() -> None:
    levels = peers.plan_levels([16], 1, 8, 64, 0)
    cells = {("decode-16", "treadle"): _cell(300, 100, 50), ("decode-16", "vllm"): _cell(250, 200, 40),
             ("decode-16", "llama-server"): _cell(200, 80, 60)}
    out = peers.assemble(levels, cells)
    assert out[0]["concurrency"] == 16 and set(out[0]["servers"]) == {"treadle", "vllm", "llama-server"}
    assert out[0]["servers"]["vllm"]["ttft_p50_ms"] == 200
    vs = out[0]["treadle_vs_best_peer"]
    assert vs["output_tok_s"] == pytest.approx(300 / 250)  # best peer throughput: vLLM
    assert vs["ttft_p50_ms"] == pytest.approx(100 / 80)  # best peer TTFT: llama-server (lower)
    assert vs["tpot_p50_ms"] == pytest.approx(50 / 40)
    assert peers.versus_best_peer({"treadle": _cell(1, 1, 1)})["output_tok_s"] is None


def test_start_waits_for_ready_and_stop_ends_the_process_group(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    peer = peers.Peer("dummy", (sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"), (),
                      port, "/")
    proc = peers.start(peer, tmp_path / "dummy.log", timeout_s=60)
    assert proc.poll() is None
    peers.stop(proc)
    assert proc.poll() is not None
    bad = peers.Peer("bad", (sys.executable, "-c", "raise SystemExit(3)"), (), port, "/")
    with pytest.raises(RuntimeError, match="exited with 3"):
        peers.start(bad, tmp_path / "bad.log", timeout_s=60)
