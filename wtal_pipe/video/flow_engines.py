"""Optical-flow engines behind one protocol, registered by name; the flow presets ``--flow`` offers.

An engine turns consecutive frames into flow between them. The extraction stages never look at which
engine it is: they ask :func:`make_flow_engine` for one and read only :attr:`FlowEngine.on_device`
(whether it takes torch tensors on the extraction device, batched, or NumPy arrays in CPU worker
processes). This module imports neither OpenCV nor torch, so the CLI can list the presets instantly;
an engine's module is imported when the engine is first made.

Adding an engine is one module with a class that keeps :class:`FlowEngine`, plus one line in
:data:`FLOW_ENGINES`; its name is then a ``--flow`` preset with its default parameters.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Protocol

from ..errors import WtalError


@dataclass(frozen=True)
class TVL1Params:
    """The Dual TV-L1 parameters, named as in ``cv2.optflow.DualTVL1OpticalFlow_create``, with OpenCV's
    defaults (the published THUMOS14 convention); the one owner of these values for both TV-L1 engines."""

    tau: float = 0.25
    lambda_: float = 0.15
    theta: float = 0.3
    nscales: int = 5
    warps: int = 5
    epsilon: float = 0.01
    inner_iterations: int = 30
    outer_iterations: int = 10
    scale_step: float = 0.8
    gamma: float = 0.0
    median_filtering: int = 5

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> TVL1Params:
        return cls(**{k: v for k, v in params.items() if k != "algorithm"})


class FlowEngine(Protocol):
    """Flow between consecutive frames.

    ``pairs`` takes ``n + 1`` frames, (n + 1, H, W, 3) uint8 RGB, and returns the ``n`` flows from each
    frame to the next, (n, H, W, 2) float32 pixels (dx, dy): NumPy arrays for a CPU engine, torch
    tensors on the engine's device for an ``on_device`` one.
    """

    on_device: ClassVar[bool]

    def __init__(self, params: Mapping[str, Any], device: str = "cpu") -> None: ...

    def pairs(self, frames: Any) -> Any: ...


@dataclass(frozen=True)
class EngineEntry:
    """Where an engine's class lives (``module:Class``, imported on first use) and its default parameters."""

    target: str
    defaults: Mapping[str, Any]


#: engine name -> entry; each name is also the ``--flow`` preset of the engine's defaults
FLOW_ENGINES: dict[str, EngineEntry] = {
    "tvl1": EngineEntry("wtal_pipe.video.opencv_flow:OpenCVTVL1", asdict(TVL1Params())),
    "tvl1-torch": EngineEntry("wtal_pipe.video.tvl1_torch:TorchTVL1", asdict(TVL1Params())),
    "dis": EngineEntry("wtal_pipe.video.opencv_flow:OpenCVDIS", {"preset": "medium"}),
}

#: presets that run an engine with other parameters: name -> (engine, parameters changed)
FLOW_VARIANTS: dict[str, tuple[str, Mapping[str, Any]]] = {
    "tvl1-fast": ("tvl1", {"nscales": 3, "warps": 3, "scale_step": 0.5}),
}


@dataclass(frozen=True)
class FlowPreset:
    """An engine and its parameters, under the name ``--flow`` takes."""

    engine: str
    params: Mapping[str, Any]


def flow_presets() -> dict[str, FlowPreset]:
    """Every preset: each engine with its defaults, then the variants."""
    presets = {name: FlowPreset(name, dict(entry.defaults)) for name, entry in FLOW_ENGINES.items()}
    for name, (engine, changed) in FLOW_VARIANTS.items():
        presets[name] = FlowPreset(engine, {**FLOW_ENGINES[engine].defaults, **changed})
    return presets


def flow_preset(name: str) -> FlowPreset:
    presets = flow_presets()
    if name not in presets:
        raise WtalError(f"unknown flow preset {name!r}", f"choose one of {', '.join(presets)}")
    return presets[name]


def engine_class(engine: str) -> type[FlowEngine]:
    module, _, attribute = FLOW_ENGINES[engine].target.partition(":")
    cls: type[FlowEngine] = getattr(importlib.import_module(module), attribute)
    return cls


def make_flow_engine(preset: str, device: str = "cpu") -> FlowEngine:
    """A ready engine for a preset (``device``: where an ``on_device`` engine runs)."""
    chosen = flow_preset(preset)
    return engine_class(chosen.engine)(chosen.params, device)


@dataclass(frozen=True)
class FlowConfig:
    preset: str = "tvl1"  # a name of video.flow_engines.flow_presets(): an engine and its parameters
    bound: float = 20.0  # flow is clipped to +-bound pixels, then scaled to [-1, 1]

    def __post_init__(self) -> None:
        flow_preset(self.preset)  # an unknown name is a one-line error listing the presets

    @property
    def params(self) -> dict[str, Any]:
        """The engine's name (``algorithm``) and parameters, as the provenance records them."""
        chosen = flow_preset(self.preset)
        return {"algorithm": chosen.engine, **chosen.params}

    @property
    def on_device(self) -> bool:
        """Computed on the extraction device (PyTorch) rather than in CPU worker processes."""
        return engine_class(flow_preset(self.preset).engine).on_device
