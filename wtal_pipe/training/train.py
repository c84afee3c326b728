"""One training loop for every method: sampling, optimizer, accumulation, seeds, log; the run directory
it writes is described in ``run.py``."""

from __future__ import annotations

import dataclasses
import json
import math
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..cache import atomic_dir, atomic_write_json, sweep_stale_tmp
from ..data.annotations import load_annotations
from ..data.clicks import simulate_clicks
from ..data.dataset import Dataset, Video
from ..data.sampling import click_mask, training_input
from ..device import resolve_device
from ..errors import DataError, WtalError
from ..layout import DataLayout
from ..methods import get_method, list_methods
from ..methods.base import Batch, Method, MethodOutput
from ..methods.presets import DEFAULT_PRESET, benchmark, preset_settings
from ..methods.settings import MethodConfig, TrainingSettings
from ..run import Run, RunMeta, finished_as_asked, load_run, run_meta, run_target, save_checkpoint
from .monitor import HeldOut, Monitor, choose_held_out, tensorboard_writer
from .pseudo import PseudoLabels, row_times


@dataclass
class TrainOptions:
    method: str
    data_dir: Path
    out_dir: Path
    seed: int = 0
    subset: str | None = None  # the training subset (default: the preset's, "train" for THUMOS14)
    preset: str = DEFAULT_PRESET  # the benchmark whose published settings and subsets to use (methods/presets.py)
    device: str = "auto"
    negatives: bool | None = None  # None: the method's default (on for CMCS when negatives exist)
    simulate_clicks: bool = False
    annotator: str | None = None  # read clicks.<annotator>.json instead of clicks.json
    val: str | None = None  # held-out videos: a fraction of the training subset ("0.2") or a subset's name
    select_on_test: bool = False  # hold out the test subset instead (the official protocol; labelled so)
    eval_every: int | None = None  # steps between evaluations on the held-out videos (default: a tenth of all)
    tensorboard: Path | None = None  # write TensorBoard scalars here
    overrides: dict = dataclasses.field(default_factory=dict)  # settings to change by name, e.g. {"lr": 1e-3}
    # wtal refine's rounds: the run whose final weights start training, the pseudo labels to train on, the
    # held-out videos an earlier run fixed (instead of ``val``), and what the run records about its round
    init_from: Path | None = None
    pseudo_labels: Path | None = None
    held_out: HeldOut | None = None
    refinement: dict | None = None


def _use_negatives(options: TrainOptions, method: type[Method]) -> bool:
    exists = DataLayout(Path(options.data_dir)).negatives_dir.is_dir()
    if options.negatives is None:
        return method.negatives_by_default and exists
    if options.negatives and not method.has_background_class:
        able = [name for name in list_methods() if get_method(name).has_background_class]
        raise WtalError(
            f"{options.method} has no background class, so it cannot train on hard negatives",
            f"drop --negatives or use {', '.join(able)}",
        )
    return options.negatives


@dataclass
class Entry:
    """One training sample: a video with the labels it trains on and its loss weight."""

    video: Video
    labels: np.ndarray
    weight: float


def training_entries(videos: list[Video], single_label_copies: bool) -> list[Entry]:
    """One entry per video, or (CMCS) one per label of a multi-label video, weighted 1 / #labels."""
    entries = []
    for video in videos:
        classes = np.flatnonzero(video.labels)
        if not single_label_copies or classes.size <= 1:
            entries.append(Entry(video, video.labels, 1.0))
            continue
        for c in classes:
            one_hot = np.zeros_like(video.labels)
            one_hot[c] = 1.0
            entries.append(Entry(video, one_hot, 1.0 / classes.size))
    return entries


