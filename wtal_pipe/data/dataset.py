"""A dataset's videos with their features, labels, timing and background clicks (paths: ``layout.py``;
annotation files: ``annotations.py``; timing: ``timing.py``; clicks: ``clicks.py``).

Nothing here knows D or the number of classes in advance: both come from the files.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..cache import atomic_write_json, read_json
from ..errors import DataError
from ..features.provenance import DEFAULT_FPS, Provenance
from ..layout import DataLayout
from .annotations import class_index, load_annotations, read_classes, segments_of
from .clicks import read_clicks
from .timing import FeatureTiming, VideoTiming, declared_timing


@dataclass
class Video:
    vid: str
    features: Path
    labels: np.ndarray  # (C,) multi-hot; all zero for a background-only pseudo video
    segments: list[tuple[float, float, int]]  # (start_s, end_s, class index); empty for labels only
    duration: float  # seconds
    rows_timing: FeatureTiming  # how its feature rows are cut (declared, see data/timing.py)
    clicks: np.ndarray = field(default_factory=lambda: np.zeros(0))  # background clicks, seconds
    background_only: bool = False
    frame_rate: float = DEFAULT_FPS  # frames per second of the video (annotation "fps", else the source's)

    def load(self) -> np.ndarray:
        return np.load(self.features, mmap_mode="r")

    def timing(self, rows: int) -> VideoTiming:
        return VideoTiming.of(rows, self.rows_timing, self.duration, self.frame_rate)


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
        only: set[str] | None = None,
        exclude: set[str] | None = None,
    ):
        """The videos of ``subset`` (``only`` those named, none of ``exclude``), with ``negatives`` the hard
        negatives of those videos; clicks from ``clicks.json`` (``clicks.<annotator>.json``)."""
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
            if entry.get("subset") != subset or (only is not None and vid not in only) or vid in (exclude or ()):
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
        unknown = [label for label in entry["labels"] if label not in index]
        if unknown:
            raise DataError(
                f"video {vid}: unknown label {unknown[0]!r}",
                "add it to classes.txt or fix the annotation",
                self.annotations_path,
            )
        labels = np.zeros(len(self.classes), np.float32)
        labels[[index[label] for label in entry["labels"]]] = 1.0
        timing = declared_timing(path, self.layout)
        duration = self._duration(vid, entry, path, timing)
        provenance = Provenance.read(path)
        return Video(
            vid,
            path,
            labels,
            segments_of(entry, index),
            duration,
            timing,
            self._clicks(vid, clicks, duration),
            frame_rate=float(entry.get("fps") or provenance.source_fps or timing.fps or DEFAULT_FPS),
        )

    def _duration(self, vid: str, entry: dict, path: Path, timing: FeatureTiming) -> float:
        """The video's length: its annotation's, else what decoding saw, else what its rows cover."""
        declared = entry.get("duration") or Provenance.read(path).duration
        if declared:
            return float(declared)
        if timing.whole_video:
            raise DataError(
                f"video {vid} has whole-video feature rows and no duration",
                "add its duration (seconds) to annotations.json",
                self.annotations_path,
            )
        return timing.span(np.load(path, mmap_mode="r").shape[0])

    def _clicks(self, vid: str, clicks: list[float] | None, duration: float) -> np.ndarray:
        """The video's clicks, each inside [0, duration] (one outside is a one-line error naming it)."""
        times = np.asarray(clicks or [], float)
        outside = times[(times < 0) | (times > duration)]
        if outside.size:
            raise DataError(
                f"video {vid}: click(s) at {', '.join(f'{t:g}' for t in outside)} s lie outside the video "
                f"[0, {duration:g}] s",
                "fix or remove them (wtal annotate shows the video's clicks)",
                self.clicks_path,
            )
        return times

    def _negatives(self) -> list[Video]:
        folder = self.layout.negatives_dir
        if not folder.is_dir():
            raise DataError("no hard negatives in this dataset", "run wtal negatives DATA_DIR first", folder)
        train = {v.vid: v for v in self.videos}
        out = []
        for path in sorted(folder.glob("*_bg.npy")):
            source = train.get(path.stem.removesuffix("_bg"))
            if source is not None:  # its rows are rows of the source video: the same timing
                timing = source.rows_timing
                rows = np.load(path, mmap_mode="r").shape[0]
                duration = source.duration if timing.whole_video else rows * timing.seconds_per_step()
                empty = np.zeros(len(self.classes), np.float32)
                video = Video(path.stem, path, empty, [], duration, timing, background_only=True)
                video.frame_rate = source.frame_rate
                out.append(video)
        return out

    def _check_dims(self) -> int:
        """The feature dimension shared by every video (the odd one out, against the majority, is named),
        each file a finite (T, D) array (a NaN or inf is named by its first row). A file already found good
        with its present size and modification time is not read again (``layout.feature_checks``)."""
        checks = FeatureChecks(self.layout)
        dims: dict[int, list[Video]] = {}
        for video in self.videos:
            dims.setdefault(checks.dim(video.features), []).append(video)
        checks.save()
        majority = max(dims, key=lambda d: len(dims[d]))
        for dim, videos in dims.items():
            if dim != majority:
                raise DataError(
                    f"feature dimension {dim} differs from {majority} in {dims[majority][0].features.name}",
                    "all videos need features from the same extractor",
                    videos[0].features,
                )
        return majority


