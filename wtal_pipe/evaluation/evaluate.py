"""ActivityNet-protocol detection mAP (the metric of every WTAL paper's table), vectorized.

Per class and tIoU threshold: detections sorted by score (descending); each takes the not yet matched
ground truth of its video with the highest tIoU >= threshold (TP), else it is a FP (so duplicates are
FPs); AP is the area under the monotone precision envelope at every recall point. mAP averages over
the ground truth's classes; a class without detections scores 0. A detection on a video without
ground truth of its class is a FP, whether or not the video is in the subset (the reference rule); only
videos an evaluation sets aside on purpose (labels without segments, ``--skip-unannotated``) take their
detections with them, and those are counted. Ties are broken exactly as the reference implementation
(``argsort()[::-1]`` on scores and on tIoUs), so per-class AP matches it to float precision.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.annotations import class_index, load_annotations, unscored_videos
from ..errors import DataError
from ..inference.detections import DetectionTable
from ..inference.localize import Detection
from ..intervals import tiou

THUMOS_TIOU = tuple(np.round(np.arange(0.1, 0.75, 0.1), 2))


def interpolated_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """Area under the monotone precision envelope (all points)."""
    mprec = np.concatenate([[0.0], precision, [0.0]])
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mprec = np.maximum.accumulate(mprec[::-1])[::-1]
    idx = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx]))


def average_precision(
    gt_videos: np.ndarray,
    gt_segments: np.ndarray,
    det_videos: np.ndarray,
    det_segments: np.ndarray,
    det_scores: np.ndarray,
    thresholds: np.ndarray,
) -> np.ndarray:
    """AP at each threshold for one class. Videos are integer ids; returns (n_thresholds,)."""
    n_gt = len(gt_videos)
    if n_gt == 0:
        return np.zeros(len(thresholds))
    if len(det_scores) == 0:
        return np.zeros(len(thresholds))
    order = det_scores.argsort()[::-1]
    det_videos, det_segments = det_videos[order], det_segments[order]
    tp = np.zeros((len(thresholds), len(order)))
    indices: dict[int, list[int]] = {}
    for index, video in enumerate(gt_videos):
        indices.setdefault(int(video), []).append(index)
    gt_by_video = {v: np.asarray(ix) for v, ix in indices.items()}
    locked = np.zeros((len(thresholds), n_gt), bool)
    for d in range(len(order)):
        candidates = gt_by_video.get(int(det_videos[d]))
        if candidates is None:
            continue
        ious = tiou(det_segments[d], gt_segments[candidates])
        ranked = ious.argsort()[::-1]
        ranked_gt = candidates[ranked]
        # the first ranked GT that is free; it must clear the threshold, else this detection is a FP
        eligible = (ious[ranked][None, :] >= thresholds[:, None]) & ~locked[:, ranked_gt]  # (n_thr, n_cand)
        # walking the ranking stops at the first tIoU below threshold: later free GTs are never reached
        first_free = eligible.argmax(axis=1)
        hit = eligible.any(axis=1)
        tp[hit, d] = 1
        locked[np.flatnonzero(hit), ranked_gt[first_free[hit]]] = True
    tp_cum = np.cumsum(tp, axis=1)
    fp_cum = np.cumsum(1 - tp, axis=1)
    recall = tp_cum / n_gt
    precision = tp_cum / (tp_cum + fp_cum)
    return np.array([interpolated_ap(precision[t], recall[t]) for t in range(len(thresholds))])


@dataclass
class EvaluationResult:
    thresholds: np.ndarray  # (n_thr,)
    classes: list[str]
    ap: np.ndarray  # (n_classes, n_thr)
    ignored: dict[str, int] = field(default_factory=dict)  # detections of known classes without GT in the subset
    set_aside: tuple[int, int] = (0, 0)  # (videos, their detections) left out on purpose (labels, no segments)

    @property
    def map_per_threshold(self) -> np.ndarray:
        return self.ap.mean(axis=0)

    @property
    def average_map(self) -> float:
        return float(self.map_per_threshold.mean())

    def to_dict(self) -> dict:
        return {
            "tiou": [float(t) for t in self.thresholds],
            "mAP": {f"{t:g}": float(m) for t, m in zip(self.thresholds, self.map_per_threshold, strict=True)},
            "average_mAP": self.average_map,
            "per_class_AP": {
                c: {f"{t:g}": float(a) for t, a in zip(self.thresholds, row, strict=True)}
                for c, row in zip(self.classes, self.ap, strict=True)
            },
        }

    def table(self) -> str:
        head = " ".join(f"{t:>6.2f}" for t in self.thresholds)
        vals = " ".join(f"{100 * m:6.2f}" for m in self.map_per_threshold)
        notes = []
        if self.ignored:
            notes.append(
                f"(not counted: {sum(self.ignored.values())} detections of {len(self.ignored)} class(es) "
                f"without ground truth in this subset: {', '.join(sorted(self.ignored))})"
            )
        if self.set_aside[0]:
            videos, detections = self.set_aside
            notes.append(f"(set aside: {detections} detections on {videos} video(s) with labels but no segments)")
        return "\n".join([f"tIoU {head}    avg\nmAP  {vals} {100 * self.average_map:6.2f}", *notes])


def evaluate(
    ground_truth: dict,
    detections: DetectionTable,
    subset: str,
    thresholds=THUMOS_TIOU,
    set_aside: Collection[str] = (),
) -> EvaluationResult:
    """mAP of ``detections`` against a GT ``database`` dict (a result file: :func:`read_detections` first).

    Detections of a class without ground truth in ``subset`` do not count (mAP is over the GT's classes)
    and are tallied in ``ignored``. ``set_aside`` names videos left out of the evaluation, ground truth and
    detections alike (counted in the result); a detection on any other video without ground truth is a false
    positive.
    """
    thresholds = np.asarray(thresholds, float)
    aside = set(set_aside)
    classes, video_index, gt = _ground_truth_rows(
        {vid: v for vid, v in ground_truth.items() if vid not in aside}, subset
    )
    det, ignored, dropped = _table_rows(detections, classes, video_index, aside)
    ap = np.zeros((len(classes), len(thresholds)))
    for c in range(len(classes)):
        g = gt[gt[:, 0] == c]
        d = det[det[:, 0] == c]
        ap[c] = average_precision(g[:, 1].astype(int), g[:, 2:4], d[:, 1].astype(int), d[:, 2:4], d[:, 4], thresholds)
    return EvaluationResult(thresholds, classes, ap, ignored, (len(aside), dropped))


def read_detections(
    detections: dict, ground_truth: dict, known_classes: list[str] | None = None, path: str | Path | None = None
) -> DetectionTable:
    """An ActivityNet result file's contents as a table, every value as the file has it. A label must be a
    class of the ground truth (any subset) or of ``known_classes`` (a run's): any other is a one-line error,
    since a typo would silently score 0."""
    results = detections.get("results")
    if not isinstance(results, dict):
        raise DataError('no "results" object', "pass ActivityNet-format detections", path)
    known = {label for v in ground_truth.values() for label in _labels(v)} | set(known_classes or [])
    index: dict[str, int] = {}
    table = DetectionTable([])
    for vid, found in results.items():
        if not isinstance(found, list):
            raise DataError(f"video {vid}: detections are not a list", DETECTIONS_FORMAT, path)
        rows = []
        for det in found:
            start, end, score = _detection(vid, det, path)
            label = det.get("label")
            if label not in known:
                raise DataError(
                    f"video {vid}: label {label!r} is not a class of the ground truth",
                    "fix the label, or pass the annotation file it belongs to",
                    path,
                )
            rows.append(Detection(index.setdefault(label, len(index)), score, start, end))
        table.add(vid, rows, rounded=False)
    table.classes = list(index)
    return table


def _labels(video: dict) -> list[str]:
    return list(video.get("labels", [])) + [a["label"] for a in video.get("annotations", [])]


def _ground_truth_rows(ground_truth: dict, subset: str) -> tuple[list[str], dict[str, int], np.ndarray]:
    """The subset's classes (in order of appearance), an index of its videos, and its segments as rows
    (class, video, start, end)."""
    classes: dict[str, int] = {}
    video_index: dict[str, int] = {}
    rows = []
    for vid, video in ground_truth.items():
        if video.get("subset") != subset:
            continue
        video_index.setdefault(vid, len(video_index))
        for ann in video.get("annotations", []):
            c = classes.setdefault(ann["label"], len(classes))
            rows.append((c, video_index[vid], *map(float, ann["segment"])))
    if not classes:
        raise DataError(f"no ground truth in subset {subset!r}", "check --subset")
    return list(classes), video_index, np.asarray(rows, float).reshape(-1, 4)


def _table_rows(
    table: DetectionTable, classes: list[str], video_index: dict[str, int], aside: set[str]
) -> tuple[np.ndarray, dict[str, int], int]:
    """A run's detections as rows (class, video, start, end, score) in the order they were added, as the
    result file would give them; the run's classes without ground truth here are tallied in ``ignored``,
    the detections on set-aside videos counted."""
    video, label, score, start, end = table.columns()
    wanted = np.array([vid not in aside for vid in table.videos], bool)
    # videos outside the GT get new indices: their detections are FPs
    table_to_gt = np.full(len(table.videos), -1, np.int64)
    for i in np.flatnonzero(wanted):
        table_to_gt[i] = video_index.setdefault(table.videos[i], len(video_index))
    gt_class = class_index(classes)
    target = np.array([gt_class.get(name, -1) for name in table.classes], dtype=np.int64)[label]
    keep = wanted[video]
    ignored = {
        table.classes[run_class]: int(count)
        for run_class, count in zip(*np.unique(label[keep & (target < 0)], return_counts=True), strict=True)
    }
    counted = keep & (target >= 0)
    columns = [target[counted], table_to_gt[video[counted]], start[counted], end[counted], score[counted]]
    return np.stack(columns, axis=1).astype(float).reshape(-1, 5), ignored, int((~keep).sum())


DETECTIONS_FORMAT = 'expected {"results": {vid: [{"label": ..., "score": number, "segment": [start_s, end_s]}]}}'


def _detection(vid: str, det: object, path: str | Path | None) -> tuple[float, float, float]:
    """(start, end, score) of one detection, or a one-line error naming the video and the file."""
    try:
        start, end = (float(v) for v in det["segment"])  # type: ignore[index]
        score = float(det["score"])  # type: ignore[index]
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"video {vid}: malformed detection {det!r}", DETECTIONS_FORMAT, path) from exc
    if not (math.isfinite(start) and math.isfinite(end) and math.isfinite(score)) or start > end:
        raise DataError(
            f"video {vid}: detection {det!r} needs finite numbers and start <= end", "fix the detection", path
        )
    return start, end, score


def evaluate_files(
    detections_path: str | Path,
    gt_path: str | Path,
    subset: str,
    thresholds=THUMOS_TIOU,
    skip_unannotated: bool = False,
) -> EvaluationResult:
    detections_path = Path(detections_path)
    if not detections_path.exists():
        raise DataError("detections file not found", "run wtal test or wtal localize first", detections_path)
    try:
        detections = json.loads(detections_path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(
            f"not JSON ({exc.__class__.__name__})", "pass an ActivityNet-format detection file", detections_path
        ) from exc
    if not isinstance(detections, dict):
        raise DataError(f"a {type(detections).__name__} at the top level", DETECTIONS_FORMAT, detections_path)
    database = load_annotations(gt_path)
    unscored = unscored_videos(database, subset, skip_unannotated, gt_path)
    if unscored is None:
        raise DataError(f"no video of subset {subset!r} has segments: there is no ground truth to score", "", gt_path)
    table = read_detections(detections, database, path=detections_path)
    return evaluate(database, table, subset, thresholds, set_aside=unscored)
