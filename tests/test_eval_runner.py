"""`treadle eval` against a real tiny-model server: suite file in, result files out, gate on them."""

from __future__ import annotations

import json

import pytest
import yaml

from test_server_support import ServerProcess
from treadle.cli import main


@pytest.fixture(scope="module")
def server(tiny_llama, tmp_path_factory):  # noqa: ANN001, ANN201
    s = ServerProcess(tiny_llama, tmp_path_factory.mktemp("evalsrv") / "server.log", "--served-model-name", "tiny")
    yield s
    s.stop()


def _suite(path) -> None:  # noqa: ANN001
    path.write_text(yaml.safe_dump({"name": "tiny", "max_tokens": 8, "items": [
        {"id": f"any-{i}", "prompt": f"Say anything {i}", "type": "regex", "expected": r"(?s).*"} for i in range(4)
    ] + [
        {"id": f"never-{i}", "prompt": f"Say nothing {i}", "type": "regex", "expected": "^IMPOSSIBLE$"} for i in range(2)
    ]}))


def test_eval_suite_file_and_gate(server, tmp_path, capsys) -> None:  # noqa: ANN001
    suite = tmp_path / "tiny.yaml"
    _suite(suite)
    jsonl = tmp_path / "open.jsonl"
    jsonl.write_text("\n".join(json.dumps({"id": f"o{i}", "prompt": f"Tell me about the sea {i}", "type": "open"})
                               for i in range(3)))
    out = tmp_path / "run1"
    base = f"{server.base}/v1"
    args = ["eval", "--base-url", base, "--model", "tiny", "--suite-file", str(suite), "--suite-file", str(jsonl),
            "--out", str(out), "--concurrency", "4", "--no-progress", "--max-tokens", "8"]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["kind"] == "eval" and summary["meta"]["endpoint"] == base and summary["meta"]["model"] == "tiny"
    s = summary["suites"]["tiny"]
    assert s["n"] == 6 and s["category"] == "accuracy" and s["items_file"] == "tiny.items.json"
    assert s["meta"]["model"] == "tiny" and "--suite-file" in s["meta"]["command"]  # the run behind this suite
    acc = s["metrics"]["accuracy"]
    assert acc["value"] == pytest.approx(4 / 6) and acc["n"] == 6 and acc["gated"]
    assert acc["ci"][0] < 4 / 6 < acc["ci"][1]
    items = json.loads((out / "tiny.items.json").read_text())
    assert items["kind"] == "eval-items" and items["meta"]["seed"] == 0
    assert {it["id"]: it["passed"]["accuracy"] for it in items["items"]}["never-0"] is False
    assert all(it["finish_reason"] in ("stop", "length") for it in items["items"])
    coh = summary["suites"]["open"]
    assert coh["category"] == "coherence"
    assert set(coh["metrics"]) == {"on_topic", "fluent", "not_degenerate", "language", "coherent"}
    o_items = json.loads((out / "open.items.json").read_text())["items"]
    # fluency came from the server's prompt log-probs: a finite negative mean for every non-empty reply
    for it in o_items:
        lp = it["details"]["mean_logprob"]
        assert (lp is None) == (not it["reply"].strip()) and (lp is None or lp < 0)

    # deterministic sampling: a second run gives the same replies, so the gate passes at threshold 0
    out2 = tmp_path / "run2"
    assert main([*args[:-7], "--out", str(out2), "--concurrency", "2", "--no-progress", "--max-tokens", "8"]) == 0
    r1 = [it["reply"] for it in items["items"]]
    r2 = [it["reply"] for it in json.loads((out2 / "tiny.items.json").read_text())["items"]]
    assert r1 == r2
    capsys.readouterr()
    assert main(["gate", str(out2), str(out), "--threshold", "0"]) == 0
    assert main(["gate", str(out2), str(out)]) == 1  # 4/6 is below 0.95
    assert "below threshold" in capsys.readouterr().out

    # --limit takes a seeded sample; a rerun into the same directory keeps the other suite
    assert main([*args[:5], "--suite-file", str(suite), "--out", str(out), "--limit", "3", "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["suites"]["tiny"]["n"] == 3 and summary["suites"]["tiny"]["sampled"] and "open" in summary["suites"]

    # shards run separately merge into one suite result equal to the unsharded one
    out3 = tmp_path / "run3"
    for shard in ("1/2", "0/2"):
        assert main([*args[:5], "--suite-file", str(suite), "--out", str(out3), "--shard", shard, "--no-progress",
                     "--max-tokens", "8"]) == 0
        n = json.loads((out3 / "summary.json").read_text())["suites"]["tiny"]["n"]
        assert n == (3 if shard == "1/2" else 6)
    merged = json.loads((out3 / "tiny.items.json").read_text())["items"]
    assert [it["id"] for it in merged] == [it["id"] for it in items["items"]]
    assert [it["reply"] for it in merged] == r1
    assert main([*args[:5], "--suite-file", str(suite), "--out", str(out3), "--shard", "2/2"]) == 2


def test_eval_bad_input(server, tmp_path, capsys) -> None:  # noqa: ANN001
    assert main(["eval", "--model", "x", "--suite", "nope", "--out", str(tmp_path)]) == 2
    assert "suite must be one of" in capsys.readouterr().err
    assert main(["eval", "--model", "x", "--out", str(tmp_path)]) == 2
    assert main(["eval", "--model", "x", "--suite-file", str(tmp_path / "missing.yaml")]) == 2