#: a file modified this recently is not recorded: file systems stamp times in coarse ticks, so a same-size
#: rewrite within one tick would otherwise look unchanged (git's "racy" rule)
RACY_NS = 2_000_000_000


class FeatureChecks:
    """Feature files found finite and 2-D, keyed by path with their size and modification time; a file that
    changed is checked again."""

    def __init__(self, layout: DataLayout):
        self.path, self.root = layout.feature_checks, layout.root
        saved = read_json(self.path)
        self.known: dict[str, list[int]] = saved if isinstance(saved, dict) else {}
        self.added: dict[str, list[int]] = {}

    def dim(self, path: Path) -> int:
        """The file's feature dimension, read and checked unless known (a bad file is a one-line error)."""
        key = str(path.relative_to(self.root)) if path.is_relative_to(self.root) else str(path)
        try:
            stat = path.stat()
        except OSError:
            stat = None
        known = self.known.get(key)
        if stat is not None and isinstance(known, list) and known[:2] == [stat.st_size, stat.st_mtime_ns]:
            return int(known[2])
        rows = read_feature_rows(path)
        bad = first_nonfinite_row(rows)
        if bad is not None:
            raise DataError(f"row {bad} holds NaN or inf values", "re-extract or repair this video", path)
        if stat is not None and time.time_ns() - stat.st_mtime_ns > RACY_NS:
            self.added[key] = [stat.st_size, stat.st_mtime_ns, int(rows.shape[1])]
        return int(rows.shape[1])

    def save(self) -> None:
        """Record the newly checked files (merged with what another process may have recorded meanwhile)."""
        if not self.added:
            return
        current = read_json(self.path)
        with contextlib.suppress(OSError):  # a read-only dataset is checked again next time
            atomic_write_json(self.path, (current if isinstance(current, dict) else {}) | self.added)


class DataWarning(UserWarning):
    """Input that is used with a part left out (the CLI prints these as one-line warnings)."""


def read_feature_rows(path: Path, missing_fix: str = "re-extract this video") -> np.ndarray:
    """A feature file as a (T, D) memmap, or a one-line error naming it (missing, unreadable, not numbers, or
    not a (T, D) array with T and D >= 1)."""
    if not path.exists():
        raise DataError("features file missing", missing_fix, path)
    try:
        rows = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise DataError(f"unreadable features ({exc.__class__.__name__})", "re-extract this video", path) from exc
    return checked_rows(rows, path)


def checked_rows(rows: np.ndarray, where: Path | str) -> np.ndarray:
    """``rows`` when they are a (T, D) array of real numbers with T, D >= 1, else a one-line error naming
    ``where`` (a structured, string or complex array would fail deep inside training)."""
    if rows.dtype.kind not in "fiu":
        raise DataError(f"holds {rows.dtype} values, not numbers", "pass float32 (T, D) feature arrays", where)
    if rows.ndim != 2 or min(rows.shape) == 0:
        raise DataError(
            f"features must be a non-empty (T, D) array, got shape {rows.shape}", "re-extract this video", where
        )
    return rows


def first_nonfinite_row(rows: np.ndarray, block: int = 4096) -> int | None:
    """Index of the first row holding a NaN or inf (read ``block`` rows at a time), or None."""
    for start in range(0, rows.shape[0], block):
        finite = np.isfinite(np.asarray(rows[start : start + block])).all(axis=tuple(range(1, rows.ndim)))
        if not finite.all():
            return start + int(np.argmin(finite))
    return None