class BatchSampler:
    """Batches of training entries, each turned into a training input by the method's sampling.

    ``batch_order`` says how entries are drawn, as the official training loops draw them: ``epochs``
    goes through shuffled epochs, the last batch of an epoch holding what is left (PyTorch's DataLoader
    with ``shuffle=True``: UM, BackTAL, CMCS); ``fresh`` does one such epoch, then takes every batch as
    the first batch of a new shuffle (BaS-Net's loop: its ``train()`` catches the exhausted iterator and
    draws from a new one it does not keep).
    """

    def __init__(
        self,
        entries: list[Entry],
        config: MethodConfig,
        rng: np.random.Generator,
        pseudo: PseudoLabels | None = None,
    ):
        self.entries, self.training, self.rng, self.pseudo = entries, config.training, rng, pseudo
        self.num_segments = config.network.num_segments
        self.order: list[int] = []
        self.epochs = 0  # shuffles drawn so far

    def _draw(self) -> list[int]:
        """The entry indices of the next batch."""
        size = self.training.batch_size
        short = len(self.order) < size <= len(self.entries)
        if (
            not self.order
            or (self.training.batch_order == "fresh" and self.epochs > 1)
            or (self.training.drop_last and short)
        ):
            self.order = list(self.rng.permutation(len(self.entries)))
            self.epochs += 1
        return [self.order.pop() for _ in range(min(size, len(self.order)))]

    def draw(self) -> Batch:
        """The next batch (an endless supply: the trainer asks for as many as its steps need)."""
        chosen = [self.entries[i] for i in self._draw()]
        features, clicks, pseudo = [], [], []
        for entry in chosen:
            video, rows = entry.video, entry.video.load()
            sample, source = training_input(rows, self.training.train_sampling, self.num_segments, self.rng)
            features.append(sample)
            timing = video.timing(rows.shape[0])
            clicks.append(
                click_mask(
                    video.clicks - timing.offset,  # overlapping rows: a row's own stretch starts offset later
                    length=rows.shape[0],
                    seconds_per_row=timing.seconds_per_row,
                    duration=video.duration,
                    source_rows=source,
                    num_segments=self.num_segments,
                )
            )
            if self.pseudo is not None:
                times = timing.offset + row_times(
                    source, seconds_per_row=timing.seconds_per_row, duration=video.duration,
                    num_segments=self.num_segments,
                )  # fmt: skip
                pseudo.append(self.pseudo.targets(video.vid, times, len(entry.labels)))
        return Batch(
            features=torch.from_numpy(np.stack(features)),
            labels=torch.from_numpy(np.stack([e.labels for e in chosen]).astype(np.float32)),
            background_only=torch.tensor([e.video.background_only for e in chosen]),
            clicks=torch.from_numpy(np.stack(clicks)),
            weights=torch.tensor([e.weight for e in chosen], dtype=torch.float32),
            pseudo=torch.from_numpy(np.stack(pseudo)) if pseudo else None,
        )


def _standardize(model: Method, dataset: Dataset) -> None:
    """``normalize_features``: the model's input statistics from every training row."""
    count, total = 0, np.zeros(dataset.feature_dim)
    for video in dataset.videos:  # one video at a time, two passes: the training set never sits in memory
        rows = np.asarray(video.load(), np.float64)
        count, total = count + len(rows), total + rows.sum(0)
    mean, squares = total / count, np.zeros(dataset.feature_dim)
    for video in dataset.videos:
        squares += ((np.asarray(video.load(), np.float64) - mean) ** 2).sum(0)
    model.feature_mean.copy_(torch.from_numpy(mean))
    model.feature_std.copy_(torch.from_numpy(np.sqrt(squares / count) + 1e-6))


