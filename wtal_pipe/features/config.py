"""How features are extracted: the I3D stage's settings and :class:`ExtractionConfig`, which joins them with
the decode (``video/decode.py``) and flow (``video/flow_engines.py``) settings.

Each settings dataclass keys its stage's cache and is written into the provenance JSON next to every feature
file (as one :class:`ExtractionConfig`), and a trained run carries the same object, so a new clip is
extracted exactly as the training features were. The CLI takes its defaults from here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

from ..errors import WtalError
from ..video.decode import DecodeConfig
from ..video.flow_engines import FlowConfig

Precision = Literal["auto", "fp32", "bf16"]  # auto: fp32 (device.resolve_precision says why)
PRECISIONS: tuple[str, ...] = get_args(Precision)


@dataclass(frozen=True)
class FeatureConfig:
    chunk: int = 16  # frames per feature row (non-overlapping)
    rgb_weights: str | None = None  # checkpoint path or registry name; None = random weights (loudly warned)
    flow_weights: str | None = None
    precision: str = "auto"  # one of PRECISIONS
    batch_size: int = 8  # chunks per forward pass

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise WtalError(f"unknown precision {self.precision!r}", f"use {', '.join(PRECISIONS)}")
        if self.chunk < 1:
            raise WtalError(f"chunk must be >= 1, got {self.chunk}")
        if self.batch_size < 1:
            raise WtalError(f"batch size must be >= 1, got {self.batch_size}")

    @property
    def random_weights(self) -> bool:
        """True when a stream has no checkpoint and runs on seeded random weights."""
        return self.rgb_weights is None or self.flow_weights is None


@dataclass(frozen=True)
class ExtractionConfig:
    """How a feature file was made: decoding, flow and the I3D streams."""

    decode: DecodeConfig = field(default_factory=DecodeConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)

    @property
    def seconds_per_row(self) -> float:
        return self.features.chunk / self.decode.fps

    def to_dict(self) -> dict[str, Any]:
        return {
            "decode": asdict(self.decode),
            "flow": asdict(self.flow) | {"params": self.flow.params},
            "features": asdict(self.features),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExtractionConfig:
        flow = {k: v for k, v in data.get("flow", {}).items() if k != "params"}
        return cls(
            DecodeConfig(**data.get("decode", {})), FlowConfig(**flow), FeatureConfig(**data.get("features", {}))
        )

    def replace(self, **changes: Any) -> ExtractionConfig:
        """A copy with some fields of its parts changed, e.g. ``replace(preset="dis", rgb_weights=None)``."""
        parts = {"decode": asdict(self.decode), "flow": asdict(self.flow), "features": asdict(self.features)}
        for name, value in changes.items():
            owner = next((part for part in parts.values() if name in part), None)
            if owner is None:
                raise ValueError(f"no extraction setting named {name!r}")
            owner[name] = value
        return ExtractionConfig.from_dict(parts)
