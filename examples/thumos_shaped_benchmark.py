"""THUMOS-shaped benchmark: the real THUMOS14 annotation timing (410 videos, 20 classes, real durations)
with synthetic features made hard on purpose (part-only, low-contrast actions, class context beside them,
generic motion in the background; ``wtal_pipe/data/shaped.py``).

    python examples/thumos_shaped_benchmark.py OUT_DIR [--methods basnet,um,cmcs,backtal] [--device cuda]
        [--scale 1.0] [--dim 2048] [--hidden 2048] [--seed 0] [--seeds 0,1,2] [--set name=value ...] [--ablate]

``--scale`` multiplies every method's published iteration count (use < 1 on a CPU, which also switches
to lr 1e-3); ``--dim`` sets the feature size and ``--hidden`` the methods' hidden width (smaller is
faster on a CPU). ``--seed`` draws the features, ``--seeds`` the training runs. Prints one mAP row per
method and seed (final checkpoint, tIoU 0.1:0.7) and writes OUT_DIR/results.json. ``--ablate`` also
re-localizes each trained run with each official post-processing choice flipped (README, "Official
choices that one may argue with"). A run already in OUT_DIR is reused.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from wtal_pipe.data.annotations import load_annotations
from wtal_pipe.data.shaped import ShapedFeatures, write_shaped_dataset
from wtal_pipe.evaluate import THUMOS_TIOU, evaluate
from wtal_pipe.methods import get_method
from wtal_pipe.methods.settings import LocalizationSettings
from wtal_pipe.pipeline import localize_dataset
from wtal_pipe.run import load_run
from wtal_pipe.train import TrainOptions, parse_settings, train

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"


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
    parser.add_argument("--seed", type=int, default=0, help="seed of the features")
    parser.add_argument("--seeds", default="0", help="training seeds, e.g. 0,1,2")
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--set", action="append", default=[], help="method setting name=value, for every method")
    parser.add_argument("--ablate", action="store_true", help="also score each flipped official choice")
    args = parser.parse_args()
    data = args.out / "data"
    if not (data / "annotations.json").exists():
        gt, durations = FIXTURES / "thumos14_gt.json", FIXTURES / "thumos14_gt_fps_duration.json"
        write_shaped_dataset(gt, durations, data, ShapedFeatures(dim=args.dim), seed=args.seed)
    results: dict[str, dict] = {}
    for method in args.methods.split(","):
        cls = get_method(method)
        overrides = {
            "iterations": max(1, int(cls.training_defaults.iterations * args.scale)),
            "lr": 1e-3 if args.scale < 1 else 1e-4,
            **cls.narrow(args.hidden),
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
                    device=args.device,
                    simulate_clicks=cls.uses_clicks,
                    overrides=overrides,
                )
                train(options)
            result = score(run, data, args.device)
            results.setdefault(method, {})[str(seed)] = {**overrides, **result}
            print(
                f"{method:8s} seed {seed} iters {overrides['iterations']:6d}  mAP "
                + " ".join(f"{100 * v:6.2f}" for v in result["mAP"].values())
                + f"  avg {100 * result['average_mAP']:6.2f}",
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
