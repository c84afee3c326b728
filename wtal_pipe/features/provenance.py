"""The records of extraction: what decoding and the flow stage wrote (:class:`FramesRecord`, :class:`FlowRecord`,
kept beside their cache entries), and the ``.json`` beside every feature file: how the features were made
(``wtal extract``), or where they came from (``wtal import``, generated test data). One writer and one reader
for every stage, so users can always tell which convention a feature file follows.
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..cache import read_json
from ..video import decode, flow
from .config import ExtractionConfig

if TYPE_CHECKING:
    from .plan import VideoPlan
    from .two_stream import I3DPair

_CONVENTION = ExtractionConfig()  # the THUMOS14 I3D convention: 16-frame rows at 25 fps
DEFAULT_SECONDS_PER_ROW = _CONVENTION.seconds_per_row
DEFAULT_FRAMES_PER_ROW = _CONVENTION.features.chunk
DEFAULT_FPS = _CONVENTION.decode.fps


@dataclass(frozen=True)
class Provenance:
    """What a feature file's record says (all None when it has no record)."""

    source_fps: float | None = None  # frame rate of the source video, when known
    duration: float | None = None  # seconds decoded (extracted features)
    extraction: ExtractionConfig | None = None  # how ``wtal extract`` made them; None for imported ones
    timing: dict[str, Any] | None = None  # the declared row timing of imported or generated features
    keys: dict[str, str] = field(default_factory=dict)  # cache keys of the stages (frames, flow, features)
    video: str | None = None  # the source video file
    fingerprint: str | None = None  # its content fingerprint
    digest: dict | None = None  # size and sha256 of the feature file

    @classmethod
    def read(cls, features_path: str | Path) -> Provenance:
        """The record beside ``features_path``; a missing or unreadable one gives an empty Provenance."""
        raw = read_json(Path(features_path).with_suffix(".json"))
        if not isinstance(raw, dict):
            return cls()
        try:
            source: dict[str, Any] = raw["source"] if isinstance(raw.get("source"), dict) else {}
            return cls(
                source_fps=source.get("fps"),
                duration=raw.get("duration"),
                extraction=ExtractionConfig.from_dict(raw["extraction"]) if "extraction" in raw else None,
                timing=_timing(raw),
                keys=dict(
                    raw.get("keys")
                    or {
                        name: raw[old]
                        for name, old in (  # records before "keys"
                            ("frames", "frames_key"),
                            ("flow", "flow_key"),
                            ("features", "cache_key"),
                        )
                        if old in raw
                    }
                ),
                video=raw.get("video"),
                fingerprint=raw.get("video_fingerprint"),
                digest=raw.get("digest"),
            )
        except (TypeError, ValueError, KeyError, AttributeError):
            return cls()


def _timing(raw: dict[str, Any]) -> dict[str, Any] | None:
    """A record's row timing: its ``timing``, or (records of earlier versions) its ``seconds_per_row`` for
    rows of ``chunk`` (16) frames."""
    if isinstance(raw.get("timing"), dict):
        return dict(raw["timing"])
    if "seconds_per_row" in raw and "extraction" not in raw:
        chunk = int(raw.get("chunk", DEFAULT_FRAMES_PER_ROW))
        return {"fps": chunk / float(raw["seconds_per_row"]), "frames_per_row": chunk, "stride": chunk}
    return None


@dataclass(frozen=True)
class Coverage:
    """How much of what the container declares was decoded."""

    decoded_seconds: float
    declared_seconds: float | None
    decoded_frames: int
    declared_frames: int | None
    missing_seconds: float
    partial: bool


@dataclass(frozen=True)
class FramesRecord:
    """What decoding produced and saw; ``digest`` is the frames cache's (None when the frames went
    straight to the device)."""

    key: str
    n_frames: int
    fps: float
    duration: float
    source: dict[str, Any]  # decode.VideoInfo as a dict
    rotation: int
    coverage: Coverage
    digest: dict | None

    @classmethod
    def of(
        cls, plan: VideoPlan, n_frames: int, info: decode.VideoInfo, stats: decode.DecodeStats, digest: dict | None
    ) -> FramesRecord:
        fps = plan.extraction.decode.fps
        coverage = Coverage(
            decoded_seconds=round(stats.span, 4),
            declared_seconds=info.duration,
            decoded_frames=stats.source_frames,
            declared_frames=info.frames,
            missing_seconds=round(stats.missing_seconds(info), 4),
            partial=stats.is_partial(info),
        )
        return cls(plan.keys.frames, n_frames, fps, n_frames / fps, asdict(info), stats.rotation, coverage, digest)

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> FramesRecord:
        return cls(**{**record, "coverage": Coverage(**record["coverage"])})


@dataclass(frozen=True)
class FlowRecord:
    """What the flow stage wrote: from which frames, with which engine and parameters, stored how."""

    key: str
    frames_key: str
    n_frames: int
    preset: str
    params: dict[str, Any]
    bound: float
    storage: str
    digest: dict

    @classmethod
    def of(cls, plan: VideoPlan, n_frames: int, digest: dict) -> FlowRecord:
        config = plan.extraction.flow
        return cls(
            plan.keys.flow, plan.keys.frames, n_frames, config.preset, config.params, config.bound, flow.STORAGE, digest
        )


def library_versions() -> dict[str, str]:
    import av
    import cv2
    import numpy as np
    import torch

    return {
        "wtal_pipe": __version__,
        "torch": torch.__version__,
        "av": av.__version__,
        "opencv": cv2.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def extracted_record(
    *, plan: VideoPlan, frames: FramesRecord, model: I3DPair, shape: tuple[int, ...], digest: dict
) -> dict[str, Any]:
    """The record ``wtal extract`` writes beside a feature file (``frames``: the decode stage's record)."""
    extraction, source = plan.extraction, frames.source
    return {
        "extraction": extraction.to_dict(),
        "seconds_per_row": extraction.seconds_per_row,
        "keys": asdict(plan.keys),
        "video": str(plan.video.resolve()),
        "video_fingerprint": plan.fingerprint,
        "shape": list(shape),
        "digest": digest,
        "layout": "row k = frames [k * chunk, (k + 1) * chunk) at fps; columns [0:D/2] RGB I3D, [D/2:D] flow I3D",
        "n_frames": frames.n_frames,
        "duration": frames.duration,
        "tail_frames_dropped": frames.n_frames % extraction.features.chunk,
        "coverage": asdict(frames.coverage),
        "rotation": frames.rotation,
        "source": {
            "width": source["width"],
            "height": source["height"],
            "fps": source["source_fps"],
            "duration": source["duration"],
            "codec": source["codec"],
        },
        "preprocessing": {
            "resize": "bilinear short side, centre crop",
            "rgb_scale": "x / 127.5 - 1",
            "flow_scale": "clip(f, -bound, bound) / bound, stored as uint8",
        },
        "weights": {stream: info.record() for stream, info in model.weights.items()},
        "precision": model.precision,
        "device": str(model.device),
        "versions": library_versions(),
    }
