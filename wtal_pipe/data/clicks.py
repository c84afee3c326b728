"""Background clicks (BackTAL's supervision): ``{"video_id": [seconds, ...]}``, read strictly, and the
simulated annotator BackTAL's paper uses."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..intervals import runs

Clicks = dict[str, list[float]]
FORMAT = 'expected {"video_id": [seconds, ...]}'


def _seconds(value: object) -> float | None:
    """A click time as a float, or None when it is none (a string, a boolean, a nested value, NaN, inf)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        seconds = float(value)
    except OverflowError:  # an integer of hundreds of digits
        return None
    return seconds if math.isfinite(seconds) else None


def parse_clicks(data: object) -> Clicks:
    """``{"video_id": [seconds, ...]}`` with every time a finite number, sorted; anything else is a
    ValueError naming the video."""
    if not isinstance(data, dict):
        raise ValueError(f"a JSON {type(data).__name__}, not an object of videos")
    clicks: Clicks = {}
    for vid, times in data.items():
        if not isinstance(times, list):
            raise ValueError(f"video {vid}: clicks are a {type(times).__name__}, not a list of seconds")
        seconds = [_seconds(t) for t in times]
        bad = next((t for t, s in zip(times, seconds, strict=True) if s is None), None)
        if len(times) and any(s is None for s in seconds):
            raise ValueError(f"video {vid}: click {bad!r} is not a finite number of seconds")
        clicks[str(vid)] = sorted(s for s in seconds if s is not None)
    return clicks


def read_clicks(path: Path) -> Clicks:
    try:
        return parse_clicks(json.loads(path.read_text()))
    except (ValueError, RecursionError, UnicodeDecodeError) as exc:
        raise DataError(f"bad clicks file: {exc}", FORMAT, path) from exc


def simulate_clicks(
    segments: list[tuple[float, float, int]], duration: float, frame_rate: float, rng: np.random.Generator
) -> np.ndarray:
    """One background click (seconds) at a random frame of every background run of the ground truth, as
    BackTAL simulates annotators (a video without segments: one click anywhere, a guess)."""
    frames = max(1, round(duration * frame_rate))
    foreground = np.zeros(frames, bool)
    for start, end, _ in segments:
        foreground[max(0, int(np.floor(start * frame_rate))) : int(np.ceil(end * frame_rate))] = True
    clicks = [rng.integers(a, b + 1) / frame_rate for a, b in runs(~foreground)]
    return np.asarray(clicks, float)
