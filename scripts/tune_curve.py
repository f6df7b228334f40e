"""Learning curve of a `treadle tune` run: bitext_intent accuracy against minutes of training.

Reads OUT/adapter/run_record.json (step -> seconds of training) and OUT/eval-step-*/summary.json (written by
scripts/tune_real_run.sh for each evaluated checkpoint; step 0 = the base model), writes OUT/curve.json and
OUT/curve.png. Usage: python scripts/tune_curve.py OUT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _accuracy(summary_dir: Path) -> tuple[float, list[float], int] | None:
    path = summary_dir / "summary.json"
    if not path.is_file():
        return None
    doc = json.loads(path.read_text())
    suites = doc.get("suites", doc)
    s = suites["bitext_intent"] if isinstance(suites, dict) else next(x for x in suites if x["suite"] == "bitext_intent")
    m = s["metrics"]["accuracy"]
    return m["value"], m.get("ci"), m.get("n")


def main(out: Path) -> int:
    record = json.loads((out / "adapter" / "run_record.json").read_text())
    elapsed = dict(record["metrics"]["step_elapsed_s"])
    points = []
    for d in sorted(out.glob("eval-step-*"), key=lambda p: int(p.name.rsplit("-", 1)[1])):
        step = int(d.name.rsplit("-", 1)[1])
        acc = _accuracy(d)
        if acc is not None:
            points.append({"step": step, "minutes": elapsed.get(step, 0.0) / 60, "accuracy": acc[0], "ci": acc[1],
                           "n": acc[2]})
    (out / "curve.json").write_text(json.dumps(points, indent=2) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    xs, ys = [p["minutes"] for p in points], [p["accuracy"] for p in points]
    ax.plot(xs, ys, marker="o")
    for p in points:
        if p["ci"]:
            ax.vlines(p["minutes"], p["ci"][0], p["ci"][1], alpha=0.4)
    ax.set_xlabel("minutes of training (wall clock)")
    ax.set_ylabel("bitext_intent accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(f"treadle tune SFT, LoRA r={record['config']['lora_r']}, {points[0]['n'] if points else 0} test items")
    fig.tight_layout()
    fig.savefig(out / "curve.png", dpi=120)
    print(json.dumps(points, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1])))
