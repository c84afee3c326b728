"""Synthetic clips: textured backgrounds with moving shapes, written with PyAV.

Used by ``wtal make-sample`` (one clip, or a folder of clips per class standing in for a user's own videos),
the demo's planted-action dataset and the tests, so nothing needs a download. Shapes differ by colour, form
and motion so that even random-weight I3D features can tell the planted "actions" apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import cast

import cv2
import numpy as np


@dataclass(frozen=True)
class ActionStyle:
    """How a planted action looks: a coloured shape moving along a path."""

    name: str
    color: tuple[int, int, int]  # RGB
    shape: str  # "square" | "disc" | "bar"
    motion: str  # "horizontal" | "vertical" | "circle"


ACTION_STYLES: tuple[ActionStyle, ...] = (
    ActionStyle("red_square_horizontal", (230, 40, 40), "square", "horizontal"),
    ActionStyle("green_disc_vertical", (40, 220, 60), "disc", "vertical"),
    ActionStyle("blue_bar_circle", (50, 80, 240), "bar", "circle"),
    ActionStyle("yellow_disc_horizontal", (240, 220, 40), "disc", "horizontal"),
)


@dataclass(frozen=True)
class PlantedAction:
    style: ActionStyle
    start: float  # seconds
    end: float


def textured_background(height: int, width: int, seed: int) -> np.ndarray:
    """Smooth random texture (gives optical flow something to lock onto)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(40, 200, size=(max(2, height // 16), max(2, width // 16), 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def _draw(frame: np.ndarray, style: ActionStyle, phase: float) -> None:
    height, width = frame.shape[:2]
    radius = max(4, min(height, width) // 8)
    amp_x, amp_y = width / 2 - radius - 1, height / 2 - radius - 1
    wave = np.sin(2 * np.pi * phase)
    cx, cy = width / 2, height / 2
    if style.motion == "horizontal":
        cx += amp_x * wave
    elif style.motion == "vertical":
        cy += amp_y * wave
    else:
        cx += amp_x * 0.7 * np.cos(2 * np.pi * phase)
        cy += amp_y * 0.7 * wave
    center = (round(cx), round(cy))
    if style.shape == "disc":
        cv2.circle(frame, center, radius, style.color, thickness=-1)
    elif style.shape == "square":
        cv2.rectangle(
            frame,
            (center[0] - radius, center[1] - radius),
            (center[0] + radius, center[1] + radius),
            style.color,
            thickness=-1,
        )
    else:
        cv2.rectangle(
            frame,
            (center[0] - radius // 3, center[1] - 2 * radius),
            (center[0] + radius // 3, center[1] + 2 * radius),
            style.color,
            thickness=-1,
        )


def render_frames(
    seconds: float,
    fps: float,
    width: int,
    height: int,
    actions: Sequence[PlantedAction] = (),
    seed: int = 0,
    period: float = 1.6,
    pan: float = 0.0,
    pauses: Sequence[tuple[float, float]] = (),
) -> Iterable[np.ndarray]:
    """RGB frames of a textured scene in which each action's shape moves during its interval.

    ``pan`` scrolls the background by that many pixels per frame (a panning camera) except during
    ``pauses`` (start, end seconds), which are then truly static stretches.
    """
    background = textured_background(height, width * 2, seed)
    offset = 0.0
    for index in range(round(seconds * fps)):
        t = index / fps
        if not any(a <= t < b for a, b in pauses):
            offset += pan
        frame = np.ascontiguousarray(np.roll(background, -round(offset), axis=1)[:, :width])
        for action in actions:
            if action.start <= t < action.end:
                _draw(frame, action.style, (t - action.start) / period)
        yield frame


def write_video(
    path: str | Path,
    frames: Iterable[np.ndarray],
    fps: float = 25.0,
    codec: str = "libx264",
    times: Sequence[float] | None = None,
    options: dict | None = None,
    container_options: dict | None = None,
    rotation: int = 0,
) -> Path:
    """Encode RGB frames; ``times`` (seconds) gives explicit timestamps for variable frame rate,
    ``container_options`` go to the muxer (e.g. ``{"movflags": "+faststart"}``), ``rotation`` is a
    display rotation in degrees counter-clockwise (as a portrait phone video carries)."""
    import av

    from ..cache import atomic_path

    path = Path(path)
    rate = Fraction(fps).limit_denominator(1001)
    pix_fmt = {"libx264rgb": "rgb24", "ffv1": "bgr0", "mjpeg": "yuvj420p", "png": "rgb24"}.get(codec, "yuv420p")
    with (
        atomic_path(path, keep_suffix=True) as tmp,
        av.open(str(tmp), mode="w", options=container_options or {}) as container,
    ):
        stream = cast("av.video.stream.VideoStream", container.add_stream(codec, rate=rate, options=options or {}))
        stream.pix_fmt = pix_fmt
        if rotation:
            stream.set_display_rotation(rotation)
        time_base = Fraction(1, 90000) if times is not None else 1 / rate
        stream.codec_context.time_base = time_base
        for index, rgb in enumerate(frames):
            if index == 0:
                stream.height, stream.width = rgb.shape[:2]
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = round(times[index] / time_base) if times is not None else index
            frame.time_base = time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def make_sample(
    path: str | Path, seconds: float = 8.0, fps: float = 30.0, size: tuple[int, int] = (320, 240), seed: int = 0
) -> tuple[Path, list[PlantedAction]]:
    """A small clip with two planted actions; returns the file and what was planted where."""
    actions = [PlantedAction(ACTION_STYLES[0], 1.5, 3.5), PlantedAction(ACTION_STYLES[1], 5.0, 7.0)]
    frames = render_frames(seconds, fps, size[0], size[1], actions, seed=seed)
    return write_video(path, frames, fps=fps), actions


def make_class_folders(
    out: str | Path,
    classes: int = 2,
    per_class: int = 4,
    seconds: float = 8.0,
    fps: float = 25.0,
    size: tuple[int, int] = (320, 240),
    seed: int = 0,
) -> Path:
    """What a user with their own clips has: ``OUT/<class>/<class>_<k>.mp4``, one action of its class in each
    (2-3.5 s somewhere in the clip, a panning camera around it), and ``OUT/labels.csv`` as ``wtal import labels``
    reads it: every clip's label, the last clip of each class in the test subset with its segment (so a test
    can be scored), the others in train with the label only (weak supervision). Returns the CSV's path."""
    import csv

    from ..cache import atomic_path

    if not 1 <= classes <= len(ACTION_STYLES) or per_class < 2:
        raise ValueError(f"1..{len(ACTION_STYLES)} classes of 2 or more clips each")
    out, rng = Path(out), np.random.default_rng(seed)
    rows = []
    for style in ACTION_STYLES[:classes]:
        for k in range(per_class):
            length = float(rng.uniform(2.0, 3.5)) * min(1.0, seconds / 8)
            margin = min(0.5, (seconds - length) / 2)
            start = round(float(rng.uniform(margin, seconds - length - margin)), 2)
            action = PlantedAction(style, start, round(start + length, 2))
            frames = render_frames(seconds, fps, size[0], size[1], [action], seed=int(rng.integers(1 << 30)), pan=1.0)
            video = write_video(out / style.name / f"{style.name}_{k}.mp4", frames, fps=fps)
            test = k == per_class - 1
            rows.append(
                [video.stem, style.name, "test" if test else "train", *([start, action.end] if test else ["", ""])]
            )
    labels = out / "labels.csv"
    with atomic_path(labels) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["video", "label", "subset", "start", "end"])
        writer.writerows(rows)
    return labels
