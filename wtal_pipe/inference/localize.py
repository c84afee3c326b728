"""Scores -> proposals -> detections, shared by every method (pure NumPy, no model, no files).

Per selected class: normalize the CAS over time, resample it onto a finer grid, threshold it at each of
the method's thresholds, group consecutive grid points into proposals, score each by outer-inner
contrast plus a share of the video-level class score; a method with an actionness score adds a
second proposal set from thresholding that; then seconds (optionally shrunk, plus a whole-video
proposal: BackTAL on ActivityNet) and per-class NMS.

The four official implementations differ in every one of these steps (normalization, grid geometry,
rounding of the outer region, the NMS overlap), and the differences move mAP by points, so each is a
config setting whose default is what that method's official code does. Proposals are scored for all
runs of a threshold at once from prefix sums, so a THUMOS14-length test set localizes in seconds.

Always fixed (real bugs, not choices): a video whose only selected class has index 0 is localized
(BaS-Net's ``if pred.any()``), a proposal starting at grid point 0 alone is kept (``any(position)``),
and a class without proposals does not crash.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..data.timing import VideoTiming
from ..intervals import runs_2d
from ..methods.settings import LocalizationSettings


class Detection(NamedTuple):
    """One detection, the shape every stage passes on (a table of many: ``detections.DetectionTable``)."""

    label: int  # class index
    score: float
    start: float  # seconds
    end: float


@dataclass
class VideoScores:
    """What a method says about one whole video at its test-time input length (numpy, no batch)."""

    video_scores: np.ndarray  # (C,)
    cas: np.ndarray  # (T_in, C), before normalization
    actionness: np.ndarray | None  # (T_in,) in [0, 1]


def normalize(signal: np.ndarray, mode: str) -> np.ndarray:
    """Per column over time (axis 0), in the signal's own precision (the official code normalizes
    float32 tensors, and proposals at tiny values depend on it).

    ``relu-minmax``: the official BaS-Net/BackTAL ``minmax_norm``: min and max clipped at 0 from
    below, a non-positive range replaced by 1, the result not clipped; ``relu-minmax-clip``: the same,
    clipped to [0, 1] (UM); ``minmax``: a true min-max (CMCS ``normalize``); ``none``: as it is (CASE
    localizes a mean of probabilities).
    """
    signal = np.asarray(signal)
    if mode == "none":
        return signal
    low, high = signal.min(axis=0, keepdims=True), signal.max(axis=0, keepdims=True)
    if mode != "minmax":
        low, high = np.maximum(low, 0), np.maximum(high, 0)
    delta = high - low
    out = (signal - low) / np.where(delta > 0, delta, 1).astype(signal.dtype)
    return np.clip(out, 0, 1) if mode == "relu-minmax-clip" else out


@dataclass(frozen=True)
class GridTime:
    """Grid index -> seconds as ``index / divisor * scale``, the arithmetic of the official code (segment
    ends that differ in the last bit flip NMS decisions at exactly the threshold), plus ``offset`` for rows
    that overlap (``VideoTiming.offset``; 0 leaves the official arithmetic untouched)."""

    divisor: float
    scale: float
    offset: float = 0.0

    def __call__(self, index: np.ndarray) -> np.ndarray:
        seconds = np.asarray(index, np.float64) / self.divisor * self.scale
        return seconds + self.offset if self.offset else seconds


def resample(signal: np.ndarray, config: LocalizationSettings, timing: VideoTiming) -> tuple[np.ndarray, GridTime]:
    """(T_in, K) scores -> (N, K) on the localization grid, and how grid indices map to seconds.

    ``starts-extrapolated`` (BaS-Net/UM ``upgrade_resolution``): rows are chunk starts, ``factor * T``
    points at ``j / factor``, the last ``factor - 1`` extrapolated; ``starts-inclusive`` (CMCS
    ``interpolate``): from the first to the last chunk start, ``factor * (T - 1) + 1`` points; both with
    scipy's ``interp1d`` as the official code. ``centres`` (BackTAL): rows are chunk centres, OpenCV's
    linear resize, one class at a time as the official code. ``upsample="frames"`` gives one point per
    video frame: ``frames_per_step`` per row (rounded), or the frame count for ``centres``.
    """
    import cv2
    from scipy.interpolate import interp1d

    t_in = signal.shape[0]
    per_row = timing.frames_per_step
    fps = per_row / timing.seconds_per_row  # frame rate of the feature grid
    factor = max(1, round(per_row)) if config.upsample == "frames" else int(config.upsample)
    if config.resample == "centres":  # BackTAL: index / frame_num * duration
        n = max(1, timing.frame_count) if config.upsample == "frames" else factor * t_in
        whole = config.upsample == "frames"  # the grid spans the video itself: overlapping rows need no offset
        span = timing.duration if whole else timing.rows * timing.seconds_per_row
        columns = [
            cv2.resize(np.ascontiguousarray(signal[:, k][None], np.float32), (n, 1), interpolation=cv2.INTER_LINEAR)[0]
            for k in range(signal.shape[1])
        ]
        return np.stack(columns, axis=1).astype(np.float64), GridTime(n, span, 0.0 if whole else timing.offset)
    if config.resample == "starts-extrapolated":  # BaS-Net/UM: index * (16 v_len) / (scale T_in fps)
        knots, points = np.arange(t_in), np.arange(0, t_in, 1 / factor)
        time = GridTime(1.0, (per_row * timing.rows) / (factor * t_in * fps), timing.offset)
    else:  # CMCS: frame index / fps
        knots, points = np.arange(t_in) * factor, np.arange(factor * (t_in - 1) + 1)
        time = GridTime(fps * factor / per_row * t_in / timing.rows, 1.0, timing.offset)
    if t_in == 1:  # a single row has no slope (the official code cannot interpolate it)
        return np.repeat(np.asarray(signal, np.float64), points.size, axis=0), time
    fill = "extrapolate" if config.resample == "starts-extrapolated" else np.nan
    values = interp1d(knots, signal, kind="linear", axis=0, fill_value=fill)(points)
    return np.asarray(values, np.float64), time


def dilate(mask: np.ndarray, width: int) -> np.ndarray:
    """Dilate runs of True along the last axis by a ``width``-point footprint: ``width // 2`` points
    before and the rest after (skimage's ``dilation`` with an even column footprint, as CMCS uses)."""
    if width <= 1:
        return mask
    before, after = width // 2, width - 1 - width // 2
    counts = np.concatenate([np.zeros((*mask.shape[:-1], 1)), np.cumsum(mask, axis=-1)], axis=-1)
    n = mask.shape[-1]
    idx = np.arange(n)
    hi, lo = np.minimum(idx + before + 1, n), np.maximum(idx - after, 0)
    return (counts[..., hi] - counts[..., lo]) > 0


def outer_bounds(
    start: np.ndarray, end: np.ndarray, n: int, ratio: float, convention: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """[left_lo, left_hi) and [right_lo, right_hi) of each proposal's outer region (``end`` inclusive).

    ``through-reach`` (BaS-Net/UM ``get_proposal_oic``): ``int(start - r L)`` before, through ``int(end + r L)``
    after; ``before-reach`` (BackTAL): the same before, up to but excluding ``int(end + r L)`` after;
    ``one-point-minimum`` (CMCS ``mask_to_detections``): at least one point each side, and an empty left region
    when it would reach past the start (the official negative slice).
    """
    length = end - start + 1
    reach = ratio * length
    if convention == "one-point-minimum":
        stop = end + 1
        left_lo = np.minimum(np.trunc(start - reach), start - 1).astype(np.int64)
        left_hi = np.where(left_lo < 0, 0, start)
        left_lo = np.maximum(left_lo, 0)
        right_hi = np.minimum(np.maximum(np.trunc(stop + reach).astype(np.int64), stop + 1), n)
        return left_lo, left_hi, stop, right_hi
    left_lo = np.maximum(0, np.trunc(start - reach)).astype(np.int64)
    right_reach = np.trunc(end + reach).astype(np.int64)
    right_hi = np.minimum(n - 1, right_reach) + 1 if convention == "through-reach" else np.minimum(n, right_reach)
    return left_lo, start, end + 1, np.maximum(right_hi, end + 1)


def proposals(
    mask_signal: np.ndarray,
    thresholds: np.ndarray,
    score_signal: np.ndarray,
    thresholded_scores: bool,
    config: LocalizationSettings,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start, end inclusive, contrast) of every proposal of one class from one signal.

    A grid point is in a proposal at threshold ``th`` when ``mask_signal >= th`` and ``> 0`` (the
    official ``cas[cas < th] = 0; cas > 0``). The contrast is the mean of ``score_signal`` inside minus
    the mean over the outer region (0 if empty), with ``score_signal`` zeroed below the threshold when
    ``thresholded_scores``. Order: threshold by threshold, in time (the official order, which NMS ties
    depend on).
    """
    n = mask_signal.shape[0]
    mask = (mask_signal[None, :] >= thresholds[:, None]) & (mask_signal[None, :] > 0)  # (K, N)
    mask = dilate(mask, config.mask_dilation)
    which, start, end = runs_2d(mask)
    keep = end - start + 1 >= config.min_proposal_length
    which, start, end = which[keep], start[keep], end[keep]
    if thresholded_scores:
        scored = np.where(score_signal[None, :] >= thresholds[:, None], score_signal[None, :], 0.0)  # (K, N)
    else:
        scored = score_signal[None, :]
        which = np.zeros_like(which)
    prefix = np.zeros((scored.shape[0], n + 1))
    np.cumsum(scored, axis=1, out=prefix[:, 1:])
    left_lo, left_hi, right_lo, right_hi = outer_bounds(start, end, n, config.outer_ratio, config.outer_region)
    inner = (prefix[which, end + 1] - prefix[which, start]) / (end - start + 1)
    outer_sum = (prefix[which, left_hi] - prefix[which, left_lo]) + (prefix[which, right_hi] - prefix[which, right_lo])
    outer_len = (left_hi - left_lo) + (right_hi - right_lo)
    outer = np.where(outer_len > 0, outer_sum / np.maximum(outer_len, 1), 0.0)
    return start, end, inner - outer


def nms(
    segments: np.ndarray, scores: np.ndarray, threshold: float, plus_one: bool = False, soft_alpha: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Indices kept by greedy 1-D NMS on [start, end] seconds, and their scores: a proposal survives while its
    tIoU with every kept one is below ``threshold``. ``plus_one`` adds 1 to lengths and overlaps (the official
    code, written for frame indices). ``soft_alpha`` (CASE's ``basnet_nms`` with ``soft_nms``): each proposal a
    kept one suppresses is kept too, after all survivors, its score x exp(-tIoU^2 / alpha)."""
    extra = 1.0 if plus_one else 0.0
    lengths = segments[:, 1] - segments[:, 0] + extra
    order = scores.argsort()[::-1]
    keep, kept_scores, suppressed, decayed = [], [], [], []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        kept_scores.append(scores[i])
        inter = np.maximum(
            0.0, np.minimum(segments[i, 1], segments[rest, 1]) - np.maximum(segments[i, 0], segments[rest, 0]) + extra
        )
        iou = inter / np.maximum(lengths[i] + lengths[rest] - inter, 1e-12)
        if soft_alpha is not None:
            hit = iou >= threshold
            suppressed += rest[hit].tolist()
            decayed += (scores[rest[hit]] * np.exp(-np.square(iou[hit]) / soft_alpha)).tolist()
        order = rest[iou < threshold]
    return np.asarray(keep + suppressed, np.int64), np.asarray(kept_scores + decayed, np.float64)


def selected_classes(video_scores: np.ndarray, config: LocalizationSettings) -> np.ndarray:
    """The classes a video is localized for: those at or above the class threshold, else (UM) the top one."""
    classes = np.flatnonzero(video_scores >= config.class_threshold)
    if classes.size == 0 and config.argmax_fallback:
        classes = np.array([int(np.argmax(video_scores))])
    return classes


def shown_classes(video_scores: np.ndarray, config: LocalizationSettings, also: Iterable[int] = ()) -> np.ndarray:
    """The classes a picture of a video shows: the selected ones and ``also`` (detected, annotated), else
    the top-scoring one, so there is always something to look at."""
    shown = sorted(set(selected_classes(video_scores, config).tolist()) | set(also))
    return np.asarray(shown or [int(np.argmax(video_scores))], np.int64)


def localization_signals(
    scores: VideoScores, config: LocalizationSettings, timing: VideoTiming, classes: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None, GridTime]:
    """The normalized CAS of ``classes`` and the actionness, on the grid (N, len(classes)) / (N,), and
    the grid's time mapping (what the localizer thresholds, and what the plots draw)."""
    cas, time = resample(normalize(scores.cas[:, classes], config.cas_normalization), config, timing)
    actionness = None
    if scores.actionness is not None and config.actionness_thresholds:
        actionness = resample(np.asarray(scores.actionness)[:, None], config, timing)[0][:, 0]
    return cas, actionness, time


def localize(
    scores: VideoScores,
    config: LocalizationSettings,
    timing: VideoTiming,
    classes: Sequence[int] | np.ndarray | None = None,
) -> list[Detection]:
    """Detections (class index, score, start_s, end_s) for one video, per class in NMS order; ``classes``
    (default: those the video scores select) are the classes to localize (known labels: pseudo labels)."""
    classes = selected_classes(scores.video_scores, config) if classes is None else np.asarray(classes, np.int64)
    if classes.size == 0:
        return []
    cas, actionness, time = localization_signals(scores, config, timing, classes)
    detections: list[Detection] = []
    for column, c in enumerate(classes):
        signal = cas[:, column]
        thresholds = np.asarray(config.cas_thresholds, np.float64)
        if config.thresholds_relative_to_mean:
            thresholds = thresholds * signal.mean()
        found = [proposals(signal, thresholds, signal, config.contrast_on_thresholded, config)]
        if actionness is not None:
            found.append(
                proposals(actionness, np.asarray(config.actionness_thresholds, np.float64), signal, False, config)
            )
        start = np.concatenate([f[0] for f in found])
        if start.size == 0:
            continue
        end = np.concatenate([f[1] for f in found])
        class_score = 1.0 if config.binarize_class_score else float(scores.video_scores[c])
        score = np.concatenate([f[2] for f in found]) + config.class_score_weight * class_score
        segments = np.stack([time(start), time(end + 1)], axis=1)
        if config.clip_to_duration:
            segments = np.clip(segments, 0.0, timing.duration)
        if config.proposal_shrink:
            cut = (segments[:, 1] - segments[:, 0]) * config.proposal_shrink
            segments = np.stack([segments[:, 0] + cut, segments[:, 1] - cut], axis=1)
        if config.whole_video_score is not None:  # BackTAL on ActivityNet; NMS keeps one of its official copies
            segments = np.concatenate([segments, [[0.0, timing.duration]]])
            score = np.append(score, config.whole_video_score)
        keep, kept_score = (
            (np.arange(score.size), score)
            if config.nms_threshold is None
            else nms(segments, score, config.nms_threshold, config.nms_plus_one, config.soft_nms_alpha)
        )
        detections += [
            Detection(int(c), float(s), float(segments[i, 0]), float(segments[i, 1]))
            for i, s in zip(keep, kept_score, strict=True)
        ]
    return detections