@dataclass
class Plan:
    """A run as it will be recorded, before any weights exist: what ``--seeds`` and ``wtal refine`` compare a
    finished run with before reusing it (``run.differences``)."""

    method: type[Method]
    config: MethodConfig
    dataset: Dataset
    entries: list[Entry]
    held_out: HeldOut | None
    meta: RunMeta
    rows_note: str = ""  # why num_segments is what it is, when it followed the data

    def summary(self) -> str:
        """The run in one line, said before its first step."""
        training, dataset = self.config.training, self.dataset
        held = f", {len(self.held_out.videos)} held out" if self.held_out else ""
        rows = f", {self.config.network.num_segments} rows per video{self.rows_note}"
        return (
            f"{self.meta.method} on {len(dataset.videos)} {self.meta.subset!r} videos of {dataset.data_dir}{held} "
            f"({dataset.num_classes} classes): {training.iterations} steps, lr {training.lr:g}{rows}"
        )


def plan_run(options: TrainOptions) -> Plan:
    """The method's settings (preset, then overrides, then epochs counted in steps), the training videos, the
    held-out split and the record the run will carry; every refusal happens here, before any work."""
    method = get_method(options.method)
    config = method.configure(preset_settings(method, options.preset, options.overrides))
    if options.eval_every is not None and options.val is None and not options.select_on_test:
        raise WtalError("--eval-every scores held-out videos, and none are held out", "add --val 0.2 (or --val SUBSET)")
    facts = benchmark(options.preset)
    database = load_annotations(DataLayout(Path(options.data_dir)).annotations)
    subset = options.subset or facts.train_subset_of(database)
    held = options.held_out or choose_held_out(
        database, subset, options.val, test_subset=facts.test_subset, select_on_test=options.select_on_test,
        seed=options.seed,
    )  # fmt: skip
    exclude = set(held.videos) if held is not None and held.subset == subset else None
    dataset = Dataset(
        options.data_dir, subset, negatives=_use_negatives(options, method), annotator=options.annotator,
        exclude=exclude,
    )  # fmt: skip
    if method.uses_clicks and not options.simulate_clicks and not dataset.has_clicks:
        raise DataError(
            f"{options.method} is trained with background clicks, and there are none",
            "add clicks (wtal annotate, or wtal import clicks ...) or pass --simulate-clicks",
            dataset.clicks_path,
        )
    entries = training_entries(dataset.videos, config.training.single_label_copies)
    config = with_epochs(config, len(entries))
    config, rows_note = _rows_from_data(config, dataset, options) if facts.rows_from_data else (config, "")
    meta = run_meta(
        options.method,
        config,
        classes=dataset.classes,
        feature_dim=dataset.feature_dim,
        data_dir=dataset.data_dir,
        features=dataset.videos[0].features,
        seed=options.seed,
        subset=subset,
        preset=options.preset,
        videos=len(dataset.videos),
        negatives=sum(v.background_only for v in dataset.videos),
        clicks="simulated" if options.simulate_clicks else ("real" if method.uses_clicks else "none"),
        device=str(resolve_device(options.device)),
        held_out=held.to_dict() if held else None,
        refinement=options.refinement,
    )
    return Plan(method, config, dataset, entries, held, meta, rows_note)


def _rows_from_data(config: MethodConfig, dataset: Dataset, options: TrainOptions) -> tuple[MethodConfig, str]:
    """A preset for a user's own clips samples as many rows per training video as the videos' median length
    (at most the method's own value), not 750 copies of a 12-row clip; a given ``num_segments`` stays."""
    if "num_segments" in options.overrides or config.training.train_sampling == "whole":
        return config, ""
    median = int(np.median([video.load().shape[0] for video in dataset.videos if not video.background_only]))
    rows = max(1, min(median, config.network.num_segments))
    network = config.network.replace(num_segments=rows)
    return dataclasses.replace(
        config, network=network
    ), f" (the training videos' median length; preset {options.preset})"


@dataclass
class Session:
    """What a training run is made of, before its first step."""

    dataset: Dataset
    model: Method
    sampler: BatchSampler
    held_out: HeldOut | None
    device: torch.device


