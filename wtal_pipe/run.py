"""A run directory (RUN_DIR): what ``wtal train`` or ``wtal import checkpoint`` writes and ``wtal test`` /
``wtal localize`` read.

::

    RUN_DIR/checkpoint.pt     the final step's weights, the run metadata and a digest of both (weights_only)
    RUN_DIR/best.pt           the best step's on the held-out videos (runs trained with --val / --select-on)
    RUN_DIR/config.json       the run metadata, for people
    RUN_DIR/train_log.jsonl   one line of loss terms per step (trained runs)
    RUN_DIR/metrics.jsonl     one line per evaluation on the held-out videos (runs trained with --val)
    RUN_DIR/localize/         wtal localize's extraction cache for new clips

``wtal train`` (``training/train.py``), ``wtal refine`` and ``wtal import checkpoint`` (:func:`import_checkpoint`,
the authors' weights as a run) write it. The directory is written whole or not at all
(:func:`~wtal_pipe.cache.atomic_dir`).

Two rules keep months of runs in one folder apart, for every command that writes runs:

- **what ``--force`` may replace**: a run of the kind the command makes (``wtal train`` a trained run,
  ``wtal refine`` a refined one, ``wtal import checkpoint`` an imported one), never another kind and never a
  folder that is not a run (:func:`run_target`);
- **what a resumed command may reuse** (``--seeds``, ``wtal refine``'s rounds): a finished run whose record
  equals, field for field, the record the command would write now (:func:`differences`); anything else is
  refused, naming the difference.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import torch

from .cache import atomic_path
from .device import resolve_device
from .errors import DataError
from .features.config import ExtractionConfig
from .methods import get_method
from .methods.base import Method
from .methods.settings import MethodConfig
from .state_files import load_trusted_types

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
FINAL = "final step (no selection)"
#: how a run's weights were chosen: the final step, the best step on held-out validation videos, the best step on
#: the test subset (the official protocol), or the authors' own weights; and how reports say it
Selection = Literal["final", "validation", "test", "imported"]
PROTOCOLS: dict[str, str] = {
    "final": "final step",
    "validation": "best on validation",
    "test": "selected on test",
    "imported": "official weights",
}
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
    checkpoint: str = FINAL  # which step these weights are, and how it was chosen, in words (for people)
    selection: Selection = "final"  # how it was chosen (what code reads)
    imported_from: list[dict[str, str]] | None = None  # official checkpoint files and their sha256
    held_out: dict[str, Any] | None = None  # the videos scored during training (monitor.HeldOut)
    best: dict[str, Any] | None = None  # the best step on them: {"step", "average_mAP"}
    refinement: dict[str, Any] | None = None  # wtal refine: the base run, this round, the pseudo-label settings
    format: str = FORMAT

    @property
    def kind(self) -> RunKind:
        """Which command made the run: ``imported`` (official weights), ``refined`` or ``trained``."""
        if self.imported_from is not None:
            return "imported"
        return "refined" if self.refinement is not None else "trained"

    def describe(self) -> str:
        """The run in a few words, for messages: its kind, method and seed (and base run, when refined)."""
        article = "an" if self.kind == "imported" else "a"
        what = f"{article} {self.kind} run ({self.method}" + (f", seed {self.seed}" if self.seed is not None else "")
        if self.refinement:
            what += f", round {self.refinement.get('round')} of {self.refinement.get('base_run')}"
        return what + ")"

    @property
    def protocol(self) -> str:
        """How these weights were chosen, in the words reports use."""
        return PROTOCOLS[self.selection]

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
        if "selection" not in values:  # runs of earlier versions said it in words only
            values["selection"] = _selection_in_words(str(values.get("checkpoint", FINAL)), values)
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


def _selection_in_words(words: str, record: dict[str, Any]) -> Selection:
    """What a record of an earlier version said in words (the one place words are read back)."""
    if record.get("imported_from"):
        return "imported"
    if words.startswith(PROTOCOLS["validation"]):
        return "validation"
    return "test" if words.startswith(PROTOCOLS["test"]) else "final"


Checkpoint = Literal["final", "best"]
RunKind = Literal["trained", "refined", "imported"]
#: record fields that say where or how a run was stored, not what it is: a run made elsewhere is the same run
CIRCUMSTANCES = frozenset({"device", "checkpoint", "best", "format"})


def read_checkpoint(path: Path) -> tuple[RunMeta, dict[str, torch.Tensor]]:
    """A checkpoint's run record and weights, its digest checked (a damaged file is a one-line error)."""
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
    return RunMeta.from_dict(record), state


