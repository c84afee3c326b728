"""A dataset's videos with their features, labels, timing and background clicks (paths: ``layout.py``).

Nothing here knows D or the number of classes in advance: both come from the files.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..intervals import runs
from ..layout import DataLayout
from ..provenance import DEFAULT_FPS, DEFAULT_FRAMES_PER_ROW, Provenance


def load_annotations(path: str | Path) -> dict:
    """ActivityNet-style annotations, checked, with segments as floats (THUMOS files store strings)."""
    path = Path(path)
    if not path.exists():
        raise DataError(
            "annotation file not found", "write annotations.json (ActivityNet style) or run wtal import", path
        )
    expected = 'expected {"database": {vid: {"subset": ..., "annotations": [{"label", "segment"}]}}}'
    try:
        database = json.loads(path.read_text())["database"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise DataError(f"not ActivityNet-style JSON ({exc.__class__.__name__})", expected, path) from exc
    if not isinstance(database, dict):
        raise DataError(f'"database" is a {type(database).__name__}, not an object of videos', expected, path)
    for vid, video in database.items():
        annotations = video.get("annotations", []) if isinstance(video, dict) else None
        if not isinstance(annotations, list):
            raise DataError(f"video {vid}: not an object with an annotations list", expected, path)
        for ann in annotations:
            if not isinstance(ann, dict) or not isinstance(ann.get("label"), str):
                raise DataError(f"video {vid}: an annotation without a label", expected, path)
            try:
                start, end = (float(v) for v in ann["segment"])
            except (KeyError, ValueError, TypeError) as exc:
                raise DataError(
                    f"video {vid}: bad segment {ann.get('segment')!r}", "use [start_s, end_s]", path
                ) from exc
            if not (math.isfinite(start) and math.isfinite(end) and 0 <= start <= end):
                raise DataError(
                    f"video {vid}: segment [{start}, {end}] is not 0 <= start <= end", "fix the segment", path
                )
            ann["segment"] = [start, end]
    return database


@dataclass(frozen=True)
class VideoTiming:
    """How a video's feature rows map to seconds and frames (what the localizer needs)."""

    rows: int  # feature rows of the whole video, before any test-time resampling
    seconds_per_row: float
    duration: float  # seconds
    frame_count: int  # frames of the video (localization grids at frame resolution)
    frames_per_row: int = DEFAULT_FRAMES_PER_ROW

    @classmethod
    def of(
        cls, rows: int, *, seconds_per_row: float, duration: float, frame_rate: float, frames_per_row: int
    ) -> VideoTiming:
        """The timing of a video whose frames run at ``frame_rate``."""
        return cls(rows, seconds_per_row, duration, max(1, round(duration * frame_rate)), frames_per_row)

    def to_array(self) -> np.ndarray:
        """As one float array (the raw-scores file), fields in order."""
        return np.array([getattr(self, f.name) for f in fields(self)], np.float64)

    @classmethod
    def from_array(cls, values: np.ndarray) -> VideoTiming:
        rows, seconds_per_row, duration, frames, per_row = values.tolist()
        return cls(int(rows), seconds_per_row, duration, int(frames), int(per_row))


@dataclass
class Video:
    vid: str
    features: Path
    labels: np.ndarray  # (C,) multi-hot; all zero for a background-only pseudo video
    segments: list[tuple[float, float, int]]  # (start_s, end_s, class index)
    duration: float
    seconds_per_row: float
    clicks: np.ndarray = field(default_factory=lambda: np.zeros(0))  # background clicks, seconds
    background_only: bool = False
    frame_rate: float = DEFAULT_FPS  # frames per second of the video (annotation "fps", else the source's)
    frames_per_row: int = DEFAULT_FRAMES_PER_ROW

    def load(self) -> np.ndarray:
        return np.load(self.features, mmap_mode="r")

    def timing(self, rows: int) -> VideoTiming:
        return VideoTiming.of(
            rows,
            seconds_per_row=self.seconds_per_row,
            duration=self.duration,
            frame_rate=self.frame_rate,
            frames_per_row=self.frames_per_row,
        )


