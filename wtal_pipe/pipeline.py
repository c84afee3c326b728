"""Trained model + videos -> detections: the test set of a DATA_DIR (``wtal test``) or raw clips
(``wtal localize``: decode -> flow -> I3D through the extraction cache first)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .cache import atomic_path
from .config import ExtractionConfig
from .data.dataset import Dataset, VideoTiming
from .data.sampling import inference_input
from .errors import DataError
from .localize import Detection, VideoScores, detections_json, localize
from .methods.base import Method
from .provenance import Provenance
from .run import RunMeta


@torch.inference_mode()
def infer(model: Method, features: np.ndarray) -> VideoScores:
    """A whole video's features (T, D) -> the model's scores at its test-time input length."""
    config = model.config
    x = torch.from_numpy(inference_input(features, config.test_sampling, config.num_segments)).unsqueeze(0)
    out = model.eval()(x.to(next(model.parameters()).device))
    actionness = None if out.actionness is None else out.actionness[0].float().cpu().numpy()
    return VideoScores(out.video_scores[0].float().cpu().numpy(), out.cas[0].float().cpu().numpy(), actionness)


def save_scores(path: Path, scores: dict[str, VideoScores], timings: dict[str, VideoTiming]) -> None:
    """Raw scores and timing of every video (.npz), so thresholds and NMS can be re-tuned and plots drawn
    without the model."""
    raw: dict[str, Any] = {}
    for vid, s in scores.items():
        raw[f"{vid}/cas"], raw[f"{vid}/video_scores"] = s.cas, s.video_scores
        if s.actionness is not None:
            raw[f"{vid}/actionness"] = s.actionness
        t = timings[vid]
        raw[f"{vid}/timing"] = np.array([t.rows, t.seconds_per_row, t.duration, t.frame_count, t.frames_per_row])
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **raw)


def load_scores(path: Path) -> tuple[dict[str, VideoScores], dict[str, VideoTiming]]:
    raw = np.load(path)
    vids = sorted({key.rsplit("/", 1)[0] for key in raw.files})
    scores, timings = {}, {}
    for vid in vids:
        actionness = raw[f"{vid}/actionness"] if f"{vid}/actionness" in raw.files else None
        scores[vid] = VideoScores(raw[f"{vid}/video_scores"], raw[f"{vid}/cas"], actionness)
        rows, spr, duration, frames, per_row = raw[f"{vid}/timing"].tolist()
        timings[vid] = VideoTiming(int(rows), spr, duration, int(frames), int(per_row))
    return scores, timings


def localize_dataset(model: Method, meta: RunMeta, data_dir: Path, subset: str, scores_out: Path | None = None) -> dict:
    """Detections (ActivityNet JSON dict) for every video of a subset; optionally saves the raw scores."""
    dataset = Dataset(data_dir, subset, classes=meta.classes)
    if dataset.feature_dim != meta.feature_dim:
        raise DataError(
            f"features are {dataset.feature_dim}-d but the model was trained on {meta.feature_dim}-d",
            "use features from the extractor the run was trained with",
            data_dir,
        )
    per_video: dict[str, list[Detection]] = {}
    scores, timings = {}, {}
    for video in dataset.videos:
        rows = video.load()
        scores[video.vid], timings[video.vid] = infer(model, rows), video.timing(rows.shape[0])
        per_video[video.vid] = localize(scores[video.vid], model.config, timings[video.vid])
    if scores_out is not None:
        save_scores(scores_out, scores, timings)
    return detections_json(per_video, meta.classes, {"method": meta.method, "subset": subset})


@dataclass
class ClipResult:
    clip: Path
    scores: VideoScores | None
    detections: list[Detection]
    timing: VideoTiming | None
    error: str | None = None


def clip_extraction(meta: RunMeta, **overrides: object) -> ExtractionConfig:
    """How to extract new clips for a run: as its training features were (the defaults for imported or
    generated features), with ``overrides`` (e.g. ``preset="dis"``, ``rgb_weights=...``) applied."""
    return (meta.extraction or ExtractionConfig()).replace(**{k: v for k, v in overrides.items() if v is not None})


def localize_clips(
    clips: list[Path],
    model: Method,
    meta: RunMeta,
    cache_dir: Path,
    extraction: ExtractionConfig,
    workers: int,
    device: str = "auto",
    progress=None,
) -> list[ClipResult]:
    """Raw clips -> decode -> flow -> I3D (through the extraction cache in ``cache_dir``) -> detections.

    A clip that fails to decode is reported in its result and the others go on.
    """
    from .features.extract import extract_all
    from .features.i3d import FEATURE_DIM
    from .features.two_stream import I3DPair

    if meta.feature_dim != 2 * FEATURE_DIM:
        raise DataError(
            f"the run was trained on {meta.feature_dim}-d features, a clip gives {2 * FEATURE_DIM}-d "
            "two-stream I3D features",
            "localize with a run trained on wtal extract features",
            meta.data_dir,
        )
    extractor = I3DPair.load(extraction.features, device)
    results = []
    for outcome in extract_all(clips, cache_dir, extractor, extraction, workers, progress=progress):
        if outcome.features is None:
            results.append(ClipResult(outcome.video, None, [], None, error=outcome.error))
            continue
        features = np.load(outcome.features)
        provenance = Provenance.read(outcome.features)
        duration = float(provenance.duration or features.shape[0] * provenance.seconds_per_row)
        timing = VideoTiming(
            features.shape[0],
            provenance.seconds_per_row,
            duration,
            max(1, round(duration * provenance.frame_rate)),
            provenance.frames_per_row,
        )
        scores = infer(model, features)
        results.append(ClipResult(outcome.video, scores, localize(scores, model.config, timing), timing))
    return results
