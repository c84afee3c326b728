"""The README's own-videos commands, run verbatim on the clips ``wtal make-sample --classes 2`` makes (8 clips of
8 s, 2 classes, a quarter of them test clips with segments) on this machine: each command's wall time, the test
split's mAP, and the whole-video floor (each test clip's top class over the whole clip: what classification alone
earns; localization must beat it).

    python experiments/own_videos.py [--seed 0] [--workdir DIR]

Writes experiments/results/own_videos.json; ``python experiments/render.py`` puts it in the README.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, machine_line, record, save

NAME = "own_videos"
BLOCK = "own-videos"  # the README's commands, between its markers
DATA, RUN = "data/mine", "runs/mine"  # what the commands name (checked)


def commands(readme: Path = ROOT / "README.md") -> list[str]:
    """The README's own-videos commands, one per line, comments dropped."""
    found = re.search(rf"<!-- {BLOCK}:begin -->\n```bash\n(.*?)```\n<!-- {BLOCK}:end -->", readme.read_text(), re.S)
    if found is None:
        raise SystemExit(f"README.md has no {BLOCK} block")
    lines = [line.split("  #")[0].strip() for line in found.group(1).splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if not any(f"--data {DATA}" in line for line in lines) or not any(f"--out {RUN}" in line for line in lines):
        raise SystemExit(f"the {BLOCK} block no longer uses {DATA} and {RUN}: update {__file__}")
    return lines


def run(workdir: Path, seed: int = 0) -> dict[str, Any]:
    """Run the commands in ``workdir`` (the clips' seed set by ``--seed`` on make-sample) and score the run."""
    timed = []
    for line in commands():
        words = shlex.split(line)
        if words[:2] == ["wtal", "make-sample"] and "--classes" in words:
            words += ["--seed", str(seed)]
        started = time.perf_counter()
        command = [sys.executable, "-m", "wtal_pipe", *words[1:]]
        done = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{line} failed ({done.returncode}):\n{done.stderr[-2000:]}")
        timed.append({"command": line, "seconds": round(time.perf_counter() - started, 1)})
    return {
        "seed": seed,
        "commands": timed,
        "total_seconds": round(sum(c["seconds"] for c in timed), 1),
        **score(workdir),
    }


def score(workdir: Path) -> dict[str, Any]:
    """The run's test mAP and the whole-video floor, over THUMOS14's tIoU range."""
    import numpy as np

    from wtal_pipe.data.annotations import load_annotations
    from wtal_pipe.evaluation.evaluate import THUMOS_TIOU, evaluate
    from wtal_pipe.evaluation.testing import test_run, whole_video_detections
    from wtal_pipe.run import load_run

    model, meta = load_run(workdir / RUN)
    data, thresholds = workdir / DATA, np.asarray(THUMOS_TIOU)
    tested = test_run(model, meta, data, "test", thresholds)
    assert tested.result is not None  # the sample's test clips have segments
    database = load_annotations(data / "annotations.json")
    floor = evaluate(database, whole_video_detections(model, meta, data, "test"), "test", thresholds)
    return {
        "tiou": [float(t) for t in thresholds],
        "mAP": [round(100 * float(v), 2) for v in tested.result.map_per_threshold],
        "average_mAP": round(100 * tested.result.average_map, 2),
        "whole_video_average_mAP": round(100 * floor.average_map, 2),
        "test_videos": tested.scored,
    }


def render(result: dict[str, Any]) -> dict[str, str]:
    values = result["values"]
    steps = ", ".join(f"`{c['command'].split()[1]}` {c['seconds']:g} s" for c in values["commands"])
    text = (
        f"Measured: the block above, verbatim, in {_duration(values['total_seconds'])} ({steps}). On its "
        f"{values['test_videos']} test clips `wtal test` prints an average mAP (tIoU 0.1:0.7) of "
        f"{values['average_mAP']:.2f}, against {values['whole_video_average_mAP']:.2f} for predicting each whole "
        f"clip as its top class. {machine_line(result)}."
    )
    return {"own-videos-measured": text}


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} minutes"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample clips (0: what the README makes)")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        workdir = args.workdir or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        values = run(workdir, args.seed)
    print(values)
    print(f"wrote {save(record(NAME, values))}")


if __name__ == "__main__":
    main()
