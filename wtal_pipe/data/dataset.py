"""The DATA_DIR layout and segment sampling.

::

    DATA_DIR/features/<vid>.npy   float32 (T, D), one row per chunk (+ optional <vid>.json provenance)
    DATA_DIR/annotations.json     {"database": {vid: {"subset", "duration", "annotations": [{label, segment}]}}}
    DATA_DIR/classes.txt          optional class order (else sorted labels)
    DATA_DIR/clicks.json          optional background clicks {vid: [seconds, ...]} (BackTAL)
    DATA_DIR/negatives/<vid>_bg.npy  optional hard-negative pseudo videos (CMCS), background only

Nothing here knows D or the number of classes in advance: both come from the files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError

DEFAULT_SECONDS_PER_ROW = 16 / 25  # the THUMOS14 I3D convention


def load_annotations(path: str | Path) -> dict:
    """ActivityNet-style annotations with segments as floats (THUMOS files store strings)."""
    path = Path(path)
    if not path.exists():
        raise DataError("annotation file not found", "write annotations.json (ActivityNet style) or run wtal import",
                        path)
    try:
        database = json.loads(path.read_text())["database"]
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"not ActivityNet-style JSON ({exc.__class__.__name__}: {exc})",
                        'expected {"database": {vid: {"subset", "annotations": [...]}}}', path)
    for vid, video in database.items():
        for ann in video.get("annotations", []):
            try:
                ann["segment"] = [float(ann["segment"][0]), float(ann["segment"][1])]
            except (KeyError, ValueError, IndexError, TypeError):
                raise DataError(f"video {vid}: bad segment {ann.get('segment')!r}", "use [start_s, end_s]", path)
    return database


@dataclass
class Video:
    vid: str
    features: Path
    labels: np.ndarray  # (C,) multi-hot; all zero for a background-only pseudo video
    segments: list[tuple[float, float, int]]  # (start_s, end_s, class index)
    duration: float
    seconds_per_row: float
    clicks: np.ndarray = field(default_factory=lambda: np.zeros(0, int))  # row indices clicked as background
    background_only: bool = False

    def load(self) -> np.ndarray:
        return np.load(self.features, mmap_mode="r")


class Dataset:
    """Videos of one subset with their features, labels and (optional) clicks."""

    def __init__(self, data_dir: str | Path, subset: str, classes: list[str] | None = None,
                 annotations: str | Path | None = None, negatives: bool = False):
        self.data_dir = Path(data_dir)
        if not self.data_dir.is_dir():
            raise DataError("dataset folder not found", "run wtal extract / wtal import first, or fix --data",
                            self.data_dir)
        self.annotations_path = Path(annotations) if annotations else self.data_dir / "annotations.json"
        database = load_annotations(self.annotations_path)
        self.subset = subset
        self.classes = classes or read_classes(self.data_dir, database, self.annotations_path)
        index = {name: i for i, name in enumerate(self.classes)}
        clicks = read_clicks(self.data_dir / "clicks.json") if (self.data_dir / "clicks.json").exists() else {}
        self.videos: list[Video] = []
        for vid, entry in database.items():
            if entry.get("subset") != subset:
                continue
            self.videos.append(self._video(vid, entry, index, clicks.get(vid)))
        if not self.videos:
            subsets = sorted({str(v.get("subset")) for v in database.values()})
            raise DataError(f"no videos in subset {subset!r}", f"subsets present: {', '.join(subsets)}",
                            self.annotations_path)
        if negatives:
            self.videos += self._negatives()
        self.feature_dim = self._check_dims()
        self.has_clicks = bool(clicks)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def _video(self, vid: str, entry: dict, index: dict, clicks: list[float] | None) -> Video:
        path = self.data_dir / "features" / f"{vid}.npy"
        if not path.exists():
            raise DataError("features file missing", f"run wtal extract on the video {vid}, or drop it from "
                            f"{self.annotations_path.name}", path)
        labels = np.zeros(len(self.classes), np.float32)
        segments = []
        for ann in entry.get("annotations", []):
            if ann["label"] not in index:
                raise DataError(f"video {vid}: unknown label {ann['label']!r}",
                                "add it to classes.txt or fix the annotation", self.annotations_path)
            c = index[ann["label"]]
            labels[c] = 1.0
            segments.append((ann["segment"][0], ann["segment"][1], c))
        spr = seconds_per_row(path)
        rows = np.load(path, mmap_mode="r").shape[0]
        duration = float(entry.get("duration") or rows * spr)
        click_rows = np.unique(np.clip((np.asarray(clicks or [], float) / spr).astype(int), 0, max(rows - 1, 0)))
        return Video(vid, path, labels, segments, duration, spr, click_rows)

    def _negatives(self) -> list[Video]:
        folder = self.data_dir / "negatives"
        if not folder.is_dir():
            raise DataError("no hard negatives in this dataset", "run wtal negatives DATA_DIR first", folder)
        train = {v.vid for v in self.videos}
        out = []
        for path in sorted(folder.glob("*_bg.npy")):
            if path.stem.removesuffix("_bg") in train:
                rows = np.load(path, mmap_mode="r").shape[0]
                spr = seconds_per_row(path)
                out.append(Video(path.stem, path, np.zeros(len(self.classes), np.float32), [], rows * spr, spr,
                                 background_only=True))
        return out

    def _check_dims(self) -> int:
        """The feature dimension shared by every video; the odd one out (against the majority) is named."""
        dims: dict[int, list[Video]] = {}
        for video in self.videos:
            shape = video.load().shape
            if len(shape) != 2 or shape[0] == 0:
                raise DataError(f"features must be a non-empty (T, D) array, got shape {shape}",
                                "re-extract this video", video.features)
            dims.setdefault(shape[1], []).append(video)
        majority = max(dims, key=lambda d: len(dims[d]))
        for dim, videos in dims.items():
            if dim != majority:
                raise DataError(f"feature dimension {dim} differs from {majority} in {dims[majority][0].features.name}",
                                "all videos need features from the same extractor", videos[0].features)
        return majority


def read_classes(data_dir: Path, database: dict, annotations_path: Path) -> list[str]:
    path = data_dir / "classes.txt"
    if path.exists():
        classes = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        if len(set(classes)) != len(classes):
            raise DataError("duplicate class names", "list each class once", path)
        return classes
    labels = sorted({a["label"] for v in database.values() for a in v.get("annotations", [])})
    if not labels:
        raise DataError("no labelled segments", "annotate at least one action", annotations_path)
    return labels


def read_clicks(path: Path) -> dict[str, list[float]]:
    try:
        clicks = json.loads(path.read_text())
        return {str(vid): [float(t) for t in times] for vid, times in clicks.items()}
    except (ValueError, TypeError, AttributeError) as exc:
        raise DataError(f"bad clicks file ({exc})", 'expected {"video_id": [seconds, ...]}', path)


def seconds_per_row(features_path: Path) -> float:
    """From the provenance JSON beside the features, else the THUMOS14 convention (16 / 25 s)."""
    meta = features_path.with_suffix(".json")
    if meta.exists():
        try:
            return float(json.loads(meta.read_text())["seconds_per_row"])
        except (ValueError, KeyError, TypeError):
            pass
    return DEFAULT_SECONDS_PER_ROW


def sample_rows(length: int, num_segments: int | None, random: bool, rng: np.random.Generator) -> np.ndarray:
    """Row indices for one training/test sample of ``num_segments`` rows (None = every row).

    Random: one row drawn inside each of ``num_segments`` equal spans (the BaS-Net/UM perturbation);
    uniform: evenly spaced rows. Short videos repeat rows so every sample has the same length.
    """
    if num_segments is None:
        return np.arange(length)
    if random:
        edges = np.arange(num_segments + 1) * length / num_segments
        low, high = edges[:-1].astype(int), np.maximum(edges[1:].astype(int), edges[:-1].astype(int) + 1)
        return np.minimum(rng.integers(low, high), length - 1)
    return np.linspace(0, length - 1, num_segments).astype(int)


def simulate_clicks(video: Video, rows: int, rng: np.random.Generator) -> np.ndarray:
    """One random background row in every background run of the ground truth (as BackTAL simulates)."""
    foreground = np.zeros(rows, bool)
    for start, end, _ in video.segments:
        a = int(np.floor(start / video.seconds_per_row))
        b = int(np.ceil(end / video.seconds_per_row))
        foreground[max(a, 0):min(b, rows)] = True
    clicks = []
    padded = np.concatenate([[True], foreground, [True]])
    starts = np.flatnonzero(padded[:-1] & ~padded[1:])
    ends = np.flatnonzero(~padded[:-1] & padded[1:])
    for a, b in zip(starts, ends):
        clicks.append(int(rng.integers(a, b)))
    return np.asarray(clicks, int)
