"""THUMOS-shaped benchmark: the real THUMOS14 annotation timing (410 videos, 20 classes, real durations)
with synthetic 2048-d features in which each annotated segment carries its class's prototype.

    python examples/thumos_shaped_benchmark.py OUT_DIR [--methods basnet,um,cmcs,backtal] [--device cuda]
        [--scale 1.0] [--dim 2048] [--seed 0] [--set accumulate=4 ...] [--ablate]

``--scale`` multiplies every method's published iteration count (use < 1 on a CPU, which also switches
to lr 1e-3); ``--dim`` sets the feature size (smaller is faster on a CPU). Prints one mAP row
per method (final checkpoint, tIoU 0.1:0.7) and writes OUT_DIR/results.json. ``--ablate`` also
re-localizes each trained run with each official post-processing choice flipped (README, "Official
choices that one may argue with"). A run already in OUT_DIR is reused.
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
from wtal_pipe.methods import get_method
from wtal_pipe.methods.base import MethodConfig
from wtal_pipe.pipeline import localize_dataset
from wtal_pipe.run import load_run
from wtal_pipe.train import TrainOptions, parse_settings, train

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
            b = max(a + 1, math.ceil(ann["segment"][1] / SECONDS_PER_ROW))
            features[a:b] += 0.8 * prototypes[classes.index(ann["label"])]
        atomic_save_npy(data / "features" / f"{vid}.npy", features)
    (data / "annotations.json").write_text(json.dumps({"database": gt}))


def alternatives(config: MethodConfig) -> dict[str, object]:
    """The test-time choices of the official code that one may argue with, flipped."""
    flipped: dict[str, object] = {}
    if config.binarize_class_score:
        flipped["binarize_class_score"] = False
    if config.nms_threshold is not None and config.nms_plus_one:
        flipped["nms_plus_one"] = False
    if config.resample == "starts-extrapolated":
        flipped["resample"] = "centres"
    return flipped


def score(run: Path, data: Path, device: str, overrides: dict | None = None) -> dict:
    model, meta = load_run(run, device, overrides)
    detections = localize_dataset(model, meta, data, "test")
    return evaluate(
        load_annotations(data / "annotations.json"), detections, "test", THUMOS_TIOU, known_classes=meta.classes
    ).to_dict()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--methods", default="basnet,um,cmcs,backtal")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--set", action="append", default=[], help="method setting name=value, for every method")
    parser.add_argument("--ablate", action="store_true", help="also score each flipped official choice")
    args = parser.parse_args()
    data = args.out / "data"
    if not (data / "annotations.json").exists():
        write_features(data, args.seed, args.dim)
    results = {}
    for method in args.methods.split(","):
        published = get_method(method).Config().iterations
        overrides = {
            "iterations": max(1, int(published * args.scale)),
            "lr": 1e-3 if args.scale < 1 else 1e-4,
            **parse_settings(args.set),
        }
        run = args.out / f"run_{method}"
        if not (run / "checkpoint.pt").exists():
            train(
                TrainOptions(
                    method,
                    data,
                    run,
                    seed=args.seed,
                    device=args.device,
                    simulate_clicks=method == "backtal",
                    overrides=overrides,
                )
            )
        result = score(run, data, args.device)
        results[method] = {"iterations": overrides["iterations"], "lr": overrides["lr"], **result}
        print(
            f"{method:8s} iters {overrides['iterations']:6d}  mAP "
            + " ".join(f"{100 * v:6.2f}" for v in result["mAP"].values())
            + f"  avg {100 * result['average_mAP']:6.2f}",
            flush=True,
        )
        if args.ablate:
            for name, value in alternatives(load_run(run)[0].config).items():
                flipped = score(run, data, args.device, {name: value})
                results[method][f"{name}={value}"] = flipped
                print(
                    f"{'':8s} {name}={value}: avg {100 * flipped['average_mAP']:6.2f}, "
                    f"mAP@0.5 {100 * flipped['mAP']['0.5']:6.2f}",
                    flush=True,
                )
    (args.out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