def _prepare(options: TrainOptions, plan: Plan) -> Session:
    """The seeded model (started from a run's weights, or standardized) and its batch sampler."""
    dataset, config = plan.dataset, plan.config
    rng = np.random.default_rng(options.seed)
    torch.manual_seed(options.seed)
    if options.simulate_clicks and plan.method.uses_clicks:
        for video in dataset.videos:
            if not video.background_only:
                video.clicks = simulate_clicks(video.segments, video.duration, video.frame_rate, rng)
    device = resolve_device(options.device)
    model = plan.method(dataset.feature_dim, dataset.num_classes, config)
    if options.init_from is not None:
        start_from(model, load_run(options.init_from, checkpoint="final")[0], options.init_from)
    elif config.training.normalize_features:
        _standardize(model, dataset)
    pseudo = None if options.pseudo_labels is None else PseudoLabels.read(options.pseudo_labels, dataset.classes)
    sampler = BatchSampler(plan.entries, config, rng, pseudo)
    return Session(dataset, model.to(device), sampler, plan.held_out, device)


def start_from(model: Method, trained: Method, run_dir: Path) -> None:
    """Load ``trained``'s weights (the final ones of ``run_dir``) into ``model`` (same method and widths); an
    actionness head the run did not have starts from its fresh initialization."""
    ours = model.state_dict()
    theirs = trained.state_dict()
    misfits = sorted(
        key
        for key in set(ours) ^ set(theirs) | {k for k in set(ours) & set(theirs) if ours[k].shape != theirs[k].shape}
        if not key.startswith("actionness_head.")
    )
    if misfits:
        raise WtalError(
            f"the weights of {run_dir} do not fit this network ({', '.join(misfits[:3])})",
            "keep the run's widths (training, localization, pseudo-label and actionness head settings may change)",
        )
    model.load_state_dict(theirs, strict=False)