def load_run(
    run_dir: str | Path, device: str = "cpu", overrides: dict | None = None, checkpoint: Checkpoint | None = None
) -> tuple[Method, RunMeta]:
    """The trained model (eval mode) and its metadata; ``checkpoint`` picks the final step or the best one on
    the held-out videos (default: the best when they were a validation split, as its own record says, else
    the final step); ``overrides`` change localization settings only (a setting that changes what the weights
    mean is refused). ``config.json`` is for people: nothing here reads it."""
    run = Run(Path(run_dir))
    loaded = None
    if checkpoint is None and run.best.exists():
        loaded = read_checkpoint(run.best)
        if loaded[0].selection != "validation":
            loaded = None  # selected on test: never the default
    path = run.best if checkpoint == "best" else run.checkpoint
    if loaded is None and not path.exists():
        if checkpoint == "best" and run.checkpoint.exists():
            raise DataError(
                "has no best step", "train with --val (or --select-on test), or use --checkpoint final", run_dir
            )
        raise DataError("no checkpoint in this run directory", "train first: wtal train --out RUN_DIR", run_dir)
    meta, state = loaded or read_checkpoint(path)
    cls = get_method(meta.method)
    config = cls.configure(overrides or {}, base=cls.from_saved(meta.config), only=("localization",))
    model = cls(meta.feature_dim, len(meta.classes), config)
    model.load_state_dict(state)
    return model.to(resolve_device(device)).eval(), meta


def existing_run(folder: Path) -> RunMeta | None:
    """The record of the run ``folder`` holds (from its checkpoint), or None when it holds none."""
    path = Run(folder).checkpoint
    return read_checkpoint(path)[0] if path.exists() else None


def run_target(run_dir: str | Path, force: bool, kind: RunKind) -> tuple[Path, str | None]:
    """Where a new run of ``kind`` is written (a symbolic link is followed; the link stays), and what it
    replaces, in words (None for a new folder). A folder that is not a run is never replaced, nor a run of
    another kind; a run of this kind only with ``force``."""
    given = Path(run_dir)
    target = given.resolve()
    if given.is_symlink() and not target.exists() and not target.parent.is_dir():
        raise DataError("a symbolic link to nowhere", "pass a folder, or a link to one", given)
    if not target.exists():
        return target, None
    if not target.is_dir():
        raise DataError("exists and is not a folder", "pass a new folder for the run", given)
    previous = existing_run(target)
    if previous is None:
        if any(target.iterdir()):
            raise DataError("exists and holds something other than a run", "pass a new or empty folder", given)
        return target, None
    check_replaceable(given, previous, force, kind)
    return target, f"{previous.describe()} in {given}"


def check_replaceable(folder: Path, previous: RunMeta, force: bool, kind: RunKind) -> None:
    """A command that makes ``kind`` runs may replace ``previous`` only when it is of that kind, with ``force``."""
    if previous.kind != kind:
        raise DataError(
            f"holds {previous.describe()}; this command replaces only {kind} runs",
            "pass another --out (move that run away first if you mean to replace it)",
            folder,
        )
    if not force:
        raise DataError(f"already holds {previous.describe()}", "pass --force to replace it, or another --out", folder)


def finished_as_asked(folder: Path, wanted: RunMeta, what: str) -> bool:
    """True when ``folder`` holds a finished run that is the run ``wanted`` describes (a resumed command keeps
    it), False when it holds none; a run made otherwise is a one-line error naming ``what`` and the
    differences, so two configurations never end up side by side as if they were one."""
    saved = existing_run(folder)
    if saved is None:
        return False
    found = differences(saved, wanted)
    if found:
        shown = "; ".join(found[:4]) + (f"; and {len(found) - 4} more" if len(found) > 4 else "")
        raise DataError(
            f"{what} holds a run made otherwise: {shown}",
            "pass the options it was made with, or another --out",
            folder,
        )
    return True


