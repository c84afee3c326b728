"""Where a video's feature rows lie in time: declared, never guessed.

A feature file made by ``wtal extract`` (or ``wtal import``) carries its timing in the record beside it.
Features from another tool carry none, so a dataset declares theirs once in ``DATA_DIR/features/timing.json``
(``wtal import features`` writes it)::

    {"fps": 30, "frames_per_row": 16, "stride": 8}     row k covers frames [k * stride, k * stride + 16)
    {"rows": "whole-video"}                              T rows resampled to cover each whole video

A feature file with neither is refused in one line: detections at the wrong seconds are worse than none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from ..cache import read_json
from ..errors import DataError
from ..features.provenance import DEFAULT_FPS, DEFAULT_FRAMES_PER_ROW, Provenance
from ..layout import DataLayout

WHOLE_VIDEO = "whole-video"
DECLARE = (
    "declare the features' timing: wtal import features DIR --fps F --frames-per-row N [--stride S], "
    "or --whole-video for fixed-length rows"
)


@dataclass(frozen=True)
class FeatureTiming:
    """How one feature set's rows are cut from its videos."""

    fps: float | None = None  # frame rate the rows were cut at (None: whole-video rows)
    frames_per_row: int | None = None  # frames one row covers
    stride: int | None = None  # frames from one row's start to the next (< frames_per_row: rows overlap)

    def __post_init__(self) -> None:
        if self.whole_video:
            return
        if not (self.fps and math.isfinite(self.fps) and self.fps > 0):
            raise DataError(f"timing fps={self.fps!r} must be a positive number", DECLARE)
        if (
            not (isinstance(self.frames_per_row, int) and isinstance(self.stride, int))
            or min(self.frames_per_row, self.stride) < 1
        ):
            raise DataError(
                f"timing frames_per_row={self.frames_per_row!r}, stride={self.stride!r} must be whole numbers >= 1",
                DECLARE,
            )

    @property
    def whole_video(self) -> bool:
        return self.fps is None and self.frames_per_row is None and self.stride is None

    def to_dict(self) -> dict[str, Any]:
        if self.whole_video:
            return {"rows": WHOLE_VIDEO}
        return {"fps": self.fps, "frames_per_row": self.frames_per_row, "stride": self.stride}

    @classmethod
    def from_dict(cls, raw: Any, source: Path | str) -> FeatureTiming:
        if not isinstance(raw, dict):
            raise DataError("not a timing declaration", DECLARE, source)
        if raw.get("rows") == WHOLE_VIDEO:
            return cls()
        try:
            fps, per_row = float(raw["fps"]), raw["frames_per_row"]
            return cls(fps, per_row, raw.get("stride", per_row))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"not a timing declaration ({exc.__class__.__name__})", DECLARE, source) from exc
        except DataError as exc:
            raise DataError(exc.what, exc.fix, source) from exc

    def seconds_per_step(self) -> float:
        """Seconds from one row's start to the next (rows of one video)."""
        assert self.fps is not None and self.stride is not None
        return self.stride / self.fps

    def span(self, rows: int) -> float:
        """Seconds the rows of a video cover, from the first row's start to the last row's end."""
        assert self.fps is not None and self.stride is not None and self.frames_per_row is not None
        return ((rows - 1) * self.stride + self.frames_per_row) / self.fps


#: the THUMOS14 I3D convention (``wtal extract``, the BaS-Net/UM release): one 16-frame row per 16 frames at 25 fps
I3D_TIMING = FeatureTiming(DEFAULT_FPS, DEFAULT_FRAMES_PER_ROW, DEFAULT_FRAMES_PER_ROW)


@dataclass(frozen=True)
class VideoTiming:
    """How a video's feature rows map to seconds and frames (what the localizer needs)."""

    rows: int  # feature rows of the whole video, before any test-time resampling
    seconds_per_row: float  # seconds from one row's start to the next
    duration: float  # seconds
    frame_count: int  # frames of the video (localization grids at frame resolution)
    frames_per_step: float  # video frames from one row's start to the next
    # seconds a row's window reaches past its step when rows overlap, halved: row k's window is centred at
    # k * seconds_per_row + offset + seconds_per_row / 2 (0 for rows that do not overlap)
    offset: float = 0.0

    @classmethod
    def of(cls, rows: int, timing: FeatureTiming, duration: float, frame_rate: float) -> VideoTiming:
        """The timing of a video of ``duration`` seconds whose frames run at ``frame_rate``."""
        frames = max(1, round(duration * frame_rate))
        if timing.whole_video:
            return cls(rows, duration / rows, duration, frames, frames / rows)
        assert timing.stride is not None and timing.frames_per_row is not None and timing.fps is not None
        offset = max(0, timing.frames_per_row - timing.stride) / 2 / timing.fps
        return cls(rows, timing.seconds_per_step(), duration, frames, float(timing.stride), offset)

    def to_array(self) -> np.ndarray:
        """As one float array (the raw-scores file), fields in order."""
        return np.array([getattr(self, f.name) for f in fields(self)], np.float64)

    @classmethod
    def from_array(cls, values: np.ndarray) -> VideoTiming:
        rows, seconds_per_row, duration, frames, per_step, *offset = values.tolist()  # files of 0.2: no offset
        return cls(int(rows), seconds_per_row, duration, int(frames), per_step, *offset)


def own_timing(features_path: Path) -> FeatureTiming | None:
    """A feature file's timing as its own record gives it (``wtal extract``, ``wtal import``), or None."""
    provenance = Provenance.read(features_path)
    if provenance.extraction is not None:
        features = provenance.extraction.features
        if features.rows is not None:  # resampled to a fixed number of rows over the whole video
            return FeatureTiming()
        return FeatureTiming(provenance.extraction.decode.fps, features.chunk, features.step)
    if provenance.timing is not None:
        return FeatureTiming.from_dict(provenance.timing, features_path.with_suffix(".json"))
    return None


def declared_timing(features_path: Path, layout: DataLayout | None = None) -> FeatureTiming:
    """A feature file's timing: from its record, else from the dataset's declaration (``layout``), else a
    one-line error naming the file and the fix."""
    timing = own_timing(features_path)
    if timing is not None:
        return timing
    if layout is not None:
        declaration = layout.timing_declaration
        raw = read_json(declaration)
        if raw is not None:
            return FeatureTiming.from_dict(raw, declaration)
    raise DataError(
        f"no record of how its rows are timed (no {features_path.stem}.json, no features/timing.json)",
        DECLARE,
        features_path,
    )