class Dataset:
    """Videos of one subset with their features, labels and (optional) clicks."""

    def __init__(
        self,
        data_dir: str | Path,
        subset: str,
        classes: list[str] | None = None,
        annotations: str | Path | None = None,
        negatives: bool = False,
        annotator: str | None = None,
    ):
        self.layout = DataLayout(Path(data_dir))
        self.data_dir = self.layout.root
        if not self.data_dir.is_dir():
            raise DataError(
                "dataset folder not found", "run wtal extract / wtal import first, or fix --data", self.data_dir
            )
        self.annotations_path = Path(annotations) if annotations else self.layout.annotations
        database = load_annotations(self.annotations_path)
        self.subset = subset
        self.classes = classes or read_classes(self.layout, database, self.annotations_path)
        index = class_index(self.classes)
        self.clicks_path = self.layout.clicks(annotator)
        clicks = read_clicks(self.clicks_path) if self.clicks_path.exists() else {}
        self.videos: list[Video] = []
        for vid, entry in database.items():
            if entry.get("subset") != subset:
                continue
            self.videos.append(self._video(vid, entry, index, clicks.get(vid)))
        if not self.videos:
            subsets = sorted({str(v.get("subset")) for v in database.values()})
            raise DataError(
                f"no videos in subset {subset!r}", f"subsets present: {', '.join(subsets)}", self.annotations_path
            )
        unknown = sorted(set(clicks) - set(database))
        if unknown:
            warnings.warn(
                f"{self.clicks_path}: clicks for {len(unknown)} video(s) not in "
                f"{self.annotations_path.name} are not used: {', '.join(unknown[:5])}"
                + (" ..." if len(unknown) > 5 else ""),
                DataWarning,
                stacklevel=2,
            )
        if negatives:
            self.videos += self._negatives()
        self.feature_dim = self._check_dims()
        self.has_clicks = bool(clicks)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def _video(self, vid: str, entry: dict, index: dict, clicks: list[float] | None) -> Video:
        path = self.layout.features(vid, source=self.annotations_path)
        if not path.exists():
            raise DataError(
                "features file missing",
                f"run wtal extract on the video {vid}, or drop it from {self.annotations_path.name}",
                path,
            )
        labels = np.zeros(len(self.classes), np.float32)
        segments = []
        for ann in entry.get("annotations", []):
            if ann["label"] not in index:
                raise DataError(
                    f"video {vid}: unknown label {ann['label']!r}",
                    "add it to classes.txt or fix the annotation",
                    self.annotations_path,
                )
            c = index[ann["label"]]
            labels[c] = 1.0
            segments.append((ann["segment"][0], ann["segment"][1], c))
        meta = Provenance.read(path)
        rows = np.load(path, mmap_mode="r").shape[0]
        duration = float(entry.get("duration") or rows * meta.seconds_per_row)
        return Video(
            vid,
            path,
            labels,
            segments,
            duration,
            meta.seconds_per_row,
            self._clicks(vid, clicks, duration),
            frame_rate=float(entry.get("fps") or meta.frame_rate),
            frames_per_row=meta.frames_per_row,
        )

    def _clicks(self, vid: str, clicks: list[float] | None, duration: float) -> np.ndarray:
        """The video's clicks inside [0, duration]; the others are dropped with a warning listing them."""
        times = np.asarray(clicks or [], float)
        valid = np.isfinite(times) & (times >= 0) & (times <= duration)
        if not valid.all():
            warnings.warn(
                f"{self.clicks_path}: video {vid}: clicks outside [0, {duration:g}] s are not used: "
                f"{', '.join(f'{t:g}' for t in times[~valid])}",
                DataWarning,
                stacklevel=3,
            )
        return times[valid]

    def _negatives(self) -> list[Video]:
        folder = self.layout.negatives_dir
        if not folder.is_dir():
            raise DataError("no hard negatives in this dataset", "run wtal negatives DATA_DIR first", folder)
        train = {v.vid for v in self.videos}
        out = []
        for path in sorted(folder.glob("*_bg.npy")):
            if path.stem.removesuffix("_bg") in train:
                rows = np.load(path, mmap_mode="r").shape[0]
                meta = Provenance.read(path)
                out.append(
                    Video(
                        path.stem,
                        path,
                        np.zeros(len(self.classes), np.float32),
                        [],
                        rows * meta.seconds_per_row,
                        meta.seconds_per_row,
                        background_only=True,
                        frame_rate=meta.frame_rate,
                        frames_per_row=meta.frames_per_row,
                    )
                )
        return out

    def _check_dims(self) -> int:
        """The feature dimension shared by every video (the odd one out, against the majority, is named),
        each file a finite (T, D) array (a NaN or inf is named by its first row)."""
        dims: dict[int, list[Video]] = {}
        for video in self.videos:
            rows = read_feature_rows(video.features)
            bad = first_nonfinite_row(rows)
            if bad is not None:
                raise DataError(f"row {bad} holds NaN or inf values", "re-extract or repair this video", video.features)
            dims.setdefault(rows.shape[1], []).append(video)
        majority = max(dims, key=lambda d: len(dims[d]))
        for dim, videos in dims.items():
            if dim != majority:
                raise DataError(
                    f"feature dimension {dim} differs from {majority} in {dims[majority][0].features.name}",
                    "all videos need features from the same extractor",
                    videos[0].features,
                )
        return majority


