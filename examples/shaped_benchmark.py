"""Shaped benchmarks: a real annotation file's timing (THUMOS14: 410 videos, 20 classes; ActivityNet 1.2:
the training and validation videos, 100 classes) with synthetic features made hard on purpose (part-only,
low-contrast actions, class context beside them, generic motion in the background; ``wtal_pipe/tools/shaped.py``).

    python examples/shaped_benchmark.py OUT_DIR [--benchmark thumos14|activitynet1.2] [--videos N]
        [--methods basnet,um,cmcs,backtal] [--device cuda] [--scale 1.0] [--dim 2048] [--hidden 2048]
        [--seed 0] [--seeds 0,1,2] [--set name=value ...] [--ablate]

Each method trains with the benchmark's preset (its authors' settings there) and is scored on the
benchmark's test subset over its tIoU range (THUMOS14: 0.1:0.7 for every method, to compare them).
``--scale`` multiplies every method's published step (or epoch) count (use < 1 on a CPU, which also switches
to lr 1e-3); ``--dim`` sets the feature size and ``--hidden`` the methods' hidden width (smaller is faster on
a CPU); ``--videos`` draws that many videos from the benchmark's (the subsets' proportions kept). ``--seed``
draws the features, ``--seeds`` the training runs. Prints one mAP row per method and seed (final checkpoint),
each followed by the whole-video floor (the run's top class over each whole video), and writes
OUT_DIR/results.json. ``--ablate`` also re-localizes each trained run with each official
post-processing choice flipped (README, "Official choices that one may argue with"). A run already in
OUT_DIR is reused.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from wtal_pipe.cli.options import parse_settings
from wtal_pipe.data.annotations import load_annotations
from wtal_pipe.evaluation.evaluate import THUMOS_TIOU, evaluate
from wtal_pipe.evaluation.testing import whole_video_detections
from wtal_pipe.inference.pipeline import localize_dataset
from wtal_pipe.intervals import parse_tiou
from wtal_pipe.methods import get_method
from wtal_pipe.methods.presets import benchmark, preset_settings
from wtal_pipe.methods.settings import LocalizationSettings
from wtal_pipe.run import load_run
from wtal_pipe.tools.shaped import ShapedFeatures, narrowed, write_shaped_dataset
from wtal_pipe.training.train import TrainOptions, train

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
#: benchmark -> (annotations, a file with the durations if they lack them, the subsets to draw from)
SOURCES = {
    "thumos14": (FIXTURES / "thumos14_gt.json", FIXTURES / "thumos14_gt_fps_duration.json", None),
    "activitynet1.2": (FIXTURES / "activitynet12.min.json", None, ("training", "validation")),
}


def alternatives(settings: LocalizationSettings) -> dict[str, object]:
    """The test-time choices of the official code that one may argue with, flipped."""
    flipped: dict[str, object] = {}
    if settings.binarize_class_score:
        flipped["binarize_class_score"] = False
    if settings.nms_threshold is not None and settings.nms_plus_one:
        flipped["nms_plus_one"] = False
    if settings.resample == "starts-extrapolated":
        flipped["resample"] = "centres"
    return flipped


def score(run: Path, data: Path, device: str, overrides: dict | None = None, whole_video: bool = False) -> dict:
    """The run's mAP on its benchmark's test subset; with ``whole_video``, the mAP of a detector that only
    classifies: each video's top class over the whole video, scored by its video score (a floor that
    localization must beat: on ActivityNet, actions fill most of a video)."""
    model, meta = load_run(run, device, overrides)
    facts = benchmark(meta.preset)
    thresholds = parse_tiou(facts.eval_tiou) if facts.eval_tiou else THUMOS_TIOU
    if whole_video:
        detections = whole_video_detections(model, meta, data, facts.test_subset)
    else:
        detections = localize_dataset(model, meta, data, facts.test_subset)
    database = load_annotations(data / "annotations.json")
    return evaluate(database, detections, facts.test_subset, thresholds).to_dict()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--benchmark", choices=sorted(SOURCES), default="thumos14")
    parser.add_argument("--videos", type=int, default=None, help="draw this many videos (default: all)")
    parser.add_argument("--methods", default="basnet,um,cmcs,backtal")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0, help="seed of the features")
    parser.add_argument("--seeds", default="0", help="training seeds, e.g. 0,1,2")
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--set", action="append", default=[], help="method setting name=value, for every method")
    parser.add_argument("--ablate", action="store_true", help="also score each flipped official choice")
    args = parser.parse_args()
    data = args.out / "data"
    if not (data / "annotations.json").exists():
        gt, durations, subsets = SOURCES[args.benchmark]
        settings = ShapedFeatures(dim=args.dim)
        write_shaped_dataset(gt, durations, data, settings, seed=args.seed, subsets=subsets, count=args.videos)
    results: dict[str, dict] = {}
    for method in args.methods.split(","):
        cls = get_method(method)
        published = cls.configure(preset_settings(cls, args.benchmark, {})).training
        length = (
            {"epochs": max(1, round(published.epochs * args.scale))}
            if published.epochs
            else {"iterations": max(1, int(published.iterations * args.scale))}
        )
        if published.lr_decay_at:  # the decay stays at the same share of the steps
            length["lr_decay_at"] = max(1, int(published.lr_decay_at * args.scale))
        overrides = {
            **length,
            "lr": 1e-3 if args.scale < 1 else published.lr,
            **narrowed(cls, args.hidden),
            **parse_settings(args.set),
        }
        for seed in (int(s) for s in args.seeds.split(",")):
            run = args.out / f"run_{method}_seed{seed}"
            if not (run / "checkpoint.pt").exists():
                options = TrainOptions(
                    method,
                    data,
                    run,
                    seed=seed,
                    preset=args.benchmark,
                    device=args.device,
                    simulate_clicks=cls.uses_clicks,
                    overrides=overrides,
                )
                train(options)
            result = score(run, data, args.device)
            floor = score(run, data, args.device, whole_video=True)
            results.setdefault(method, {})[str(seed)] = {**overrides, **result, "whole_video": floor}
            for name, found in ((f"{method} seed {seed} {json.dumps(length)}", result), ("  whole video", floor)):
                print(
                    f"{name:40s} mAP "
                    + " ".join(f"{100 * v:6.2f}" for v in found["mAP"].values())
                    + f"  avg {100 * found['average_mAP']:6.2f}",
                    flush=True,
                )
            if args.ablate:
                for name, value in alternatives(load_run(run)[0].config.localization).items():
                    flipped = score(run, data, args.device, {name: value})
                    results[method][str(seed)][f"{name}={value}"] = flipped
                    print(
                        f"{'':8s} {name}={value}: avg {100 * flipped['average_mAP']:6.2f}, "
                        f"mAP@0.5 {100 * flipped['mAP']['0.5']:6.2f}",
                        flush=True,
                    )
    (args.out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
