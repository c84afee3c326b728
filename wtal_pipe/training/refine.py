"""``wtal refine``: snippet-level self-training. A trained run localizes its own training videos (for their
labelled classes only: the video-level labels are all the supervision there is), its confident detections
become per-row pseudo labels (``pseudo.py``), and the method trains on, from those weights, with the
pseudo-label term beside its own loss; each round refines the previous one.

::

    OUT/rounds/round-K.pseudo.json   the pseudo labels round K trains on (made by round K - 1, or the run)
    OUT/rounds/round-K/              round K, a run like any other
    OUT/checkpoint.pt, config.json   the last round's, so OUT tests and localizes like any run

A round is written whole or not at all, so an interrupted refine reruns the unfinished rounds only, and
the same inputs give the same bytes. Test videos and the run's held-out videos are never looked at.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..cache import atomic_path
from ..data.dataset import Dataset
from ..errors import DataError, WtalError
from ..inference.localize import Detection, localize
from ..inference.pipeline import check_feature_dim, infer
from ..methods import get_method
from ..methods.base import Method
from ..methods.presets import DEFAULT_PRESET
from ..methods.settings import MethodConfig, owners
from ..run import (
    BEST,
    CHECKPOINT,
    CONFIG,
    LOG,
    METRICS,
    Run,
    RunMeta,
    check_replaceable,
    existing_run,
    finished_as_asked,
    load_run,
)
from .monitor import HeldOut
from .pseudo import PseudoLabelSettings, keep_confident, write_pseudo_labels
from .train import TrainOptions, plan_run, start_from, train

ROUNDS = "rounds"
PSEUDO_LABELS = "pseudo-labels"  # the settings group of refine itself (keep_ratio, sigma)


@dataclass
class RefineOptions:
    run_dir: Path
    data_dir: Path
    out_dir: Path
    rounds: int = 2
    device: str = "auto"
    force: bool = False  # replace a finished refined run at out_dir
    overrides: dict[str, Any] = field(default_factory=dict)  # pseudo-label settings, and the run's by name


def pseudo_labels(
    model: Method, meta: RunMeta, data_dir: Path, held_out: set[str], settings: PseudoLabelSettings
) -> dict[str, list[Detection]]:
    """The confident detections of ``model`` on the training videos of ``meta.subset`` (none of
    ``held_out``), each video localized for its labelled classes only."""
    dataset = Dataset(data_dir, meta.subset or "train", classes=meta.classes, exclude=held_out)
    check_feature_dim(dataset, meta)
    videos = {}
    for video in dataset.videos:
        labelled = [int(c) for c in video.labels.nonzero()[0]]
        if not labelled:
            continue
        rows = video.load()
        detections = localize(infer(model, rows), model.config.localization, video.timing(rows.shape[0]), labelled)
        videos[video.vid] = keep_confident(detections, settings.keep_ratio)
    return videos


def refine(
    options: RefineOptions,
    report: Callable[[str], None] = lambda _: None,
    on_log: Callable[[dict], None] | None = None,
) -> Path:
    """Refine ``options.run_dir`` for ``options.rounds`` rounds into ``options.out_dir``; returns the refined
    run's checkpoint. Finished rounds made from the same base run with the same settings are kept; rounds
    made otherwise are refused (``run.finished_as_asked``)."""
    out, base = Path(options.out_dir), Path(options.run_dir)
    if out.resolve().is_relative_to(base.resolve()) or base.resolve().is_relative_to(out.resolve()):
        raise WtalError(
            f"--out {out} and --run {base} lie one inside the other", "pass a folder outside the run being refined"
        )
    trained, meta = load_run(base, device=options.device, checkpoint="final")
    rounds = _Rounds.plan(options, trained, meta)  # every refusal before anything is removed or written
    _claim(out, options.force)
    previous: Path = base
    previous_model: Method | None = trained  # loaded once; later rounds load the round before
    for number in range(1, options.rounds + 1):
        round_options = rounds.round_options(number, previous)
        round_dir = Path(round_options.out_dir)
        if finished_as_asked(round_dir, plan_run(round_options).meta, f"round {number}"):
            report(f"round {number}: finished in {round_dir} from the same run and settings, kept")
        else:
            model = previous_model or load_run(previous, device=options.device, checkpoint="final")[0]
            videos = pseudo_labels(model, meta, Path(options.data_dir), rounds.excluded, rounds.settings)
            kept = sum(len(v) for v in videos.values())
            report(f"round {number}: {kept} pseudo-labelled segments in {len(videos)} training videos")
            labels = Path(str(round_options.pseudo_labels))
            write_pseudo_labels(labels, meta.classes, videos, rounds.settings, _digest(Run(previous).checkpoint))
            train(round_options, on_log, report)
        previous, previous_model = round_dir, None
    return _publish(Run(previous), Run(out))


@dataclass(frozen=True)
class _Rounds:
    """What every round of one refinement shares: the base run, its settings with the changes asked for, the
    pseudo-label settings and the videos never looked at (the base run's held-out ones)."""

    options: RefineOptions
    meta: RunMeta
    config: MethodConfig
    settings: PseudoLabelSettings
    held: HeldOut | None
    base_digest: str

    @classmethod
    def plan(cls, options: RefineOptions, trained: Method, meta: RunMeta) -> _Rounds:
        base = Path(options.run_dir)
        if meta.subset is None:
            raise DataError(
                "records no training subset (an imported checkpoint?)", "refine a run from wtal train", base
            )
        method = get_method(meta.method)
        owner = owners({**method.setting_groups(), PSEUDO_LABELS: PseudoLabelSettings})  # one --set namespace
        ours = {k: v for k, v in options.overrides.items() if owner.get(k) == PSEUDO_LABELS}
        changes = {k: v for k, v in options.overrides.items() if owner.get(k) != PSEUDO_LABELS}
        if "iterations" in changes:  # steps given outright replace a run's epochs
            changes.setdefault("epochs", None)
        config = method.configure(changes, base=method.from_saved(meta.config))  # a bad --set fails here
        try:
            start_from(method(meta.feature_dim, len(meta.classes), config), trained, base)
        except WtalError:
            changed = ", ".join(sorted(set(changes) & set(method.Network.names())))
            raise WtalError(
                f"--set {changed} changes the shape of {base}'s network, so its weights cannot start the refinement",
                "keep its widths (training, localization, pseudo-label and actionness head settings may change)",
            ) from None
        held = HeldOut(**meta.held_out) if meta.held_out else None
        return cls(options, meta, config, PseudoLabelSettings(**ours), held, _digest(Run(base).checkpoint))

    @property
    def excluded(self) -> set[str]:
        held = self.held
        return set(held.videos) if held is not None and held.subset == self.meta.subset else set()

    def round_options(self, number: int, previous: Path) -> TrainOptions:
        """Round ``number``, trained from ``previous``'s final weights on the pseudo labels they give."""
        out, meta = Path(self.options.out_dir), self.meta
        labels = out / ROUNDS / f"round-{number}.pseudo.json"
        record = {
            "base_run": str(Path(self.options.run_dir).resolve()),
            "base_checkpoint": self.base_digest,
            "round": number,
            "rounds": self.options.rounds,
            "pseudo_labels": asdict(self.settings),
            "pseudo_label_file": labels.name,
        }
        return TrainOptions(
            meta.method, Path(self.options.data_dir), out / ROUNDS / f"round-{number}", seed=meta.seed or 0,
            subset=meta.subset, preset=meta.preset or DEFAULT_PRESET, device=self.options.device,
            negatives=bool(meta.negatives), simulate_clicks=meta.clicks == "simulated",
            overrides=self.config.values(), init_from=previous, pseudo_labels=labels, held_out=self.held,
            refinement=record,
        )  # fmt: skip


#: what ``wtal refine`` writes into OUT, and all that ``--force`` removes there
PRODUCTS = (ROUNDS, CHECKPOINT, BEST, CONFIG, LOG, METRICS)


def _claim(out: Path, force: bool) -> None:
    """``out`` may be new, empty, an unfinished refine (resumed) or, with ``force``, a finished refined run
    (redone: only what refine wrote there is removed). A run of another kind is never replaced."""
    previous = existing_run(out)
    if previous is not None:
        check_replaceable(out, previous, force, "refined")
        for name in PRODUCTS:
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    elif out.exists() and any(p.name != ROUNDS for p in out.iterdir()):
        raise DataError("exists and holds something other than a refine", "pass a new or empty folder", out)


def _publish(last: Run, out: Run) -> Path:
    """The last round's files at the top of OUT (the checkpoint last, so OUT is a run only when whole)."""
    for name in (LOG, CONFIG, BEST):
        if (last.root / name).exists():
            with atomic_path(out.root / name) as tmp:
                shutil.copyfile(last.root / name, tmp)
    with atomic_path(out.checkpoint) as tmp:
        shutil.copyfile(last.checkpoint, tmp)
    return out.checkpoint


def _digest(path: Path) -> str:
    """sha256 of the checkpoint the pseudo labels came from."""
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