def full_batches(training: TrainingSettings, entries: int) -> int:
    """Whole batches in an epoch of ``entries`` (at least one: a set smaller than a batch is one batch)."""
    return max(1, entries // training.batch_size)


def with_epochs(config: MethodConfig, entries: int) -> MethodConfig:
    """``config`` whose step count is its ``epochs`` passes over ``entries`` training samples (a pass has
    ``ceil(entries / batch_size)`` batches, the last one short, as PyTorch's DataLoader; ``floor`` with
    ``drop_last``), when epochs are set."""
    training = config.training
    if training.epochs is None:
        return config
    per_epoch = full_batches(training, entries) if training.drop_last else math.ceil(entries / training.batch_size)
    batches = training.epochs * per_epoch
    steps = math.ceil(batches / training.accumulate)
    return dataclasses.replace(config, training=training.replace(iterations=steps))


def train(
    options: TrainOptions,
    on_log: Callable[[dict], None] | None = None,
    report: Callable[[str], None] = lambda _: None,
) -> Path:
    """Train ``options.method`` on DATA_DIR's training subset; returns the final checkpoint's path (with a
    held-out set, ``best.pt`` beside it holds the best step's weights). ``report`` hears the run's summary before
    its first step; ``on_log`` gets every step's record."""
    plan = plan_run(options)
    report(plan.summary())
    out_dir, replaced = run_target(options.out_dir, force=True, kind="trained")
    session = _prepare(options, plan)
    if out_dir.parent.exists():
        sweep_stale_tmp(out_dir.parent, f".{out_dir.name}")
    meta = plan.meta
    with atomic_dir(out_dir) as staging:
        run = Run(staging)
        atomic_write_json(run.config, meta.to_dict())
        monitor = _monitor(options, session, staging)
        writer = tensorboard_writer(options.tensorboard, meta)
        if monitor is not None:
            monitor.tensorboard = writer
        try:
            _optimize(session, run.log, on_log, monitor, writer)
        finally:
            if writer is not None:
                writer.close()
        save_checkpoint(run.checkpoint, meta, session.model)
        if monitor is not None:
            meta.best = {"step": monitor.best_step, "average_mAP": monitor.best_score}
            best = dataclasses.replace(meta, checkpoint=monitor.describe_best(), selection=monitor.held_out.selected_on)
            save_checkpoint(run.best, best, monitor.best_model(session.model))
            atomic_write_json(run.config, meta.to_dict())
    if replaced:
        warnings.warn(f"replaced {replaced}", TrainingWarning, stacklevel=2)
    return Run(Path(options.out_dir)).checkpoint


def _monitor(options: TrainOptions, session: Session, run_dir: Path) -> Monitor | None:
    if session.held_out is None:
        return None
    iterations = session.model.config.training.iterations
    every = options.eval_every or max(1, iterations // 10)
    return Monitor.open(options.data_dir, session.held_out, session.dataset.classes, every, run_dir)


@dataclass(frozen=True)
class SeedRun:
    """One seed of ``--seeds``: its checkpoint, and whether this call trained it (else it was finished)."""

    seed: int
    checkpoint: Path
    trained: bool


def train_seeds(
    options: TrainOptions,
    seeds: list[int],
    on_log: Callable[[dict], None] | None = None,
    report: Callable[[str], None] = print,
) -> list[SeedRun]:
    """One run per seed under ``OUT/seed-K/``. A seed whose finished run is the run asked for now (method,
    every setting, data, split) is kept; one made otherwise is refused before any seed trains (a run is written
    whole or not at all, so a crashed seed is simply trained again)."""
    runs = [(s, dataclasses.replace(options, seed=s, out_dir=Path(options.out_dir) / f"seed-{s}")) for s in seeds]
    finished = {
        seed: finished_as_asked(Path(seeded.out_dir), plan_run(seeded).meta, f"seed {seed}")
        for seed, seeded in runs
        if Run(Path(seeded.out_dir)).checkpoint.exists()
    }
    done = []
    for seed, seeded in runs:
        out = Path(seeded.out_dir)
        if finished.get(seed):
            report(f"seed {seed}: finished in {out} with these settings, kept")
        else:
            report(f"seed {seed}: training into {out}")
            train(seeded, on_log, report)
        done.append(SeedRun(seed, Run(out).checkpoint, trained=not finished.get(seed)))
    return done


class Trainer:
    """Optimizer steps of a method with its training settings: the official optimizer (Adam, betas 0.9
    and 0.999), ``accumulate`` forward passes per step, their gradients averaged or (CMCS) summed."""

    def __init__(self, model: Method, device: torch.device):
        self.model, self.device = model, device
        self.training = training = model.config.training
        self.optimizer = torch.optim.Adam(model.parameters(), lr=training.lr, weight_decay=training.weight_decay)
        self.scheduler = (
            None
            if training.lr_decay_at is None
            else torch.optim.lr_scheduler.MultiStepLR(self.optimizer, [training.lr_decay_at], training.lr_decay)
        )
        self.divisor = training.accumulate if training.gradient_accumulation == "mean" else 1
        self.steps = 0
        self.collapsed = False  # a collapse was reported (once per run)

    def step(self, batches: Iterable[Batch]) -> dict[str, float]:
        """One optimizer step over ``accumulate`` batches; the loss terms, averaged over the passes."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        self.steps += 1
        totals: dict[str, float] = {}
        for batch in batches:
            batch = on_device(batch, self.device)
            outputs = self.model(batch.features)
            if not bool(torch.isfinite(outputs.video_scores).all()):  # before a loss (BCE) fails on them
                raise WtalError(f"the model's scores became NaN or inf at step {self.steps}", "lower --lr")
            self._watch(outputs)
            terms = self.model.objective(outputs, batch)
            (torch.stack(list(terms.values())).sum() / self.divisor).backward()
            for name, value in terms.items():  # logged per forward pass, whatever the accumulation
                totals[name] = totals.get(name, 0.0) + value.item() / self.training.accumulate
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        return totals

    @property
    def lr(self) -> float:
        """The learning rate the next step takes."""
        return float(self.optimizer.param_groups[0]["lr"])

    def _watch(self, outputs: MethodOutput) -> None:
        if not self.collapsed:
            with torch.no_grad():
                problem = self.model.collapse(outputs)
            if problem:
                self.collapsed = True
                warnings.warn(f"{self.model.name} at step {self.steps}: {problem}", TrainingWarning, stacklevel=3)


class TrainingWarning(UserWarning):
    """A run that goes on, but whose model will not localize well (printed as one WARNING line)."""


@dataclass
class LossWatch:
    """Warns once when the loss grows far above its lowest so far: ``factor`` times it and by at least
    ``margin`` (a loss near 0 that doubles is noise, 0.9 -> 95 is a run diverging). Both sides are medians of the
    last ``window`` steps: one hard batch among easy ones (a step of two videos) is not a run diverging."""

    method: str
    factor: float = 10.0
    margin: float = 1.0
    window: int = 5
    recent: list[float] = dataclasses.field(default_factory=list)
    lowest: float = math.inf
    lowest_step: int = 0
    warned: bool = False

    def __call__(self, loss: float, step: int, lr: float) -> None:
        self.recent = [*self.recent[1 - self.window :], loss]
        level = float(np.median(self.recent))
        if level < self.lowest:
            self.lowest, self.lowest_step = level, step
        elif not self.warned and level > self.factor * max(self.lowest, 0.0) and level > self.lowest + self.margin:
            self.warned = True
            warnings.warn(
                f"{self.method} at step {step}: the loss grew to {level:.4g} (median of {len(self.recent)} steps), "
                f"{level / max(self.lowest, 1e-12):.0f}x its lowest ({self.lowest:.4g} by step {self.lowest_step}): "
                f"training is diverging; lower --lr (now {lr:g}) or stop early",
                TrainingWarning,
                stacklevel=2,
            )


def _optimize(
    session: Session,
    log_path: Path,
    on_log: Callable[[dict], None] | None,
    monitor: Monitor | None,
    writer: Any,
) -> None:
    """The optimizer steps: one line of loss terms per step in ``log_path`` (and to ``on_log``, with the step
    count as ``of``); the held-out evaluations when ``monitor`` says they are due; the scalars to TensorBoard
    (``writer``); a warning when the loss diverges."""
    trainer = Trainer(session.model, session.device)
    iterations, accumulate = trainer.training.iterations, trainer.training.accumulate
    diverging = LossWatch(session.model.name)
    start = time.perf_counter()
    with open(log_path, "w") as log:
        for step in range(1, iterations + 1):
            lr = trainer.lr
            totals = trainer.step(session.sampler.draw() for _ in range(accumulate))
            record: dict[str, Any] = {
                "step": step,
                "loss": sum(totals.values()),
                **totals,
                "seconds": round(time.perf_counter() - start, 3),
            }
            if not np.isfinite(record["loss"]):
                raise WtalError(f"loss became {record['loss']} at step {step}", "lower --lr")
            diverging(record["loss"], step, lr)
            log.write(json.dumps(record) + "\n")
            if writer is not None:
                for name, value in record.items():
                    if name not in ("step", "seconds"):
                        writer.add_scalar(f"train/{name}", value, step)
                writer.add_scalar("train/lr", lr, step)
            held_out = monitor(session.model, step) if monitor and monitor.due(step, iterations) else None
            if held_out is not None and monitor is not None:
                record["held_out"] = {
                    "name": monitor.held_out.selected_on,
                    "average_mAP": held_out["average_mAP"],
                    "best": monitor.best_score,
                    "best_step": monitor.best_step,
                }
            if on_log:
                on_log({**record, "of": iterations})


def on_device(batch: Batch, device: torch.device) -> Batch:
    """The batch with every tensor moved to ``device``."""
    return dataclasses.replace(
        batch,
        **{
            f.name: getattr(batch, f.name).to(device)
            for f in dataclasses.fields(batch)
            if getattr(batch, f.name) is not None
        },
    )
