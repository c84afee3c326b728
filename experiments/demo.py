"""``wtal demo`` as the README runs it: its printed mAP@0.5 and average (tIoU 0.1:0.7), wall time and peak memory
on this machine, and how far float rounding moves them: the demo's training and test rerun on its own features
perturbed by a relative 1e-6 (5 trials, seeded), as another CPU's kernels would round them.

    python experiments/demo.py

The demo is deterministic on one CPU class (the same vector unit): tests/test_demo.py checks that its printed
numbers equal these on such a machine, and fall within the perturbation range on another.
"""

from __future__ import annotations

import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_line, record, save

NAME = "demo"
TRIALS = 5  # fixed before running
RELATIVE_NOISE = 1e-6


def printed_map(output: str) -> tuple[float, float]:
    """(mAP@0.5, average) from the table ``wtal demo`` prints."""
    head = re.search(r"^tIoU((?: +[0-9.]+)+) +avg$", output, re.M)
    row = re.search(r"^mAP((?: +[0-9.]+)+)$", output, re.M)
    if head is None or row is None:
        raise SystemExit(f"no mAP table in the demo's output:\n{output[-2000:]}")
    thresholds = [float(t) for t in head.group(1).split()]
    values = [float(v) for v in row.group(1).split()]
    return values[thresholds.index(0.5)], values[-1]


def run_demo(out: Path) -> dict[str, Any]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "wtal_pipe", "demo", "--out", str(out)], capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"wtal demo failed:\n{done.stderr[-2000:]}")
    at_05, average = printed_map(done.stdout)
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "mAP@0.5": at_05,
        "average": average,
        "seconds": round(seconds, 1),
        "peak_rss_gib": round(peak_kib / 2**20, 2),
    }


def perturbed(out: Path, trial: int) -> tuple[float, float]:
    """The demo's training and test on its features times (1 + 1e-6 x noise), noise seeded by ``trial``."""
    import numpy as np

    from wtal_pipe.device import fixed_threads
    from wtal_pipe.tools.demo import DEMO_THREADS, demo_test, demo_training
    from wtal_pipe.training.train import train

    data = out / f"perturbed-{trial}"
    shutil.copytree(out / "data", data, ignore=shutil.ignore_patterns("cache"))
    rng = np.random.default_rng(trial)
    for path in sorted((data / "features").glob("*.npy")) + sorted((data / "negatives").glob("*_bg.npy")):
        rows = np.load(path)
        np.save(path, (rows * (1 + RELATIVE_NOISE * rng.standard_normal(rows.shape))).astype(np.float32))
    (data / ".feature-checks.json").unlink(missing_ok=True)
    with fixed_threads(DEMO_THREADS):
        train(demo_training(data, out / f"run-{trial}", iterations=400, seed=0))
        result = demo_test(out / f"run-{trial}", data, out / f"test-{trial}")
    at_05 = float(result.map_per_threshold[list(np.round(result.thresholds, 2)).index(0.5)])
    return round(100 * at_05, 2), round(100 * result.average_map, 2)


def render(result: dict[str, Any]) -> dict[str, str]:
    v = result["values"]
    trials = v["perturbed"]
    at_05, average = [t[0] for t in trials], [t[1] for t in trials]
    text = (
        f"Measured: `wtal demo` printed **mAP@0.5 = {v['mAP@0.5']:.2f}**, average over tIoU 0.1:0.7 = "
        f"{v['average']:.2f}, in {v['seconds']:.0f} s wall with a peak of {v['peak_rss_gib']:.2f} GiB "
        f"({machine_line(result)}). The clips are lossless and training runs on fixed threads, so these numbers "
        f"repeat on any machine with the same kind of CPU (vector unit); another kind rounds floats differently. "
        f"Features perturbed by a relative {RELATIVE_NOISE:g}, {len(trials)} trials: mAP@0.5 "
        f"{min(at_05):.2f}-{max(at_05):.2f}, average {min(average):.2f}-{max(average):.2f}."
    )
    return {"demo-measured": text}


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch)
        values = run_demo(out / "demo")
        values["perturbed"] = [list(perturbed(out / "demo", trial)) for trial in range(1, TRIALS + 1)]
    print(values)
    print(f"wrote {save(record(NAME, values))}")


if __name__ == "__main__":
    main()
