"""What CMCS's hard negatives do on the demo's data, whose camera pauses are static context: the official rule (a
feature row is static when its first frame is), ``--whole-chunk`` (when all its frames are) and none, each trained
as ``wtal demo`` trains (CMCS, 400 steps, lr 1e-3, two whole videos a step, standardized features) and tested as
it tests (tIoU 0.1:0.7). Seed 0 with the official rule is the demo's own run.

    python experiments/hard_negatives.py

Writes experiments/results/hard_negatives.json; ``render.py`` puts the table in docs/methods.md.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_line, mean_sd, measure_and_save

NAME = "hard_negatives"
SEEDS = (0, 1, 2)  # fixed before running
ITERATIONS = 400  # the demo's
#: rule name -> (build negatives?, whole_chunk), in the table's order
RULES = {"official": (True, False), "whole-chunk": (True, True), "none": (False, False)}
WORDS = {
    "official": "official rule (a row is static when its first frame is)",
    "whole-chunk": "`--whole-chunk` (all 16 frames static)",
    "none": "none (`--no-negatives`)",
}


def trial(data: Path, run: Path, seed: int, negatives: bool) -> list[float]:
    """[mAP@0.5, average] in % of one demo-style training run."""
    import numpy as np

    from wtal_pipe.device import fixed_threads
    from wtal_pipe.tools.demo import DEMO_THREADS, demo_test, demo_training
    from wtal_pipe.training.train import train

    options = dataclasses.replace(demo_training(data, run, iterations=ITERATIONS, seed=seed), negatives=negatives)
    with fixed_threads(DEMO_THREADS):
        train(options)
        result = demo_test(run, data, run / "test")
    at_05 = float(result.map_per_threshold[list(np.round(result.thresholds, 2)).index(0.5)])
    return [round(100 * at_05, 2), round(100 * result.average_map, 2)]


def measure(root: Path) -> dict[str, Any]:
    from wtal_pipe.data.negatives import NegativesConfig, build_negatives

    demo = root / "demo"
    subprocess.run([sys.executable, "-m", "wtal_pipe", "demo", "--out", str(demo)], check=True, capture_output=True)
    data = demo / "data"
    values: dict[str, Any] = {"seeds": list(SEEDS), "iterations": ITERATIONS, "rules": {}}
    for rule, (build, whole_chunk) in RULES.items():
        rows = 0
        if build:
            rows = sum(r.rows for r in build_negatives(data, config=NegativesConfig(whole_chunk=whole_chunk)))
        runs = {str(s): trial(data, root / f"{rule}-{s}", s, negatives=build) for s in SEEDS}
        values["rules"][rule] = {"negative_rows": rows, "runs": runs}
        print(rule, rows, runs)
    return values


def render(result: dict[str, Any]) -> dict[str, str]:
    v = result["values"]
    lines = [
        f"| negatives | mAP@0.5 (seeds {', '.join(map(str, v['seeds']))}) | average mAP 0.1:0.7 |",
        "|---|---|---|",
    ]
    for rule, entry in v["rules"].items():
        runs = [entry["runs"][str(s)] for s in v["seeds"]]
        at_05, average = [r[0] for r in runs], [r[1] for r in runs]
        rows = f"; {entry['negative_rows']} rows" if entry["negative_rows"] else ""
        each = ", ".join(f"{x:.1f}" for x in at_05)
        lines.append(f"| {WORDS[rule]}{rows} | {mean_sd(at_05, 1)} ({each}) | {mean_sd(average, 1)} |")
    text = "\n".join(lines) + f"\n\nMean +- sample sd over the seeds; {machine_line(result)}."
    return {"hard-negatives": text}


if __name__ == "__main__":
    measure_and_save(NAME, measure)
