"""Testing a trained run, the one way ``wtal test``, ``wtal report`` and the demo do it: every video of a subset
localized from its features, the detections and raw scores written, the mAP computed where the subset has
ground truth; and raw clips localized, written and drawn beside their ground truth (``wtal localize``, the
demo). The commands only choose the inputs and print what comes back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.annotations import class_index, load_annotations, segments_of, unscored_videos
from ..data.dataset import Dataset
from ..features.config import ExtractionConfig
from ..inference.detections import DetectionTable
from ..inference.localize import Detection
from ..inference.pipeline import ClipResult, infer, localize_clips, localize_dataset
from ..layout import DataLayout
from ..methods.base import Method
from ..run import RunMeta
from .evaluate import EvaluationResult, evaluate


@dataclass
class TestResult:
    """A run tested on one subset."""

    subset: str
    detections: DetectionTable
    result: EvaluationResult | None  # None: no video of the subset has segments (labels only)
    set_aside: list[str]  # videos with labels but no segments, left out of the mAP (--skip-unannotated)
    scored: int  # videos the mAP scored
    quiet: str | None  # why some videos have no detections (no class reached the threshold), if they have none
    plots: int = 0  # figures written


def test_run(
    model: Method,
    meta: RunMeta,
    data_dir: Path,
    subset: str,
    thresholds: np.ndarray,
    *,
    skip_unannotated: bool = False,
    scores_out: Path | None = None,
    plot_dir: Path | None = None,
    on_video: Callable[[int, int], None] | None = None,
) -> TestResult:
    """Localize every video of ``subset``, keep the raw scores in ``scores_out`` (and one figure per video in
    ``plot_dir``, which needs them) and score the detections over ``thresholds``. A subset mixing videos with
    and without segments is refused before any work unless ``skip_unannotated``."""
    annotations = DataLayout(Path(data_dir)).annotations
    database = load_annotations(annotations)
    unscored = unscored_videos(database, subset, skip_unannotated, annotations)
    notes: list[str] = []
    detections = localize_dataset(
        model, meta, data_dir, subset, scores_out=scores_out, report=notes.append, on_video=on_video
    )
    plots = 0
    if plot_dir is not None and scores_out is not None:
        from .plot import plot_saved_scores

        dataset = Dataset(data_dir, subset, classes=meta.classes)
        settings = model.config.localization
        plots = plot_saved_scores(
            scores_out, detections, settings=settings, classes=meta.classes, dataset=dataset, out_dir=plot_dir
        )
    quiet = notes[0] if notes else None
    if unscored is None:
        return TestResult(subset, detections, None, [], 0, quiet, plots)
    result = evaluate(database, detections, subset, thresholds, set_aside=unscored)
    in_subset = sum(1 for entry in database.values() if entry.get("subset") == subset)
    return TestResult(subset, detections, result, unscored, in_subset - len(unscored), quiet, plots)


def whole_video_detections(model: Method, meta: RunMeta, data_dir: Path, subset: str) -> DetectionTable:
    """What a detector that only classifies would report: each video's top class over the whole video, scored
    by its video score. Its mAP is the floor localization must beat (on ActivityNet, actions fill most of a
    video; on a user's own clips, often too)."""
    detections = DetectionTable(meta.classes)
    for video in Dataset(data_dir, subset, classes=meta.classes).videos:
        rows = video.load()
        scores = infer(model, rows).video_scores
        top = int(scores.argmax())
        detections.add(video.vid, [Detection(top, float(scores[top]), 0.0, video.timing(rows.shape[0]).duration)])
    return detections


@dataclass
class ClipReport:
    """One raw clip localized: the result (or its failure) and the figure drawn of it, if any."""

    clip: ClipResult
    plot: Path | None


def localize_clip_files(
    clips: list[Path],
    model: Method,
    meta: RunMeta,
    extraction: ExtractionConfig,
    *,
    cache_dir: Path,
    workers: int,
    device: str,
    out: Path,
    plot: Path | None = None,
    truth: dict | None = None,
    external: dict | None = None,
) -> list[ClipReport]:
    """Raw clips -> features (through the cache in ``cache_dir``) -> detections written to ``out``, and with
    ``plot`` a figure per clip (``name_<clip>.png`` when several) with its ground truth from ``truth`` (an
    annotation database). A clip that fails is reported in its entry; the others go on."""
    results = localize_clips(clips, model, meta, extraction, cache_dir=cache_dir, workers=workers, device=device)
    per_video = {r.clip.stem: r.result.detections for r in results if r.result is not None}
    DetectionTable.of(per_video, meta.classes, external).write_json(out)
    reports = []
    for r in results:
        target = None
        if plot is not None and r.result is not None:
            from .plot import plot_video

            target = plot if len(results) == 1 else plot.with_name(f"{plot.stem}_{r.clip.stem}{plot.suffix}")
            segments = segments_of((truth or {}).get(r.clip.stem, {}), class_index(meta.classes))
            plot_video(
                target,
                title=r.clip.name,
                localized=r.result,
                classes=meta.classes,
                settings=model.config.localization,
                truth=segments,
            )
        reports.append(ClipReport(r, target))
    return reports
