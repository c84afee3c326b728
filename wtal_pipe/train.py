"""One training loop for every method: sampling, optimizer, accumulation, seeds, log; the run directory
it writes is described in ``run.py``."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .cache import atomic_dir, atomic_write_json, sweep_stale_tmp
from .data.dataset import Dataset, Video, simulate_clicks
from .data.sampling import click_mask, training_input
from .device import resolve_device
from .errors import DataError, WtalError
from .layout import DataLayout
from .methods import get_method
from .methods.base import Batch, MethodConfig
from .run import Run, run_meta, save_checkpoint


@dataclass
class TrainOptions:
    method: str
    data_dir: Path
    out_dir: Path
    seed: int = 0
    subset: str = "train"
    device: str = "auto"
    negatives: bool | None = None  # None: the method's default (on for CMCS when negatives exist)
    simulate_clicks: bool = False
    annotator: str | None = None  # read clicks.<annotator>.json instead of clicks.json
    log_every: int = 10
    overrides: dict = dataclasses.field(default_factory=dict)  # MethodConfig fields to change, e.g. lr


def parse_settings(pairs: list[str]) -> dict:
    """``["accumulate=4", "nms_threshold=none"]`` -> {"accumulate": 4, "nms_threshold": None} (JSON values)."""
    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise WtalError(f"bad --set {pair!r}", "use --set name=value")
        value = "null" if value.strip().lower() == "none" else value
        try:
            settings[key.strip()] = json.loads(value)
        except ValueError:
            settings[key.strip()] = value
    return settings


def build_config(method: str, overrides: dict) -> MethodConfig:
    config = get_method(method).Config.from_settings(overrides)
    if config.train_sampling == "whole" and config.batch_size != 1:
        raise WtalError("whole-video training (train_sampling whole) needs --batch-size 1")
    return config


def _use_negatives(options: TrainOptions, config: MethodConfig) -> bool:
    exists = DataLayout(Path(options.data_dir)).negatives_dir.is_dir()
    if options.negatives is None:
        return config.negatives_by_default and exists
    if options.negatives and not config.has_background_class:
        raise WtalError(
            f"{options.method} has no background class, so it cannot train on hard negatives",
            "drop --negatives or use basnet, cmcs or backtal",
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
    """Epochs of shuffled entries, each turned into a training input by the method's sampling."""

    def __init__(self, entries: list[Entry], config: MethodConfig, rng: np.random.Generator):
        self.entries, self.config, self.rng = entries, config, rng
        self.order: list[int] = []

    def next(self) -> Batch:
        chosen = []
        for _ in range(self.config.batch_size):
            if not self.order:
                self.order = list(self.rng.permutation(len(self.entries)))
            chosen.append(self.entries[self.order.pop()])
        features, clicks = [], []
        for entry in chosen:
            video, rows = entry.video, entry.video.load()
            sample, source = training_input(rows, self.config.train_sampling, self.config.num_segments, self.rng)
            features.append(sample)
            clicks.append(
                click_mask(
                    video.clicks, rows.shape[0], video.seconds_per_row, video.duration, source, self.config.num_segments
                )
            )
        return Batch(
            features=torch.from_numpy(np.stack(features)),
            labels=torch.from_numpy(np.stack([e.labels for e in chosen]).astype(np.float32)),
            background_only=torch.tensor([e.video.background_only for e in chosen]),
            clicks=torch.from_numpy(np.stack(clicks)),
            weights=torch.tensor([e.weight for e in chosen], dtype=torch.float32),
        )


def train(options: TrainOptions, on_log: Callable[[dict], None] | None = None) -> Path:
    """Train ``options.method`` on DATA_DIR's training subset; returns the checkpoint path."""
    config = build_config(options.method, options.overrides)
    dataset = Dataset(
        options.data_dir, options.subset, negatives=_use_negatives(options, config), annotator=options.annotator
    )
    rng = np.random.default_rng(options.seed)
    torch.manual_seed(options.seed)
    if config.uses_clicks:
        if options.simulate_clicks:
            for video in dataset.videos:
                if not video.background_only:
                    video.clicks = simulate_clicks(video, rng)
        elif not dataset.has_clicks:
            raise DataError(
                f"{options.method} is trained with background clicks, and there are none",
                "add clicks (wtal annotate, or wtal import clicks ...) or pass --simulate-clicks",
                dataset.clicks_path,
            )
    device = resolve_device(options.device)
    model = get_method(options.method)(dataset.feature_dim, dataset.num_classes, config)
    if config.normalize_features:
        rows = np.concatenate([np.asarray(v.load(), np.float64) for v in dataset.videos])
        model.feature_mean.copy_(torch.from_numpy(rows.mean(0)))
        model.feature_std.copy_(torch.from_numpy(rows.std(0) + 1e-6))
    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sampler = BatchSampler(training_entries(dataset.videos, config.single_label_copies), config, rng)
    out_dir = Path(options.out_dir)
    if out_dir.parent.exists():
        sweep_stale_tmp(out_dir.parent, f".{out_dir.name}")
    meta = run_meta(
        options.method,
        config,
        dataset.classes,
        dataset.feature_dim,
        dataset.data_dir,
        dataset.videos[0].features,
        seed=options.seed,
        subset=options.subset,
        videos=len(dataset.videos),
        negatives=sum(v.background_only for v in dataset.videos),
        clicks="simulated" if options.simulate_clicks else ("real" if config.uses_clicks else "none"),
        device=str(device),
    )
    model.train()
    divisor = config.accumulate if config.gradient_accumulation == "mean" else 1
    start = time.perf_counter()
    with atomic_dir(out_dir) as staging, open(Run(staging).log, "w") as log:
        atomic_write_json(Run(staging).config, meta.to_dict())
        for step in range(1, config.iterations + 1):
            optimizer.zero_grad(set_to_none=True)
            totals: dict[str, float] = {}
            for _ in range(config.accumulate):
                batch = _to(sampler.next(), device)
                terms = model.loss(model(batch.features), batch)
                (torch.stack(list(terms.values())).sum() / divisor).backward()
                for name, value in terms.items():  # logged per forward pass, whatever the accumulation
                    totals[name] = totals.get(name, 0.0) + value.item() / config.accumulate
            optimizer.step()
            record: dict[str, Any] = {
                "step": step,
                "loss": sum(totals.values()),
                **totals,
                "seconds": round(time.perf_counter() - start, 3),
            }
            if not np.isfinite(record["loss"]):
                raise WtalError(f"loss became {record['loss']} at step {step}", "lower --lr")
            log.write(json.dumps(record) + "\n")
            if on_log and (step % options.log_every == 0 or step == config.iterations):
                on_log(record)
        log.close()
        save_checkpoint(Run(staging).checkpoint, meta, model)
    return Run(out_dir).checkpoint


def _to(batch: Batch, device: torch.device) -> Batch:
    return Batch(*(t.to(device) for t in dataclasses.astuple(batch)))