def differences(saved: RunMeta, wanted: RunMeta) -> list[str]:
    """What makes ``saved`` another run than the one ``wanted`` describes, one phrase per setting or field
    (``"lr 0.001 (asked: 0.0003)"``, ``"refinement.pseudo_labels.keep_ratio 0.3 (asked: 0.5)"``); [] when it is
    the same run (another method is said alone: all its settings differ too). A refined round's ``rounds`` is
    not compared: asking for more rounds extends a refinement."""
    if saved.method != wanted.method:
        return [f"method {saved.method} (asked: {wanted.method})"]
    method = get_method(saved.method)
    old, new = (  # settings as this version reads them (renamed values, new defaults); lists = tuples
        json.loads(json.dumps(meta.to_dict() | {"config": method.from_saved(meta.config).values()}, default=str))
        for meta in (saved, wanted)
    )
    old_fields, new_fields = (
        record.pop("config") | _leaves({k: v for k, v in record.items() if k not in CIRCUMSTANCES})
        for record in (old, new)
    )
    return [
        f"{name} {_short(old_fields.get(name))} (asked: {_short(new_fields.get(name))})"
        for name in sorted(set(old_fields) | set(new_fields))
        if name != "refinement.rounds" and old_fields.get(name) != new_fields.get(name)
    ]


def _leaves(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted names -> values (``{"a": {"b": 1}}`` -> ``{"a.b": 1}``)."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, dict) and value:
            out |= _leaves(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
    from .features.provenance import Provenance

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


def import_checkpoint(
    files: list[Path], method: str, data_dir: Path, run_dir: Path, force: bool = False
) -> tuple[Path, str | None]:
    """The authors' checkpoint(s) of ``method`` -> a RUN_DIR that ``wtal test`` and ``wtal localize`` use
    like a trained run; returns its checkpoint and what it replaced (an existing run, only with ``force``).
    Feature size and class count come from the tensors; class names from DATA_DIR (classes.txt, else the
    sorted labels of annotations.json). CMCS takes one file (early fusion) or two, RGB then flow (late
    fusion, the published I3D setting)."""
    from .cache import atomic_dir, atomic_write_json, sha256_file
    from .data.annotations import load_annotations, read_classes
    from .data.dataset import read_feature_rows
    from .layout import DataLayout
    from .state_files import load_state_file

    cls = get_method(method)
    target, replaced = run_target(run_dir, force, kind="imported")
    states = [load_state_file(Path(f), cls.official_hint) for f in files]
    for path, state in zip(files, states, strict=True):
        broken = next((k for k, v in state.items() if v.is_floating_point() and not bool(v.isfinite().all())), None)
        if broken:
            raise DataError(f"tensor {broken} holds NaN or inf values", "use an intact checkpoint", path)
    try:
        model = cls.from_official(states)
    except ValueError as exc:
        raise DataError(str(exc), cls.official_hint, files[0]) from exc
    layout = DataLayout(Path(data_dir))
    classes = read_classes(layout, load_annotations(layout.annotations), layout.annotations)
    if len(classes) != model.num_classes:
        source = layout.classes if layout.classes.exists() else layout.annotations
        raise DataError(
            f"{files[0].name} scores {model.num_classes} classes, but the dataset has {len(classes)}",
            "list the model's classes, in its order, in DATA_DIR/classes.txt",
            source,
        )
    features = sorted(layout.features_dir.glob("*.npy"))
    if features:
        dim = int(read_feature_rows(features[0]).shape[-1])
        if dim != model.feature_dim:
            raise DataError(
                f"{files[0].name} takes {model.feature_dim}-d features, {features[0].name} has {dim}",
                "import it next to the features it was trained on",
                features[0],
            )
    meta = run_meta(
        method,
        model.config,
        classes=classes,
        feature_dim=model.feature_dim,
        data_dir=layout.root,
        features=features[0] if features else None,
        checkpoint="imported official weights",
        selection="imported",
        imported_from=[{"path": str(Path(f).resolve()), "sha256": sha256_file(f)} for f in files],
    )
    with atomic_dir(target) as staging:
        save_checkpoint(Run(staging).checkpoint, meta, model)
        atomic_write_json(Run(staging).config, meta.to_dict())
    return Run(Path(run_dir)).checkpoint, replaced
