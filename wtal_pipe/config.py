"""Parameters of the extraction stages.

Each dataclass is what keys its stage's cache and what is written into the provenance JSON next to
every feature file, so two feature files can always be told apart by their settings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import WtalError

#: TV-L1 / DIS presets. ``tvl1`` is OpenCV's default TV-L1 (the published THUMOS14 convention).
FLOW_PRESETS: dict[str, dict] = {
    "tvl1": {"algorithm": "tvl1", "tau": 0.25, "lambda_": 0.15, "theta": 0.3, "nscales": 5,
             "warps": 5, "epsilon": 0.01, "inner_iterations": 30, "outer_iterations": 10,
             "scale_step": 0.8, "gamma": 0.0, "median_filtering": 5},
    "tvl1-fast": {"algorithm": "tvl1", "tau": 0.25, "lambda_": 0.15, "theta": 0.3, "nscales": 3,
                  "warps": 3, "epsilon": 0.01, "inner_iterations": 30, "outer_iterations": 10,
                  "scale_step": 0.5, "gamma": 0.0, "median_filtering": 5},
    "dis": {"algorithm": "dis", "preset": "medium"},
}


@dataclass(frozen=True)
class DecodeConfig:
    fps: float = 25.0  # output frame rate; frames are picked by timestamp, not by index
    short_side: int = 256  # bilinear resize so the shorter side has this many pixels
    crop: int = 224  # then a centre square crop of this size

    def __post_init__(self):
        if not math.isfinite(self.fps) or self.fps <= 0:
            raise WtalError(f"fps must be a positive number, got {self.fps}", "pass e.g. --fps 25")
        if self.crop < 1 or self.short_side < 1:
            raise WtalError(f"crop {self.crop} and short side {self.short_side} must be at least 1 pixel",
                            "pass e.g. --short-side 256 --crop 224")
        if self.crop > self.short_side:
            raise WtalError(f"crop {self.crop} is larger than short side {self.short_side}",
                            "use --crop <= --short-side")


@dataclass(frozen=True)
class FlowConfig:
    preset: str = "tvl1"  # one of FLOW_PRESETS
    bound: float = 20.0  # flow is clipped to +-bound pixels, then scaled to [-1, 1]

    def __post_init__(self):
        if self.preset not in FLOW_PRESETS:
            raise WtalError(f"unknown flow preset {self.preset!r}",
                            f"choose one of {', '.join(FLOW_PRESETS)}")

    @property
    def params(self) -> dict:
        return FLOW_PRESETS[self.preset]


@dataclass(frozen=True)
class FeatureConfig:
    chunk: int = 16  # frames per feature row (non-overlapping)
    rgb_weights: str | None = None  # checkpoint path; None = random weights (loudly warned)
    flow_weights: str | None = None
    precision: str = "auto"  # fp32 | bf16 | auto (bf16 on CUDA / CPUs with native bf16)
    batch_size: int = 8  # chunks per forward pass

    def __post_init__(self):
        if self.precision not in ("auto", "fp32", "bf16"):
            raise WtalError(f"unknown precision {self.precision!r}", "use fp32, bf16 or auto")
        if self.chunk < 1:
            raise WtalError(f"chunk must be >= 1, got {self.chunk}")
        if self.batch_size < 1:
            raise WtalError(f"batch size must be >= 1, got {self.batch_size}")
