"""Interaction-log overhead: `treadle bench serve` against `treadle serve` with logging on vs off (SQLite).

Each repeat starts a fresh server per mode (same seed, so both modes see the same prompts), alternating
which mode goes first, runs `treadle bench serve --workload sharegpt --concurrency 16 --num-requests 64`,
and records throughput and TTFT p50; the "on" server must have written every response (its /metrics).
The ratios on/off per repeat, their mean, min and max go to --out. ``--aa`` runs the same pairs with
logging off in both (an A/A control: the spread of the ratio when nothing differs, the benchmark's noise
floor). Run it under the CPU lock:
    flock /tmp/treadle-cpu.lock python scripts/bench_feedback_overhead.py --repeats 3 --out FILE
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(model: str, db: str, log_on: bool, log_path: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "treadle.cli", "serve", "--model", model, "--port", str(port), "--db", db,
           "--log-level", "warning"] + ([] if log_on else ["--no-log-interactions"])
    proc = subprocess.Popen(cmd, stdout=log_path.open("wb"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    while True:
        if proc.poll() is not None:
            raise RuntimeError(log_path.read_text())
        try:
            if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.5)


def written(base: str) -> tuple[float, float]:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    got = {m.group(1): float(m.group(2)) for m in
           re.finditer(r'treadle_interaction_log_records_total\{outcome="(\w+)"\} (\S+)', text)}
    return got.get("written", 0.0), got.get("dropped", 0.0)


def one(model: str, db: str, log_on: bool, seed: int, work: Path, tag: str, aa: bool = False) -> dict:
    proc, base = serve(model, db, log_on and not aa, work / f"{tag}.log")
    try:
        out = work / f"{tag}.json"
        subprocess.run([sys.executable, "-m", "treadle.cli", "bench", "serve", "--base-url", base, "--workload",
                        "sharegpt", "--concurrency", "16", "--num-requests", "64", "--seed", str(seed),
                        "--no-progress", "--out", str(out)], check=True)
        s = json.loads(out.read_text())["summary"]
        res = {"mode": "on" if log_on else "off", "logging": log_on and not aa, "seed": seed, "completed": s["completed"],
               "requests_per_s": s["requests_per_s"], "output_tok_s": s["output_tok_s"],
               "ttft_p50_ms": s["ttft_ms"]["p50"]}
        if log_on and not aa:
            deadline = time.monotonic() + 30
            while written(base)[0] < s["completed"] and time.monotonic() < deadline:
                time.sleep(0.2)
            res["log_written"], res["log_dropped"] = written(base)
        return res
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="default")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", required=True)
    ap.add_argument("--aa", action="store_true", help="A/A control: logging off in both runs of each pair")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="treadle-fb-bench-"))
    db = f"sqlite:///{work / 'bench.db'}"
    runs = []
    for r in range(args.repeats):
        order = (True, False) if r % 2 == 0 else (False, True)
        pair = {}
        for log_on in order:
            res = one(args.model, db, log_on, seed=r, work=work, tag=f"r{r}-{'on' if log_on else 'off'}", aa=args.aa)
            print(json.dumps(res), flush=True)
            runs.append(res)
            pair[res["mode"]] = res
        for key in ("requests_per_s", "output_tok_s", "ttft_p50_ms"):
            pair["on"].setdefault("ratio", {})[key] = pair["on"][key] / pair["off"][key]
        summary = write(args, runs, r + 1)  # after every pair, so an interrupted run keeps what it measured
    print(json.dumps(summary, indent=1))
    return 0


def write(args: argparse.Namespace, runs: list[dict], pairs: int) -> dict:
    ratios = {k: [x["ratio"][k] for x in runs if x["mode"] == "on"] for k in ("requests_per_s", "output_tok_s",
                                                                              "ttft_p50_ms")}
    summary = {k: {"mean": sum(v) / len(v), "min": min(v), "max": max(v)} for k, v in ratios.items()}
    result = {"kind": "feedback-log-overhead-aa" if args.aa else "feedback-log-overhead", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "command": "treadle bench serve --workload sharegpt --concurrency 16 --num-requests 64",
              "model": args.model, "db": "sqlite (WAL), one file for the whole benchmark",
              "repeats_planned": args.repeats, "pairs_done": pairs, "runs": runs, "ratio_on_over_off": summary}
    Path(args.out).write_text(json.dumps(result, indent=1))
    return summary


if __name__ == "__main__":
    raise SystemExit(main())
