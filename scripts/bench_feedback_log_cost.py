"""Cost of the interaction log per response, measured in-process (seconds; no server, no model):

- request path: building the record from a chat body + response (``records.from_response``) and queueing it
  (``InteractionLog.submit``), per response, on the calling thread;
- writer: process CPU seconds per row while the writer thread inserts N records into a fresh SQLite store
  (WAL) in batches (the main thread sleeps meanwhile, so the CPU time is the writer's);
- ``--one-by-one``: instead, records queued ``--gap-ms`` apart, so the writer takes each in its own
  transaction, as at serving rates of a few responses a second: process CPU per record, building included.
Prints JSON. Usage: python scripts/bench_feedback_log_cost.py [--n 5000] [--one-by-one --n 64 --gap-ms 20]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from treadle.feedback.log import InteractionLog
from treadle.feedback.records import from_response
from treadle.store import open_store

PROMPT = ("I am planning a trip to Japan next spring and would like an itinerary for ten days covering Tokyo, "
          "Kyoto and Osaka, with food recommendations and tips on rail passes. ") * 6  # ~1.1 KB, ShareGPT-like
REPLY = "Here is a ten-day plan. Day 1: arrive in Tokyo, check in near Shinjuku and walk to the gardens. " * 6


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--one-by-one", action="store_true", help="one record per transaction (records spaced out)")
    ap.add_argument("--gap-ms", type=float, default=20.0, help="spacing of records with --one-by-one")
    args = ap.parse_args()
    body = {"model": "m", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 128, "temperature": 0.0}
    store = open_store(f"sqlite:///{Path(tempfile.mkdtemp()) / 'cost.db'}")
    if args.one_by_one:
        return one_by_one(store, body, args.n, args.gap_ms / 1000)
    log = InteractionLog(store, max_queue=args.n + 10, review_share=0.02)
    log._write_real = log._write  # hold the writer until every record is queued
    import threading

    gate = threading.Event()
    log._write = lambda batch: (gate.wait(), log._write_real(batch))
    t0 = time.perf_counter()
    for i in range(args.n):
        resp = {"id": f"chatcmpl-{i:08d}", "model": "m", "choices": [{"index": 0, "text": REPLY, "finish_reason": "length"}],
                "usage": {"prompt_tokens": 250, "completion_tokens": 128, "prompt_tokens_details": {"cached_tokens": 0}}}
        rec = from_response(body, resp, key_user=None, source="serve", stream=False, ttft_s=0.5, e2e_s=4.0)
        log.submit(rec)
    path_s = (time.perf_counter() - t0) / args.n
    c0, w0 = time.process_time(), time.perf_counter()
    gate.set()
    assert log.flush(600)
    cpu_s, wall_s = time.process_time() - c0, time.perf_counter() - w0
    log.close()
    out = {"records": args.n, "written": log.written, "request_path_us_per_response": round(path_s * 1e6, 1),
           "writer_cpu_us_per_row": round(cpu_s / args.n * 1e6, 1), "writer_wall_s": round(wall_s, 3),
           "writer_rows_per_s": round(args.n / wall_s, 1)}
    print(json.dumps(out))
    return 0


def one_by_one(store, body: dict, n: int, gap_s: float) -> int:  # noqa: ANN001
    """Process CPU per record when every record is written in its own transaction."""
    log = InteractionLog(store, max_queue=n + 10, review_share=0.02)
    c0 = time.process_time()
    for i in range(n):
        resp = {"id": f"chatcmpl-{i:08d}", "model": "m", "choices": [{"index": 0, "text": REPLY, "finish_reason": "length"}],
                "usage": {"prompt_tokens": 250, "completion_tokens": 128, "prompt_tokens_details": {"cached_tokens": 0}}}
        log.submit(from_response(body, resp, key_user=None, source="serve", stream=False, ttft_s=0.5, e2e_s=4.0))
        time.sleep(gap_s)
    assert log.flush(600)
    cpu_s = time.process_time() - c0
    log.close()
    print(json.dumps({"records": n, "written": log.written, "gap_ms": gap_s * 1000,
                      "cpu_us_per_record_one_per_transaction": round(cpu_s / n * 1e6, 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