def class_index(classes: list[str]) -> dict[str, int]:
    """Class name -> its index in the model's output."""
    return {name: i for i, name in enumerate(classes)}


def segments_of(entry: dict, index: dict[str, int]) -> list[tuple[float, float, int]]:
    """An annotation entry's segments as (start_s, end_s, class index), for the classes in ``index``."""
    return [
        (ann["segment"][0], ann["segment"][1], index[ann["label"]])
        for ann in entry.get("annotations", [])
        if ann["label"] in index and "segment" in ann
    ]


def read_classes(layout: DataLayout, database: dict, annotations_path: Path) -> list[str]:
    path = layout.classes
    if path.exists():
        classes = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        if len(set(classes)) != len(classes):
            raise DataError("duplicate class names", "list each class once", path)
        return classes
    labels = sorted({a["label"] for v in database.values() for a in v.get("annotations", [])})
    if not labels:
        raise DataError("no labelled segments", "annotate at least one action", annotations_path)
    return labels


class DataWarning(UserWarning):
    """Input that is used with a part left out (the CLI prints these as one-line warnings)."""


def read_feature_rows(path: Path, missing_fix: str = "re-extract this video") -> np.ndarray:
    """A feature file as a (T, D) memmap, or a one-line error naming it (missing, unreadable, or not a
    non-empty 2-D array)."""
    if not path.exists():
        raise DataError("features file missing", missing_fix, path)
    try:
        rows = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise DataError(f"unreadable features ({exc.__class__.__name__})", "re-extract this video", path) from exc
    if rows.ndim != 2 or rows.shape[0] == 0:
        raise DataError(
            f"features must be a non-empty (T, D) array, got shape {rows.shape}", "re-extract this video", path
        )
    return rows


def first_nonfinite_row(rows: np.ndarray, block: int = 4096) -> int | None:
    """Index of the first row holding a NaN or inf (read ``block`` rows at a time), or None."""
    for start in range(0, rows.shape[0], block):
        finite = np.isfinite(np.asarray(rows[start : start + block])).all(axis=tuple(range(1, rows.ndim)))
        if not finite.all():
            return start + int(np.argmin(finite))
    return None


def read_clicks(path: Path) -> dict[str, list[float]]:
    try:
        clicks = json.loads(path.read_text())
        return {str(vid): [float(t) for t in times] for vid, times in clicks.items()}
    except (ValueError, TypeError, AttributeError, UnicodeDecodeError) as exc:
        raise DataError(
            f"bad clicks file ({exc.__class__.__name__})", 'expected {"video_id": [seconds, ...]}', path
        ) from exc


def simulate_clicks(video: Video, rng: np.random.Generator) -> np.ndarray:
    """One background click (seconds) at a random frame of every background run of the ground truth,
    as BackTAL simulates annotators."""
    frames = max(1, round(video.duration * video.frame_rate))
    foreground = np.zeros(frames, bool)
    for start, end, _ in video.segments:
        foreground[max(0, int(np.floor(start * video.frame_rate))) : int(np.ceil(end * video.frame_rate))] = True
    clicks = [rng.integers(a, b + 1) / video.frame_rate for a, b in runs(~foreground)]
    return np.asarray(clicks, float)
