"""How a video's feature rows become a model input of a fixed length, at training and at test time.

The four papers differ here, and it changes their numbers (BackTAL reports +1.6 mAP@0.5 for
interpolation over sampling), so each method's config names its modes:

- ``random``: ``num_segments`` equal spans, one random row from each (BaS-Net/UM training; the
  official ``random_perturb``: a span's draw may land on the next span's first row);
- ``uniform``: rows ``floor(i * length / num_segments)`` (BaS-Net test: short videos repeat rows);
- ``uniform-if-longer``: uniform only for videos longer than ``num_segments`` (UM test);
- ``interpolate``: linear interpolation over time to ``num_segments`` rows (BackTAL, train and test);
- ``whole``: every row (CMCS).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def random_perturb(length: int, num_segments: int, rng: np.random.Generator) -> np.ndarray:
    """One random row from each of ``num_segments`` spans; span i draws from
    ``[floor(i L / n), floor((i + 1) L / n)]`` (both ends included), the last span up to row L - 1."""
    if length == num_segments:
        return np.arange(length)
    anchors = np.arange(num_segments) * length / num_segments
    low = np.floor(anchors).astype(np.int64)
    high = np.append(low[1:], length - 1)
    return low + rng.integers(0, high - low + 1)


def uniform(length: int, num_segments: int) -> np.ndarray:
    """Evenly spaced rows ``floor(i * length / num_segments)``."""
    return np.floor(np.arange(num_segments) * length / num_segments).astype(np.int64)


def interpolate(rows: np.ndarray, num_segments: int) -> np.ndarray:
    """(T, D) -> (num_segments, D) by linear interpolation over time (half-pixel aligned, as
    ``F.interpolate(mode="linear", align_corners=False)``)."""
    x = torch.from_numpy(np.array(rows, np.float32)).T.unsqueeze(0)  # (1, D, T); a copy: memmaps are read-only
    return F.interpolate(x, size=num_segments, mode="linear", align_corners=False)[0].T.numpy()


def training_input(
    rows: np.ndarray, mode: str, num_segments: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray | None]:
    """(features for one training sample, the source row of each sampled row or None when the rows
    were interpolated)."""
    length = rows.shape[0]
    if mode == "interpolate":
        return interpolate(rows, num_segments), None
    idx = np.arange(length) if mode == "whole" else random_perturb(length, num_segments, rng)
    return np.asarray(rows[idx], np.float32), idx


def inference_input(rows: np.ndarray, mode: str, num_segments: int) -> np.ndarray:
    """The whole video as the model sees it at test time."""
    length = rows.shape[0]
    if mode == "interpolate":
        return interpolate(rows, num_segments)
    if mode == "whole" or (mode == "uniform-if-longer" and length <= num_segments):
        return np.array(rows, np.float32)  # a copy: memmaps are read-only
    return np.asarray(rows[uniform(length, num_segments)], np.float32)


def click_mask(
    click_seconds: np.ndarray,
    *,
    length: int,
    seconds_per_row: float,
    duration: float,
    source_rows: np.ndarray | None,
    num_segments: int,
) -> np.ndarray:
    """1 on the rows of a training sample that hold a background click, else 0.

    Sampled rows carry the clicks of their source row (``t / seconds_per_row``); interpolated rows
    take BackTAL's mapping ``min(n - 1, int(t / duration * n))``.
    """
    times = np.asarray(click_seconds, np.float64)
    if source_rows is None:
        mask = np.zeros(num_segments, np.float32)
        if times.size:
            mask[np.minimum(num_segments - 1, (times / duration * num_segments).astype(np.int64))] = 1.0
        return mask
    clicked = np.zeros(length, np.float32)
    if times.size:
        clicked[np.clip((times / seconds_per_row).astype(np.int64), 0, length - 1)] = 1.0
    return clicked[source_rows]
