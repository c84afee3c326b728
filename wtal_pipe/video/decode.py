"""PyAV decoding to a fixed frame rate by timestamp, resized and centre-cropped, as a generator.

Output frame ``k`` shows what the source displays at time ``k / fps`` (the last source frame whose
presentation time is <= that instant), so variable frame rate and odd rates such as 29.97 come out
right. Frames are turned upright by the container's display rotation (portrait phone videos), and
converted only when emitted and never collected, so memory does not grow with the video's length.
While decoding, :class:`DecodeStats` records how much of the video was actually decoded, so a
truncated or corrupt file is not mistaken for a short one.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import VideoError, WtalError


@dataclass(frozen=True)
class DecodeConfig:
    fps: float = 25.0  # output frame rate; frames are picked by timestamp, not by index
    short_side: int = 256  # bilinear resize so the shorter side has this many pixels
    crop: int | None = 224  # then a centre square crop of this size (None: the resized frame, with resize)
    resize: tuple[int, int] | None = None  # (width, height) to resize to, instead of short_side (340x256 releases)

    def __post_init__(self) -> None:
        if not math.isfinite(self.fps) or self.fps <= 0:
            raise WtalError(f"fps must be a positive number, got {self.fps}", "pass e.g. --fps 25")
        if self.resize is not None:
            object.__setattr__(self, "resize", tuple(int(v) for v in self.resize))  # JSON gives a list
        sides = self.resize or (self.short_side, self.short_side)
        if min(*sides, self.crop or 1) < 1:
            raise WtalError(
                f"crop {self.crop}, short side {self.short_side} and resize {self.resize} must be at least 1 pixel",
                "pass e.g. --short-side 256 --crop 224",
            )
        if self.crop is None and self.resize is None:
            raise WtalError("no crop needs --resize WxH (every frame of a video the same size)", "add --resize 340x256")
        if self.crop is not None and self.crop > min(sides):
            raise WtalError(f"crop {self.crop} is larger than the resized frame {sides}", "use a smaller --crop")

    @property
    def frame_size(self) -> tuple[int, int]:
        """(height, width) of every decoded frame."""
        if self.crop is not None:
            return self.crop, self.crop
        assert self.resize is not None
        return self.resize[1], self.resize[0]

    def identity(self) -> dict:
        """What keys the frames cache: every setting, the newer ones only when set (older caches stay valid)."""
        values = asdict(self)
        return values if self.resize is not None else {k: v for k, v in values.items() if k != "resize"}


_PTS_TOLERANCE = 1e-4  # seconds; absorbs time-base rounding (e.g. 1001/30000)


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video, before decoding."""

    path: str
    width: int
    height: int
    source_fps: float | None
    duration: float | None
    codec: str
    frames: int | None = None  # frame count the container declares (mp4, mov, avi), if any


@dataclass
class DecodeStats:
    """What decoding actually saw, filled in while the frames are yielded."""

    source_frames: int = 0
    span: float = 0.0  # seconds from the first decoded frame to the end of the last one
    rotation: int = 0  # display rotation applied, degrees counter-clockwise

    def missing_seconds(self, info: VideoInfo) -> float:
        """How much of what the container declares was not decoded (0 when it declares nothing)."""
        missing = 0.0
        if info.duration:
            missing = max(missing, info.duration - self.span)
        if info.frames and info.source_fps:
            missing = max(missing, (info.frames - self.source_frames) / info.source_fps)
        return max(0.0, missing)

    def is_partial(self, info: VideoInfo) -> bool:
        """More than max(1 s, 2 %) of the declared video did not decode: a truncated or corrupt file
        (an audio track that outlasts the video by less than a second is not partial)."""
        return self.missing_seconds(info) > max(1.0, 0.02 * (info.duration or 0.0))


@dataclass(frozen=True)
class Frame:
    index: int  # output frame index at the target fps
    time: float  # output time k / fps, seconds from the first frame
    source_time: float  # presentation time of the source frame shown
    rgb: np.ndarray  # (crop, crop, 3) uint8


def _open(path: Path):
    import av

    if not path.exists():
        raise VideoError("file not found", "check the path", path)
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise VideoError(
            f"not a readable video ({exc.__class__.__name__}: {exc})",
            "re-encode it, e.g. ffmpeg -i in -c:v libx264 out.mp4, or remove it",
            path,
        ) from exc
    if not container.streams.video:
        container.close()
        raise VideoError("contains no video stream", "pass a video file", path)
    return container


def probe(path: str | Path) -> VideoInfo:
    path = Path(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        return VideoInfo(
            str(path),
            stream.codec_context.width,
            stream.codec_context.height,
            float(rate) if rate else None,
            duration,
            stream.codec_context.name,
            stream.frames or None,
        )
    finally:
        container.close()


def resize_and_crop(rgb: np.ndarray, config: DecodeConfig) -> np.ndarray:
    """Bilinear resize (to the short side, or to ``resize`` exactly), then a centre ``crop`` square if set."""
    import cv2  # here, so the settings above load without OpenCV (wtal --help)

    height, width = rgb.shape[:2]
    crop = config.crop
    if config.resize is not None:
        new_w, new_h = config.resize
    else:
        scale = config.short_side / min(height, width)
        new_w, new_h = max(crop or 1, round(width * scale)), max(crop or 1, round(height * scale))
    resized = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    if crop is None:
        return resized
    top, left = (new_h - crop) // 2, (new_w - crop) // 2
    return resized[top : top + crop, left : left + crop]


def upright(frame) -> np.ndarray:
    """The frame as RGB, turned by its display rotation (a multiple of 90 degrees)."""
    rgb = frame.to_ndarray(format="rgb24")
    turns = round((frame.rotation or 0) / 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, k=turns)) if turns else rgb


def iter_frames(
    path: str | Path, config: DecodeConfig | None = None, stats: DecodeStats | None = None
) -> Iterator[Frame]:
    """Yield frames resampled to ``config.fps``; raises VideoError on unreadable or empty input.
    ``stats``, when given, is filled in as decoding goes."""
    import av

    path = Path(path)
    config = config or DecodeConfig()
    container = _open(path)
    stats = stats if stats is not None else DecodeStats()
    step = Fraction(config.fps).limit_denominator(1001)
    emitted = 0
    held: tuple[float, Any] | None = None  # (source_time, av.VideoFrame) currently on screen
    first_time = None
    last_duration = None

    def emit_until(limit: float) -> Iterator[Frame]:
        nonlocal emitted
        assert held is not None  # called once a frame is on screen
        while float(emitted / step) < limit - _PTS_TOLERANCE:
            rgb = resize_and_crop(upright(held[1]), config)
            yield Frame(emitted, float(emitted / step), held[0], rgb)
            emitted += 1

    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fallback_rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            t = float(frame.pts * frame.time_base)
            if first_time is None:
                first_time = t
            t -= first_time
            if held is not None:
                if t <= held[0]:  # out-of-order or duplicate timestamp: keep the earlier frame
                    continue
                yield from emit_until(t)
            held = (t, frame)
            stats.source_frames += 1
            stats.rotation = int(frame.rotation or 0)
            if frame.duration:
                last_duration = float(frame.duration * frame.time_base)
        if held is None:
            raise VideoError("has no decodable frames", "the file is empty or broken; remove it", path)
        stats.span = held[0] + (last_duration or float(1 / fallback_rate))
        yield from emit_until(stats.span)
    except av.error.FFmpegError as exc:
        raise VideoError(
            f"decoding failed after {emitted} frames ({exc})",
            "the file is truncated or corrupt; re-encode or remove it",
            path,
        ) from exc
    finally:
        container.close()
