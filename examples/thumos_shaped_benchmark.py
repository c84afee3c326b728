"""THUMOS-shaped benchmark: the real THUMOS14 annotation timing (410 videos, 20 classes, real durations)
with synthetic 2048-d features in which each annotated segment carries its class's prototype.

    python examples/thumos_shaped_benchmark.py OUT_DIR [--methods basnet,um,cmcs,backtal] [--device cuda]
        [--scale 1.0] [--dim 2048] [--seed 0] [--set accumulate=4 ...]

``--scale`` multiplies every method's published iteration count (use < 1 on a CPU, which also switches
to lr 1e-3); ``--dim`` sets the feature size (smaller is faster on a CPU). Prints one mAP row
per method (final checkpoint, tIoU 0.1:0.7) and writes OUT_DIR/results.json.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from wtal_pipe.cache import atomic_save_npy
from wtal_pipe.data.dataset import load_annotations
from wtal_pipe.evaluate import THUMOS_TIOU, evaluate
from wtal_pipe.pipeline import localize_dataset
from wtal_pipe.methods import get_method
from wtal_pipe.train import TrainOptions, load_run, parse_settings, train

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
SECONDS_PER_ROW = 16 / 25


def write_features(data: Path, seed: int, dim: int = 2048) -> None:
    gt = load_annotations(FIXTURES / "thumos14_gt.json")
    durations = load_annotations(FIXTURES / "thumos14_gt_fps_duration.json")
    rng = np.random.default_rng(seed)
    classes = sorted({a["label"] for v in gt.values() for a in v["annotations"]})
    prototypes = rng.normal(0, 1, (len(classes), dim)).astype(np.float32)
    for vid, video in gt.items():
        duration = float(durations[vid]["duration"])
        video["duration"] = duration
        rows = max(2, math.ceil(duration / SECONDS_PER_ROW))
        features = rng.normal(0, 1, (rows, dim)).astype(np.float32) + rng.normal(0, 0.3, dim).astype(np.float32)
        for ann in video["annotations"]:
            a = int(ann["segment"][0] / SECONDS_PER_ROW)
            b = max(a + 1, int(math.ceil(ann["segment"][1] / SECONDS_PER_ROW)))
            features[a:b] += 0.8 * prototypes[classes.index(ann["label"])]
        atomic_save_npy(data / "features" / f"{vid}.npy", features)
    (data / "annotations.json").write_text(json.dumps({"database": gt}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--methods", default="basnet,um,cmcs,backtal")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--set", action="append", default=[], help="method setting name=value, for every method")
    args = parser.parse_args()
    data = args.out / "data"
    if not (data / "annotations.json").exists():
        write_features(data, args.seed, args.dim)
    results = {}
    for method in args.methods.split(","):
        published = get_method(method).Config().iterations
        overrides = {"iterations": max(1, int(published * args.scale)), "lr": 1e-3 if args.scale < 1 else 1e-4,
                     **parse_settings(args.set)}
        run = args.out / f"run_{method}"
        train(TrainOptions(method, data, run, seed=args.seed, device=args.device,
                           simulate_clicks=method == "backtal", overrides=overrides))
        model, meta = load_run(run, args.device)
        detections = localize_dataset(model, meta, data, "test")
        result = evaluate(load_annotations(data / "annotations.json"), detections, "test", THUMOS_TIOU)
        results[method] = {"iterations": overrides["iterations"], "lr": overrides["lr"], **result.to_dict()}
        print(f"{method:8s} iters {overrides['iterations']:6d}  " + result.table().splitlines()[1], flush=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
