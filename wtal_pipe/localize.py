"""Scores -> proposals -> detections, shared by every method.

Per selected class: upsample the CAS, min-max normalize it over time, threshold it at each of the
method's thresholds, group consecutive positions into proposals and score each by outer-inner
contrast plus a share of the video-level class score; then per-class NMS, and seconds.
A method with an actionness score adds a second proposal set from thresholding that.

Deliberate fixes of published code: the class score is used as a probability (BaS-Net binarized it);
classes with index 0 are localized (``if pred.any()`` dropped them); NMS works on seconds without the
"+1" area term meant for integer frame indices.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .methods.base import Method, MethodConfig


@dataclass
class VideoScores:
    """What a method says about one whole video (numpy, no batch dimension)."""

    video_scores: np.ndarray  # (C,)
    cas: np.ndarray  # (T, C)
    actionness: np.ndarray | None  # (T,)


@torch.inference_mode()
def infer(model: Method, features: np.ndarray, device: torch.device | str = "cpu") -> VideoScores:
    """Run a trained model over a whole video's features (T, D), no sampling."""
    x = torch.from_numpy(np.array(features, np.float32)).unsqueeze(0).to(device)  # a copy: memmaps are read-only
    out = model.eval()(x)
    actionness = None if out.actionness is None else out.actionness[0].float().cpu().numpy()
    return VideoScores(out.video_scores[0].float().cpu().numpy(), out.cas[0].float().cpu().numpy(), actionness)


def upsample(signal: np.ndarray, factor: int) -> np.ndarray:
    """Linear interpolation along time (axis 0) by an integer factor (half-pixel aligned)."""
    if factor <= 1:
        return signal
    length = signal.shape[0]
    positions = np.clip((np.arange(length * factor) + 0.5) / factor - 0.5, 0, length - 1)
    low = np.floor(positions).astype(int)
    high = np.minimum(low + 1, length - 1)
    frac = (positions - low).reshape(-1, *([1] * (signal.ndim - 1)))
    return signal[low] * (1 - frac) + signal[high] * frac


