"""OpenCV's flow engines (CPU, one pair at a time, single-threaded inside a worker process): Dual TV-L1
(opencv-contrib, the published convention) and DIS (fast, for experiments)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any, ClassVar

import cv2
import numpy as np

from .flow_engines import TVL1Params


def grey(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


class _OpenCVPairs:
    """Runs an OpenCV ``calc(prev_grey, next_grey)`` over consecutive frames, each frame converted once."""

    on_device: ClassVar[bool] = False
    _engine: Any

    def pairs(self, frames: np.ndarray) -> np.ndarray:
        flows = [self.pair(a, b) for a, b in itertools.pairwise(grey(frame) for frame in frames)]
        return np.stack(flows) if flows else np.zeros((0, *frames.shape[1:3], 2), np.float32)

    def pair(self, prev_grey: np.ndarray, next_grey: np.ndarray) -> np.ndarray:
        """(H, W) uint8 grey images -> (H, W, 2) float32 flow from the first to the second."""
        flow: np.ndarray = self._engine.calc(prev_grey, next_grey, None)
        return flow


class OpenCVTVL1(_OpenCVPairs):
    """``cv2.optflow.DualTVL1OpticalFlow`` with the given parameters (OpenCV's defaults unless changed)."""

    def __init__(self, params: Mapping[str, Any], device: str = "cpu"):
        p = TVL1Params.from_params(params)
        self._engine = cv2.optflow.DualTVL1OpticalFlow_create(  # type: ignore[attr-defined]  # contrib, no stubs
            tau=p.tau,
            lambda_=p.lambda_,
            theta=p.theta,
            nscales=p.nscales,
            warps=p.warps,
            epsilon=p.epsilon,
            innnerIterations=p.inner_iterations,  # sic: OpenCV's spelling
            outerIterations=p.outer_iterations,
            scaleStep=p.scale_step,
            gamma=p.gamma,
            medianFiltering=p.median_filtering,
            useInitialFlow=False,
        )


class OpenCVDIS(_OpenCVPairs):
    """``cv2.DISOpticalFlow`` at one of its presets (``ultrafast``, ``fast``, ``medium``)."""

    PRESETS: ClassVar[dict[str, str]] = {
        "ultrafast": "DISOPTICAL_FLOW_PRESET_ULTRAFAST",
        "fast": "DISOPTICAL_FLOW_PRESET_FAST",
        "medium": "DISOPTICAL_FLOW_PRESET_MEDIUM",
    }

    def __init__(self, params: Mapping[str, Any], device: str = "cpu"):
        preset = getattr(cv2, self.PRESETS[params["preset"]])
        self._engine = cv2.DISOpticalFlow_create(preset)  # type: ignore[attr-defined]  # not in the stubs
