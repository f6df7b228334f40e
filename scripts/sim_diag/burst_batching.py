"""How a real replica batches requests that its clients send at the same moment (docs/SIMULATION.md, "fifth
session"): `treadle serve --model default` with its steps logged (`TREADLE_STEP_LOG`), then ROUNDS rounds of K
chat requests sent together (threads released by one barrier; each a distinct 40-word prompt, 1 output
token), one round after the previous one has been answered, so the engine is idle when each burst arrives.
Prints, per round, how many prompt chunks each of its steps took. The simulator delivers simultaneous
requests at one instant, so it prefills all K in one step; a split here is the server's front end (one event
loop taking the requests in turn) handing them to the engine thread over several steps.

Also prints the front end's pace: the replica logs the moment its event loop hands each request to the engine
thread (`TREADLE_ENQUEUE_LOG`), so each round gives the first hand-over's delay after the release and the
gaps between consecutive hand-overs (the event loop's serial time per request while the engine runs).

Usage: flock /tmp/treadle-cpu.lock .venv/bin/python scripts/sim_diag/burst_batching.py [K] [ROUNDS]   (~1 min)
"""

import json
import statistics
import sys
import threading
import time
import urllib.request
from collections import Counter

from treadle.bench.http_throughput import stop_server
from treadle.sim.served_steps import read_steps
from treadle.sim.serving_overhead import start_logged_server

WORDS = "river stone cloud maple lantern harbor violet meadow engine copper".split()


def ask(url: str, model: str, text: str, barrier: threading.Barrier, sent: list[float]) -> None:
    body = json.dumps({"model": model, "max_tokens": 1, "messages": [{"role": "user", "content": text}]})
    req = urllib.request.Request(f"{url}/v1/chat/completions", body.encode(), {"Content-Type": "application/json"})
    barrier.wait()
    sent.append(time.monotonic())
    with urllib.request.urlopen(req, timeout=300) as r:
        r.read()


def main() -> None:
    k = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    srv, url, log = start_logged_server()
    splits: list[tuple[int, ...]] = []
    firsts: list[float] = []  # release (first send) to the first hand-over, seconds
    gaps: list[float] = []  # between consecutive hand-overs of one round, seconds
    enq = log.with_name("enqueued.jsonl")
    try:
        with urllib.request.urlopen(f"{url}/v1/models", timeout=60) as r:
            model = json.loads(r.read())["data"][0]["id"]
        for n in range(rounds):
            before, before_enq = len(log.read_text().splitlines()), len(enq.read_text().splitlines())
            barrier, sent = threading.Barrier(k), []
            threads = [threading.Thread(target=ask, args=(url, model, " ".join(WORDS[(n + i + j) % 10] for j in range(40))
                                                                + f" round {n} request {i}", barrier, sent))
                       for i in range(k)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            steps = read_steps(log, before)
            splits.append(tuple(s.prefill_chunks for s, _ in steps if s.prefill_tokens > 0))
            ts = sorted(json.loads(line)["t"] for line in enq.read_text().splitlines()[before_enq:])
            firsts.append(ts[0] - min(sent))
            gaps += [b - a for a, b in zip(ts, ts[1:], strict=False)]
    finally:
        stop_server(srv)
    print(f"{k} requests sent together, {rounds} rounds; prompt chunks per step, by round:")
    for n, sp in enumerate(splits):
        print(f"  round {n}: {sp}")
    print("rounds by split:", dict(Counter(splits).most_common()))
    q = statistics.quantiles
    print(f"release to first hand-over: median {statistics.median(firsts) * 1000:.2f} ms, quartiles "
          f"{', '.join(f'{x * 1000:.2f}' for x in q(firsts, n=4))}")
    print(f"gaps between hand-overs ({len(gaps)}): median {statistics.median(gaps) * 1000:.2f} ms, quartiles "
          f"{', '.join(f'{x * 1000:.2f}' for x in q(gaps, n=4))}, max {max(gaps) * 1000:.2f}")


if __name__ == "__main__":
    main()
