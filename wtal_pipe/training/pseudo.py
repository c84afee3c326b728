"""Snippet-level pseudo labels (``wtal refine``): a model's confident detections on its own training videos,
for their labelled classes only, as a file one round writes and the next round trains on.

::

    {"format": "wtal-pipe/pseudo-labels/1", "classes": [...], "settings": {...}, "source": "...",
     "videos": {"video_id": [[class_index, start_s, end_s, score], ...], ...}}

A training row inside a kept segment of class c gets the target
``exp(-((t - centre) / (sigma * half_length))^2 / 2)`` for c (Gaussian-weighted toward the segment's
centre, as Zhou et al., CVPR 2023), every other row 0 for the video's labelled classes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np

from ..cache import atomic_write_text
from ..errors import DataError
from ..inference.localize import Detection
from ..methods.settings import Above, AtMost, Settings

FORMAT = "wtal-pipe/pseudo-labels/1"
Segments = np.ndarray  # (N, 4): class index, start_s, end_s, score


@dataclass(frozen=True)
class PseudoLabelSettings(Settings):
    """How detections become pseudo labels."""

    keep_ratio: Annotated[float, Above(0), AtMost(1)] = 0.5  # keep a detection scoring >= this x its class's best
    sigma: Annotated[float, Above(0)] = 1.0  # Gaussian width, in half-lengths of the segment


def keep_confident(detections: list[Detection], keep_ratio: float) -> list[Detection]:
    """The detections scoring at least ``keep_ratio`` times the best of their class in the video, rounded as
    the file keeps them."""
    best: dict[int, float] = {}
    for detection in detections:
        best[detection.label] = max(best.get(detection.label, float("-inf")), detection.score)
    return [
        Detection(int(d.label), round(d.score, 5), round(d.start, 3), round(d.end, 3))
        for d in detections
        if d.end > d.start and d.score >= keep_ratio * best[d.label]
    ]


def write_pseudo_labels(
    path: Path, classes: list[str], videos: dict[str, list[Detection]], settings: PseudoLabelSettings, source: str
) -> None:
    """The file: each video's detections as ``[class_index, start_s, end_s, score]`` rows."""
    rows = {vid: [[d.label, d.start, d.end, d.score] for d in found] for vid, found in videos.items()}
    record = {"format": FORMAT, "classes": classes, "settings": asdict(settings), "source": source, "videos": rows}
    atomic_write_text(path, json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n")


@dataclass
class PseudoLabels:
    """A pseudo-label file, read and checked."""

    settings: PseudoLabelSettings
    videos: dict[str, Segments]

    @classmethod
    def read(cls, path: Path, classes: list[str]) -> PseudoLabels:
        try:
            data: Any = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise DataError(f"unreadable pseudo labels ({exc})", "rerun wtal refine to rewrite them", path) from None
        if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("classes") != classes:
            raise DataError("not pseudo labels for this run's classes", "rerun wtal refine to rewrite them", path)
        videos = {}
        for vid, rows in data["videos"].items():
            array = np.asarray(rows, np.float64).reshape(-1, 4)
            if array.size and (array[:, 0].min() < 0 or array[:, 0].max() >= len(classes)):
                raise DataError(f"video {vid}: a class index out of range", "rerun wtal refine to rewrite them", path)
            if array.size and not (array[:, 2] > array[:, 1]).all():
                raise DataError(f"video {vid}: a segment that ends before it starts", "rerun wtal refine", path)
            videos[vid] = array
        return cls(PseudoLabelSettings(**data["settings"]), videos)

    def targets(self, vid: str, times: np.ndarray, num_classes: int) -> np.ndarray:
        """(len(times), C) soft targets at these row times (seconds); 0 for a video without kept segments."""
        out = np.zeros((times.size, num_classes), np.float32)
        segments = self.videos.get(vid)
        if segments is None or not segments.size:
            return out
        classes, start, end = segments[:, 0].astype(int), segments[:, 1:2], segments[:, 2:3]
        centre, half = (start + end) / 2, (end - start) / 2
        inside = (times >= start) & (times <= end)  # (segments, rows)
        weight = np.where(inside, np.exp(-0.5 * ((times - centre) / (self.settings.sigma * half)) ** 2), 0.0)
        np.maximum.at(out.T, classes, weight.astype(np.float32))  # overlapping segments of a class: the larger
        return out


def row_times(
    source_rows: np.ndarray | None, *, seconds_per_row: float, duration: float, num_segments: int
) -> np.ndarray:
    """The time (seconds) at the centre of each row of a training sample: a sampled row is its source row,
    an interpolated one (``source_rows`` None) its share of the duration (as ``click_mask`` maps them)."""
    if source_rows is None:
        return (np.arange(num_segments) + 0.5) / num_segments * duration
    return (np.asarray(source_rows, np.float64) + 0.5) * seconds_per_row
