"""A run directory (RUN_DIR): what ``wtal train`` or ``wtal import checkpoint`` writes and ``wtal test`` /
``wtal localize`` read.

::

    RUN_DIR/checkpoint.pt     the final step's weights, the run metadata and a digest of both (weights_only)
    RUN_DIR/best.pt           the best step's on the held-out videos (runs trained with --val / --select-on)
    RUN_DIR/config.json       the run metadata, for people
    RUN_DIR/train_log.jsonl   one line of loss terms per step (trained runs)
    RUN_DIR/metrics.jsonl     one line per evaluation on the held-out videos (runs trained with --val)
    RUN_DIR/localize/         wtal localize's extraction cache for new clips

The directory is written whole or not at all (:func:`~wtal_pipe.cache.atomic_dir`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import torch

from .cache import atomic_path, read_json
from .config import ExtractionConfig
from .device import resolve_device
from .errors import DataError
from .methods import get_method
from .methods.base import Method
from .methods.settings import MethodConfig
from .state_files import load_trusted_types

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
FINAL = "final step (no selection)"
CONFIG = "config.json"
LOG = "train_log.jsonl"
METRICS = "metrics.jsonl"
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
    preset: str | None = None  # the benchmark preset it was trained with (None: THUMOS14's, or imported)
    videos: int | None = None
    negatives: int | None = None
    clicks: str | None = None  # "real", "simulated" or "none"
    device: str | None = None
    checkpoint: str = FINAL  # which step these weights are, and how it was chosen, in words
    imported_from: list[dict[str, str]] | None = None  # official checkpoint files and their sha256
    held_out: dict[str, Any] | None = None  # the videos scored during training (monitor.HeldOut)
    best: dict[str, Any] | None = None  # the best step on them: {"step", "average_mAP"}
    refinement: dict[str, Any] | None = None  # wtal refine: the base run, this round, the pseudo-label settings
    format: str = FORMAT

    @property
    def selected_on_test(self) -> bool:
        """These weights are the step that scored best on the test subset (the official protocol)."""
        return self.checkpoint.startswith("selected on test")

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


Checkpoint = Literal["final", "best"]


def load_run(
    run_dir: str | Path, device: str = "cpu", overrides: dict | None = None, checkpoint: Checkpoint | None = None
) -> tuple[Method, RunMeta]:
    """The trained model (eval mode) and its metadata; ``checkpoint`` picks the final step or the best one on
    the held-out videos (default: the best when they were a validation split, else the final step);
    ``overrides`` change localization settings only (a setting that changes what the weights mean is refused)."""
    run = Run(Path(run_dir))
    if checkpoint is None:
        checkpoint = "best" if run.best.exists() and _validated(run) else "final"
    path = run.best if checkpoint == "best" else run.checkpoint
    if not path.exists():
        if checkpoint == "best" and run.checkpoint.exists():
            raise DataError(
                "has no best step", "train with --val (or --select-on test), or use --checkpoint final", run_dir
            )
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


def _validated(run: Run) -> bool:
    """The run held out a validation split (not the test subset)."""
    meta = read_json(run.config)
    held = meta.get("held_out") if isinstance(meta, dict) else None
    return isinstance(held, dict) and held.get("selected_on") == "validation"


def run_target(run_dir: str | Path, force: bool) -> tuple[Path, str | None]:
    """Where a new run is written (a symbolic link is followed; the link stays), and what it replaces, in
    words (None for a new folder). A folder that is not a run is never replaced; a run only with ``force``."""
    given = Path(run_dir)
    target = given.resolve()
    if given.is_symlink() and not target.exists() and not target.parent.is_dir():
        raise DataError("a symbolic link to nowhere", "pass a folder, or a link to one", given)
    if not target.exists():
        return target, None
    if not target.is_dir():
        raise DataError("exists and is not a folder", "pass a new folder for the run", given)
    if not (target / CHECKPOINT).exists():
        if any(target.iterdir()):
            raise DataError("exists and holds something other than a run", "pass a new or empty folder", given)
        return target, None
    if not force:
        raise DataError("already holds a run", "pass --force to replace it, or another --out", given)
    previous = read_json(target / CONFIG)
    when = f" ({previous.get('method')}, {previous.get('checkpoint')})" if isinstance(previous, dict) else ""
    return target, f"the run in {given}{when}"


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
    best: Path = field(init=False)
    config: Path = field(init=False)
    log: Path = field(init=False)
    metrics: Path = field(init=False)
    localize_cache: Path = field(init=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.checkpoint, self.best, self.config = self.root / CHECKPOINT, self.root / BEST, self.root / CONFIG
        self.log, self.metrics, self.localize_cache = self.root / LOG, self.root / METRICS, self.root / "localize"
