"""How a real replica batches requests that its clients send at the same moment (docs/SIMULATION.md, "fifth
session"): `treadle serve --model default` with its steps logged (`TREADLE_STEP_LOG`), then ROUNDS rounds of K
chat requests sent together (threads released by one barrier; each a distinct 40-word prompt, 1 output
token), one round after the previous one has been answered, so the engine is idle when each burst arrives.
Prints, per round, how many prompt chunks each of its steps took. The simulator delivers simultaneous
requests at one instant, so it prefills all K in one step; a split here is the server's front end (one event
loop taking the requests in turn) handing them to the engine thread over several steps.

Usage: flock /tmp/treadle-cpu.lock .venv/bin/python scripts/sim_diag/burst_batching.py [K] [ROUNDS]   (~1 min)
"""

import json
import sys
import threading
import urllib.request
from collections import Counter

from treadle.bench.http_throughput import stop_server
from treadle.sim.serving_overhead import read_steps, start_logged_server

WORDS = "river stone cloud maple lantern harbor violet meadow engine copper".split()


def ask(url: str, model: str, text: str, barrier: threading.Barrier) -> None:
    body = json.dumps({"model": model, "max_tokens": 1, "messages": [{"role": "user", "content": text}]})
    req = urllib.request.Request(f"{url}/v1/chat/completions", body.encode(), {"Content-Type": "application/json"})
    barrier.wait()
    with urllib.request.urlopen(req, timeout=300) as r:
        r.read()


def main() -> None:
    k = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    srv, url, log = start_logged_server()
    splits: list[tuple[int, ...]] = []
    try:
        with urllib.request.urlopen(f"{url}/v1/models", timeout=60) as r:
            model = json.loads(r.read())["data"][0]["id"]
        for n in range(rounds):
            before = len(log.read_text().splitlines())
            barrier = threading.Barrier(k)
            threads = [threading.Thread(target=ask, args=(url, model, " ".join(WORDS[(n + i + j) % 10] for j in range(40))
                                                                + f" round {n} request {i}", barrier))
                       for i in range(k)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            steps = read_steps(log, before)
            splits.append(tuple(s.prefill_chunks for s, _ in steps if s.prefill_tokens > 0))
    finally:
        stop_server(srv)
    print(f"{k} requests sent together, {rounds} rounds; prompt chunks per step, by round:")
    for n, sp in enumerate(splits):
        print(f"  round {n}: {sp}")
    print("rounds by split:", dict(Counter(splits).most_common()))


if __name__ == "__main__":
    main()
