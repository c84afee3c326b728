"""Intervals on a time axis: runs of a mask, temporal IoU and the tIoU thresholds an evaluation uses (one owner
for what every stage needs)."""

from __future__ import annotations

import math

import numpy as np

from .errors import DataError


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


def parse_tiou(spec: str) -> np.ndarray:
    """ "0.1:0.7:0.1" (inclusive range) or "0.3,0.5,0.7"; at most 100 thresholds in (0, 1]."""
    usage = "use start:stop:step like 0.1:0.7:0.1, or 0.3,0.5, with thresholds in (0, 1]"
    try:
        if ":" in spec:
            start, stop, step = map(float, spec.split(":"))
            if not all(math.isfinite(v) for v in (start, stop, step)) or step <= 0 or (stop - start) / step > 100:
                raise DataError(
                    f"bad --tiou {spec!r}: the step must be positive and give at most 100 thresholds", usage
                )
            values = np.arange(start, stop + step / 2, step)
        else:
            values = np.array([float(v) for v in spec.split(",")])
    except ValueError as exc:
        raise DataError(f"bad --tiou {spec!r}", usage) from exc
    if values.size == 0 or not np.isfinite(values).all() or values.min() <= 0 or values.max() > 1:
        raise DataError(f"bad --tiou {spec!r}", usage)
    return np.round(values, 6)
