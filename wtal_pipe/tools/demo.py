"""``wtal demo``: a generated labelled video set run through every stage, leaving all artifacts.

The videos are textured scenes filmed by a slowly panning camera that pauses now and then (the
static stretches the hard-negative stage finds); the planted actions are coloured shapes with their
own shape and motion. No pretrained weights exist offline, so I3D runs on random weights: colour,
form and motion still give separable features (the demo's mAP measures that they do).
For speed the demo uses DIS flow and 64x64 frames instead of the published TV-L1 at 224x224.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..device import fixed_threads
from ..features.config import ExtractionConfig
from ..video.decode import DecodeConfig
from ..video.flow_engines import FlowConfig
from .synthetic import ACTION_STYLES, PlantedAction, render_frames, write_video

if TYPE_CHECKING:
    from ..evaluation.evaluate import EvaluationResult
    from ..training.train import TrainOptions

DEMO_CLASSES = ACTION_STYLES[:3]
FPS = 25.0
#: torch threads of every demo step, whatever the machine's cores (a sum split over another number of
#: threads rounds differently; with this, the demo's numbers depend on the CPU type only)
DEMO_THREADS = 2
#: the demo's extraction: DIS flow and 64x64 frames for speed, random I3D weights
DEMO_EXTRACTION = ExtractionConfig(DecodeConfig(short_side=64, crop=64), FlowConfig("dis"))


def make_video_set(out: Path, n_videos: int, seconds: float, seed: int, size=(128, 96)) -> dict:
    """Write ``n_videos`` clips (3/4 train, 1/4 test) and return their annotation database."""
    rng = np.random.default_rng(seed)
    database = {}
    n_test = max(1, n_videos // 4)
    for index in range(n_videos):
        subset = "test" if index >= n_videos - n_test else "train"
        vid = f"demo_{subset}_{index:03d}"
        classes = rng.choice(len(DEMO_CLASSES), size=int(rng.integers(1, 3)), replace=False)
        actions, cursor = [], float(rng.uniform(0.5, 1.5))
        pause = None
        for slot in range(int(rng.integers(2, 4))):
            length = float(rng.uniform(2.0, 3.5))
            if cursor + length > seconds - 0.5:
                break
            if pause is None and slot == 1 and cursor + 2.5 + length < seconds - 0.5:
                pause = (round(cursor, 2), round(cursor + 2.4, 2))  # the camera stops between two actions
                cursor += 2.6
            style = DEMO_CLASSES[int(classes[slot % len(classes)])]
            actions.append(PlantedAction(style, round(cursor, 2), round(cursor + length, 2)))
            cursor += length + float(rng.uniform(1.0, 2.0))
        frames = render_frames(
            seconds,
            FPS,
            size[0],
            size[1],
            actions,
            seed=int(rng.integers(1 << 30)),
            pan=1.0,
            pauses=[pause] if pause else [],
        )
        write_video(out / f"{vid}.mkv", frames, fps=FPS, codec="ffv1")  # lossless: every machine decodes the same
        database[vid] = {
            "subset": subset,
            "duration": seconds,
            "annotations": [{"label": a.style.name, "segment": [a.start, a.end]} for a in actions],
        }
    return database


def run_demo(
    out: str | Path,
    *,
    n_videos: int = 24,
    seconds: float = 14.0,
    iterations: int = 400,
    seed: int = 0,
    print_fn: Callable = print,
    warn_fn: Callable = print,
) -> EvaluationResult:
    """Generate, extract, build negatives, train CMCS, test, localize one clip and plot; returns the
    test-set :class:`EvaluationResult`."""
    from ..cache import atomic_write_json
    from ..layout import DataLayout

    out = Path(out)
    data, videos = out / "data", out / "videos"
    started = time.perf_counter()
    print_fn(f"[1/6] generating {n_videos} labelled videos in {videos}")
    database = make_video_set(videos, n_videos, seconds, seed)
    atomic_write_json(DataLayout(data).annotations, {"database": database})

    print_fn(
        "[2/6] extracting features (demo settings for speed: DIS flow, 64x64 frames; the published "
        "convention is TV-L1 at 224x224)"
    )
    warn_fn(
        "the demo's I3D runs on RANDOM weights (none can be downloaded here); the planted actions differ in "
        "colour, shape and motion so even random features separate them."
    )
    clips = sorted(videos.glob("*.mkv"))
    with fixed_threads(DEMO_THREADS):
        result = _pipeline(clips, database, out, iterations=iterations, seed=seed, print_fn=print_fn)
    print_fn(
        f"\nCMCS on the demo's {len(result.classes)} classes, {sum(v['subset'] == 'test' for v in database.values())} "
        f"test videos:\n{result.table()}"
    )
    print_fn(
        f"\neverything is in {out}/ (videos/, data/, run/, dets_test.json, plots/, localize_clip.png); "
        f"{time.perf_counter() - started:.0f} s"
    )
    return result


def _pipeline(
    clips: list[Path], database: dict, out: Path, *, iterations: int, seed: int, print_fn: Callable
) -> EvaluationResult:
    """Steps 2-6 on the generated clips: extract, negatives, train, test, localize one clip."""
    from ..data.negatives import build_negatives
    from ..training.train import train

    data, run = out / "data", out / "run"
    _extract(clips, data)

    print_fn("[3/6] hard negatives from the camera's pauses")
    made = [r.status != "skipped" for r in build_negatives(data)]
    print_fn(f"      {sum(made)} pseudo videos from {len(made)} training videos")

    print_fn(f"[4/6] training CMCS ({iterations} steps, lr 1e-3, 2 videos per step, standardized features)")
    shutil.rmtree(run, ignore_errors=True)  # the demo's own run of an earlier call
    train(demo_training(data, run, iterations, seed))

    print_fn("[5/6] testing on the held-out videos")
    result = demo_test(run, data, out)

    clip = next(c for c in clips if database[c.stem]["subset"] == "test")
    print_fn(f"[6/6] wtal localize {clip.name} (decode -> flow -> I3D through the cache -> model)")
    _localize_clip(clip, run, data, out, database, print_fn)
    return result


def demo_training(data: Path, run: Path, iterations: int, seed: int) -> TrainOptions:
    """How the demo trains: CMCS, lr 1e-3, two whole videos a step, standardized features, on the CPU."""
    from ..training.train import TrainOptions

    overrides = {"iterations": iterations, "lr": 1e-3, "accumulate": 2, "normalize_features": True}
    return TrainOptions("cmcs", data, run, seed=seed, device="cpu", overrides=overrides)


def _extract(clips: list[Path], data: Path) -> None:
    from ..errors import WtalError
    from ..features.extract import ExtractJob, extract_all
    from ..features.two_stream import I3DPair
    from ..video.flow import default_workers

    extractor = I3DPair.load(DEMO_EXTRACTION.features, "auto")
    outcomes = extract_all(clips, ExtractJob.of(data, DEMO_EXTRACTION, workers=default_workers()), extractor)
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        raise WtalError(f"demo extraction failed: {failed[0].error}")


def demo_test(run: Path, data: Path, out: Path) -> EvaluationResult:
    """``wtal test`` of the demo's run: detections, raw scores, plots and the mAP table."""
    from ..evaluation.evaluate import THUMOS_TIOU
    from ..evaluation.testing import test_run
    from ..run import load_run

    model, meta = load_run(run)
    scores = out / "dets_test.cas.npz"
    tested = test_run(model, meta, data, "test", np.asarray(THUMOS_TIOU), scores_out=scores, plot_dir=out / "plots")
    tested.detections.write_json(out / "dets_test.json")
    assert tested.result is not None  # the demo's test videos have segments
    return tested.result


def _localize_clip(clip: Path, run: Path, data: Path, out: Path, database: dict, print_fn: Callable) -> None:
    """``wtal localize`` of one held-out clip from its raw video, with a plot."""
    from ..errors import WtalError
    from ..evaluation.testing import localize_clip_files
    from ..run import load_run
    from ..video.flow import default_workers

    model, meta = load_run(run)
    [report] = localize_clip_files(
        [clip],
        model,
        meta,
        DEMO_EXTRACTION,
        cache_dir=data,
        workers=default_workers(),
        device="auto",
        out=out / "localize_clip.json",
        plot=out / "localize_clip.png",
        truth=database,
    )
    if report.clip.result is None:
        raise WtalError(f"demo localization failed: {report.clip.error}")
    for detection in sorted(report.clip.result.detections, key=lambda d: -d.score)[:5]:
        name = meta.classes[detection.label]
        print_fn(f"      {name:<24} {detection.start:6.2f} - {detection.end:6.2f} s  score {detection.score:.3f}")
    entry = database[clip.stem]
    print_fn(
        "      truth: "
        + ", ".join(f"{a['label']} {a['segment'][0]:g}-{a['segment'][1]:g} s" for a in entry["annotations"])
    )