def minmax(signal: np.ndarray) -> np.ndarray:
    low, high = signal.min(axis=0, keepdims=True), signal.max(axis=0, keepdims=True)
    return (signal - low) / np.maximum(high - low, 1e-8)


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end] (inclusive) of each run of True."""
    padded = np.concatenate([[False], mask, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2])]


def contrast_score(score: np.ndarray, start: int, end: int, outer_ratio: float) -> float:
    """mean(inside) - mean(outer margins of outer_ratio * length on both sides)."""
    length = end - start + 1
    margin = int(outer_ratio * length)
    inner = score[start:end + 1].mean()
    outer = np.concatenate([score[max(0, start - margin):start], score[end + 1:end + 1 + margin]])
    return float(inner - (outer.mean() if outer.size else 0.0))


def nms(segments: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Indices kept by greedy 1-D NMS on [start, end] seconds."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        inter = np.clip(np.minimum(segments[i, 1], segments[rest, 1]) - np.maximum(segments[i, 0], segments[rest, 0]),
                        0, None)
        union = (segments[i, 1] - segments[i, 0]) + (segments[rest, 1] - segments[rest, 0]) - inter
        iou = inter / np.maximum(union, 1e-8)
        order = rest[iou <= threshold]
    return np.asarray(keep, int)


def localize(scores: VideoScores, config: MethodConfig, seconds_per_row: float,
             duration: float | None = None) -> list[tuple[int, float, float, float]]:
    """Detections (class index, score, start_s, end_s) for one video, best first per class."""
    classes = np.flatnonzero(scores.video_scores >= config.class_threshold)
    if classes.size == 0:
        classes = np.array([int(np.argmax(scores.video_scores))])
    factor = max(1, config.upsample)
    cas = minmax(upsample(scores.cas[:, classes], factor))  # (T * factor, n_selected)
    proposal_sets = [(cas, config.cas_thresholds)]
    if scores.actionness is not None and config.actionness_thresholds:
        actionness = minmax(upsample(scores.actionness[:, None], factor))
        proposal_sets.append((np.repeat(actionness, classes.size, axis=1), config.actionness_thresholds))
    seconds_per_step = seconds_per_row / factor
    detections = []
    for column, c in enumerate(classes):
        found = []
        for signal, thresholds in proposal_sets:
            for threshold in thresholds:
                for start, end in runs(signal[:, column] > threshold):
                    score = (contrast_score(cas[:, column], start, end, config.outer_ratio)
                             + config.class_score_weight * float(scores.video_scores[c]))
                    found.append((score, start * seconds_per_step, (end + 1) * seconds_per_step))
        if not found:
            continue
        found_arr = np.unique(np.asarray(found), axis=0)  # thresholds often repeat a proposal
        segments, proposal_scores = found_arr[:, 1:], found_arr[:, 0]
        if duration is not None:
            segments = np.clip(segments, 0.0, duration)
        keep = (nms(segments, proposal_scores, config.nms_threshold) if config.nms_threshold is not None
                else np.argsort(-proposal_scores, kind="stable"))
        detections += [(int(c), float(proposal_scores[i]), float(segments[i, 0]), float(segments[i, 1]))
                       for i in keep]
    return detections


def detections_json(per_video: dict[str, list[tuple[int, float, float, float]]], classes: list[str],
                    external: dict | None = None) -> dict:
    """ActivityNet result format."""
    return {"version": "wtal-pipe", "results": {
        vid: [{"label": classes[c], "score": round(score, 6), "segment": [round(s, 3), round(e, 3)]}
              for c, score, s, e in dets] for vid, dets in per_video.items()},
        "external_data": external or {}}


def localize_dataset(model: Method, meta: dict, data_dir: Path, subset: str, device: str = "cpu",
                     cas_out: Path | None = None) -> dict:
    """Detections (ActivityNet JSON dict) for every video of a subset; optionally saves the raw scores
    (``cas_out``, .npz) so thresholds and NMS can be re-tuned without re-running the model."""
    from .cache import atomic_path
    from .data.dataset import Dataset
    from .errors import DataError

    dataset = Dataset(data_dir, subset, classes=meta["classes"])
    if dataset.feature_dim != meta["feature_dim"]:
        raise DataError(f"features are {dataset.feature_dim}-d but the model was trained on {meta['feature_dim']}-d",
                        "use features from the extractor the run was trained with", data_dir)
    per_video, raw = {}, {}
    for video in dataset.videos:
        scores = infer(model, video.load(), next(model.parameters()).device)
        per_video[video.vid] = localize(scores, model.config, video.seconds_per_row, video.duration)
        raw[f"{video.vid}/cas"], raw[f"{video.vid}/video_scores"] = scores.cas, scores.video_scores
        if scores.actionness is not None:
            raw[f"{video.vid}/actionness"] = scores.actionness
    if cas_out is not None:
        with atomic_path(cas_out) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **raw)
    return detections_json(per_video, meta["classes"], {"method": meta["method"], "subset": subset})


@dataclass
class ClipResult:
    clip: Path
    scores: VideoScores | None
    detections: list[tuple[int, float, float, float]]
    seconds_per_row: float
    duration: float
    error: str | None = None


def localize_clips(clips: list[Path], model: Method, meta: dict, data_dir: Path, decode_config, flow_config,
                   feature_config, workers: int, device: str = "auto", progress=None) -> list[ClipResult]:
    """Raw clips -> decode -> flow -> I3D (through the extraction cache in ``data_dir``) -> detections.

    A clip that fails to decode is reported in its result and the others go on.
    """
    from .errors import DataError, WtalError
    from .features.extract import I3DPair, extract_video
    from .features.i3d import FEATURE_DIM

    if meta["feature_dim"] != 2 * FEATURE_DIM:
        raise DataError(f"the run was trained on {meta['feature_dim']}-d features, a clip gives {2 * FEATURE_DIM}-d "
                        "two-stream I3D features", "localize with a run trained on wtal extract features",
                        meta.get("data_dir"))
    extractor = I3DPair.load(feature_config, device)
    results = []
    for clip in clips:
        try:
            _, features_path = extract_video(clip, data_dir, extractor, decode_config, flow_config, feature_config,
                                             workers, progress=progress)
        except WtalError as exc:
            results.append(ClipResult(clip, None, [], 0.0, 0.0, error=exc.one_line()))
            continue
        features = np.load(features_path)
        spr = feature_config.chunk / decode_config.fps
        duration = json.loads(features_path.with_suffix(".json").read_text())["duration"]
        scores = infer(model, features, next(model.parameters()).device)
        results.append(ClipResult(clip, scores, localize(scores, model.config, spr, duration), spr, duration))
    return results
