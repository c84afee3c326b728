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


Crops = Literal["center", "ten"]
CROPS: tuple[str, ...] = get_args(Crops)
I3D_SIZE = 224  # the square I3D sees: frames larger than it are cropped to it (one crop, or ten)


@dataclass(frozen=True)
class FeatureConfig:
    chunk: int = 16  # frames per feature row
    rgb_weights: str | None = None  # checkpoint path or registry name; None = random weights (loudly warned)
    flow_weights: str | None = None
    precision: str = "auto"  # one of PRECISIONS
    batch_size: int = 8  # chunks per forward pass
    stride: int | None = None  # frames from one row's start to the next (None: chunk, rows do not overlap)
    crops: str = "center"  # one of CROPS: frames larger than I3D_SIZE give their centre, or ten crops averaged
    rows: int | None = None  # resample each video's rows to this many (fixed-length releases), None: keep them

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise WtalError(f"unknown precision {self.precision!r}", f"use {', '.join(PRECISIONS)}")
        if self.crops not in CROPS:
            raise WtalError(f"unknown crops {self.crops!r}", f"use {', '.join(CROPS)}")
        if min(self.chunk, self.batch_size, self.stride or 1, self.rows or 1) < 1:
            raise WtalError(
                f"chunk {self.chunk}, batch size {self.batch_size}, stride {self.stride} and rows {self.rows} "
                "must be at least 1"
            )

    @property
    def step(self) -> int:
        """Frames from one row's start to the next."""
        return self.stride or self.chunk

    def layout(self) -> dict[str, Any]:
        """How rows are cut and cropped, where it differs from the THUMOS14 convention (keys the features)."""
        layout = {"stride": self.step if self.step != self.chunk else None, "crops": self.crops, "rows": self.rows}
        return {k: v for k, v in layout.items() if v not in (None, "center")}

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

    recipe: str | None = None  # the recipe these settings came from (features/recipes.py), if any

    @property
    def seconds_per_row(self) -> float:
        """Seconds from one row's start to the next (before any resampling to a fixed number of rows)."""
        return self.features.step / self.decode.fps

    def to_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "decode": asdict(self.decode),
            "flow": asdict(self.flow) | {"params": self.flow.params},
            "features": asdict(self.features),
        }
        return record | ({"recipe": self.recipe} if self.recipe else {})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExtractionConfig:
        flow = {k: v for k, v in data.get("flow", {}).items() if k != "params"}
        return cls(
            DecodeConfig(**data.get("decode", {})),
            FlowConfig(**flow),
            FeatureConfig(**data.get("features", {})),
            data.get("recipe"),
        )

    def replace(self, **changes: Any) -> ExtractionConfig:
        """A copy with some fields of its parts changed, e.g. ``replace(preset="dis", rgb_weights=None)``."""
        parts: dict[str, Any] = {
            "decode": asdict(self.decode),
            "flow": asdict(self.flow),
            "features": asdict(self.features),
            "recipe": self.recipe,
        }
        for name, value in changes.items():
            if name == "recipe":
                parts["recipe"] = value
                continue
            owner = next((part for part in parts.values() if isinstance(part, dict) and name in part), None)
            if owner is None:
                raise ValueError(f"no extraction setting named {name!r}")
            owner[name] = value
        return ExtractionConfig.from_dict(parts)
