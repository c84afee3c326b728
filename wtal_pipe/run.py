"""A run directory (RUN_DIR): what ``wtal train`` or ``wtal import checkpoint`` writes and ``wtal test`` /
``wtal localize`` read.

::

    RUN_DIR/checkpoint.pt     the weights, the run metadata and a digest of both (loads with weights_only)
    RUN_DIR/config.json       the run metadata, for people
    RUN_DIR/train_log.jsonl   one line of loss terms per step (trained runs)
    RUN_DIR/localize/         wtal localize's extraction cache for new clips

The directory is written whole or not at all (:func:`~wtal_pipe.cache.atomic_dir`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from .cache import atomic_path
from .config import ExtractionConfig
from .device import resolve_device
from .errors import DataError
from .methods import get_method
from .methods.base import Method
from .methods.settings import MethodConfig
from .state_files import load_trusted_types

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
LOG = "train_log.jsonl"
FORMAT = "wtal-pipe/3"  # settings grouped by purpose (training, network, localization)
READABLE = (FORMAT, "wtal-pipe/2")  # /2: one flat dict of settings


@dataclass
class RunMeta:
    """What a run records about its model."""

    method: str
    config: dict[str, Any]  # the method's settings, plain values, by group (MethodConfig.to_dict)
    feature_dim: int
    classes: list[str]
    data_dir: str  # the dataset it was trained on (or imported next to)
    extraction: ExtractionConfig | None  # how its features were extracted; None for imported or generated ones
    seed: int | None = None
    subset: str | None = None
    videos: int | None = None
    negatives: int | None = None
    clicks: str | None = None  # "real", "simulated" or "none"
    device: str | None = None
    checkpoint: str = "final (no test-set selection)"
    imported_from: list[dict[str, str]] | None = None  # official checkpoint files and their sha256
    format: str = FORMAT

    @property
    def random_weights(self) -> bool:
        """True when the training features came from random-weight I3D streams."""
        return self.extraction is not None and self.extraction.features.random_weights

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"extraction": self.extraction.to_dict() if self.extraction else None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunMeta:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        extraction = values.get("extraction")
        values["extraction"] = ExtractionConfig.from_dict(extraction) if extraction else None
        return cls(**values)


def checkpoint_digest(meta: dict[str, Any], state: dict[str, torch.Tensor]) -> str:
    """sha256 over the run metadata and every tensor's name, dtype, shape and bytes: a damaged
    checkpoint.pt is refused instead of loading changed weights."""
    digest = hashlib.sha256(json.dumps(meta, sort_keys=True, default=str).encode())
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_checkpoint(path: Path, meta: RunMeta, model: Method) -> None:
    state = {k: v.cpu() for k, v in model.state_dict().items()}
    record = meta.to_dict()
    with atomic_path(path) as tmp:
        torch.save({**record, "state_dict": state, "digest": checkpoint_digest(record, state)}, tmp)


def load_run(run_dir: str | Path, device: str = "cpu", overrides: dict | None = None) -> tuple[Method, RunMeta]:
    """The trained model (eval mode) and its metadata from RUN_DIR/checkpoint.pt; ``overrides`` change
    localization settings only (a setting that changes what the weights mean is refused)."""
    path = Path(run_dir) / CHECKPOINT
    if not path.exists():
        raise DataError("no checkpoint in this run directory", "train first: wtal train --out RUN_DIR", run_dir)
    saved = load_trusted_types(path, "re-train the run")
    if not isinstance(saved, dict) or saved.get("format") not in READABLE:
        found = saved.get("format") if isinstance(saved, dict) else None
        fix = (
            "it was written by an older wtal-pipe whose methods were not yet the official ones: re-train it"
            if isinstance(found, str) and found.startswith("wtal-pipe/")
            else "pass the RUN_DIR written by wtal train"
        )
        raise DataError("not a checkpoint of this wtal-pipe version", fix, path)
    record = {k: v for k, v in saved.items() if k not in ("state_dict", "digest")}
    state = saved.get("state_dict")
    if not isinstance(state, dict) or saved.get("digest") != checkpoint_digest(record, state):
        raise DataError(
            "damaged: its contents do not match the digest written with it",
            "re-train the run, or restore the file from a copy",
            path,
        )
    meta = RunMeta.from_dict(record)
    cls = get_method(meta.method)
    config = cls.configure(overrides or {}, base=cls.from_saved(meta.config), only=("localization",))
    model = cls(meta.feature_dim, len(meta.classes), config)
    model.load_state_dict(state)
    return model.to(resolve_device(device)).eval(), meta


def run_meta(
    method: str,
    config: MethodConfig,
    *,
    classes: list[str],
    feature_dim: int,
    data_dir: Path,
    features: Path | None,
    **extra: Any,
) -> RunMeta:
    """The metadata of a run trained or imported on DATA_DIR; ``features`` is one of its feature files,
    whose provenance says how they were extracted."""
    from .provenance import Provenance

    extraction = Provenance.read(features).extraction if features else None
    data = str(Path(data_dir).resolve())
    return RunMeta(method, config.to_dict(), feature_dim, classes, data, extraction, **extra)


@dataclass
class Run:
    """Paths inside one RUN_DIR."""

    root: Path
    checkpoint: Path = field(init=False)
    config: Path = field(init=False)
    log: Path = field(init=False)
    localize_cache: Path = field(init=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.checkpoint, self.config = self.root / CHECKPOINT, self.root / CONFIG
        self.log, self.localize_cache = self.root / LOG, self.root / "localize"
