"""Intervals on a time axis: runs of a mask and temporal IoU (one owner for what every stage needs)."""

from __future__ import annotations

import numpy as np


def runs_2d(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, start, end inclusive) of every run of True in each row of a (K, N) mask, row by row and
    in time order within a row."""
    padded = np.zeros((mask.shape[0], mask.shape[1] + 2), bool)
    padded[:, 1:-1] = mask
    rows, starts = np.nonzero(~padded[:, :-1] & padded[:, 1:])
    _, ends = np.nonzero(padded[:, :-1] & ~padded[:, 1:])
    return rows, starts, ends - 1


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end] (inclusive) of each run of True in a 1-D mask."""
    _, starts, ends = runs_2d(np.asarray(mask, bool)[None])
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def tiou(target: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Temporal IoU of one [start, end] with each row of (N, 2)."""
    inter = (np.minimum(target[1], candidates[:, 1]) - np.maximum(target[0], candidates[:, 0])).clip(0)
    union = (candidates[:, 1] - candidates[:, 0]) + (target[1] - target[0]) - inter
    return inter.astype(float) / union
