"""One training loop for every method: sampling, optimizer, seeds, log, checkpoint.

The checkpoint holds only tensors and plain Python values (method name, full config, classes,
feature dimension), so it loads with ``torch.load(weights_only=True)`` and a run can be re-created
from it alone.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .cache import atomic_path, atomic_write_json
from .data.dataset import Dataset, Video, sample_rows, simulate_clicks
from .errors import DataError, WtalError
from .features.extract import resolve_device
from .methods import get_method
from .methods.base import Batch, Method, MethodConfig

CHECKPOINT = "checkpoint.pt"
FORMAT = "wtal-pipe/1"


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
    cls = get_method(method)
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    unknown = set(overrides) - fields
    if unknown:
        raise WtalError(f"unknown setting(s) {sorted(unknown)} for {method}", f"known: {', '.join(sorted(fields))}")
    config = cls.Config(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in overrides.items()})
    if config.num_segments is None and config.batch_size != 1:
        raise WtalError("whole-video training (num_segments None) needs --batch-size 1")
    return config


def _use_negatives(options: TrainOptions, config: MethodConfig) -> bool:
    exists = (Path(options.data_dir) / "negatives").is_dir()
    if options.negatives is None:
        return config.negatives_by_default and exists
    if options.negatives and not config.has_background_class:
        raise WtalError(f"{options.method} has no background class, so it cannot train on hard negatives",
                        "drop --negatives or use basnet, cmcs or backtal")
    return options.negatives


class BatchSampler:
    """Epochs of shuffled videos, each sampled to ``num_segments`` rows (random perturbation)."""

    def __init__(self, videos: list[Video], config: MethodConfig, clicks: dict[str, np.ndarray],
                 rng: np.random.Generator):
        self.videos, self.config, self.clicks, self.rng = videos, config, clicks, rng
        self.order: list[int] = []

    def next(self) -> Batch:
        chosen = []
        for _ in range(self.config.batch_size):
            if not self.order:
                self.order = list(self.rng.permutation(len(self.videos)))
            chosen.append(self.videos[self.order.pop()])
        features, clicks = [], []
        for video in chosen:
            rows = video.load()
            idx = sample_rows(rows.shape[0], self.config.num_segments, random=True, rng=self.rng)
            features.append(np.asarray(rows[idx], np.float32))
            clicked = np.zeros(rows.shape[0], np.float32)
            clicked[self.clicks.get(video.vid, video.clicks)] = 1.0
            clicks.append(clicked[idx])
        return Batch(features=torch.from_numpy(np.stack(features)),
                     labels=torch.from_numpy(np.stack([v.labels for v in chosen])),
                     background_only=torch.tensor([v.background_only for v in chosen]),
                     clicks=torch.from_numpy(np.stack(clicks)))


def train(options: TrainOptions, on_log: Callable[[dict], None] | None = None) -> Path:
    """Train ``options.method`` on DATA_DIR's training subset; returns the checkpoint path."""
    config = build_config(options.method, options.overrides)
    dataset = Dataset(options.data_dir, options.subset, negatives=_use_negatives(options, config))
    rng = np.random.default_rng(options.seed)
    torch.manual_seed(options.seed)
    clicks = {}
    if config.uses_clicks:
        if options.simulate_clicks:
            clicks = {v.vid: simulate_clicks(v, v.load().shape[0], rng) for v in dataset.videos if not v.background_only}
        elif not dataset.has_clicks:
            raise DataError(f"{options.method} is trained with background clicks, and there are none",
                            "add clicks.json (wtal import clicks ...) or pass --simulate-clicks",
                            Path(options.data_dir) / "clicks.json")
    device = resolve_device(options.device)
    model = get_method(options.method)(dataset.feature_dim, dataset.num_classes, config)
    if config.normalize_features:
        rows = np.concatenate([np.asarray(v.load(), np.float64) for v in dataset.videos])
        model.feature_mean.copy_(torch.from_numpy(rows.mean(0)))
        model.feature_std.copy_(torch.from_numpy(rows.std(0) + 1e-6))
    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sampler = BatchSampler(dataset.videos, config, clicks, rng)
    out_dir = Path(options.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run_meta = {"format": FORMAT, "method": options.method, "config": asdict(config),
                "feature_dim": dataset.feature_dim, "classes": dataset.classes, "seed": options.seed,
                "data_dir": str(Path(options.data_dir).resolve()), "subset": options.subset,
                "videos": len(dataset.videos), "negatives": sum(v.background_only for v in dataset.videos),
                "clicks": "simulated" if options.simulate_clicks else ("real" if config.uses_clicks else "none"),
                "seconds_per_row": dataset.videos[0].seconds_per_row, "device": str(device),
                "checkpoint": "final (no test-set selection)",
                "extraction": extraction_settings(dataset.videos[0].features)}
    atomic_write_json(out_dir / "config.json", run_meta)

    model.train()
    start = time.perf_counter()
    with atomic_path(out_dir / "train_log.jsonl") as log_tmp, open(log_tmp, "w") as log:
        for step in range(1, config.iterations + 1):
            optimizer.zero_grad(set_to_none=True)
            totals: dict[str, float] = {}
            for _ in range(config.accumulate):
                batch = _to(sampler.next(), device)
                terms = model.loss(model(batch.features), batch)
                loss = sum(terms.values()) / config.accumulate
                loss.backward()
                for name, value in terms.items():
                    totals[name] = totals.get(name, 0.0) + value.item() / config.accumulate
            optimizer.step()
            record = {"step": step, "loss": sum(totals.values()), **totals,
                      "seconds": round(time.perf_counter() - start, 3)}
            if not np.isfinite(record["loss"]):
                raise WtalError(f"loss became {record['loss']} at step {step}", "lower --lr")
            log.write(json.dumps(record) + "\n")
            if on_log and (step % options.log_every == 0 or step == config.iterations):
                on_log(record)
    checkpoint = out_dir / CHECKPOINT
    with atomic_path(checkpoint) as tmp:
        torch.save({**run_meta, "state_dict": {k: v.cpu() for k, v in model.state_dict().items()}}, tmp)
    return checkpoint


def extraction_settings(features_path: Path) -> dict | None:
    """How the training features were extracted (from ``wtal extract``'s provenance JSON), so that
    ``wtal localize`` can extract a new clip the same way; None for imported or synthetic features."""
    from .cache import read_json

    meta = read_json(Path(features_path).with_suffix(".json")) or {}
    if "decode" not in meta:
        return None
    weights = {stream: (w if isinstance(w, str) else w["path"]) for stream, w in meta["weights"].items()}
    return {"fps": meta["decode"]["fps"], "short_side": meta["decode"]["short_side"], "crop": meta["decode"]["crop"],
            "flow": meta["flow"]["preset"], "chunk": meta["chunk"], "weights": weights}


def _to(batch: Batch, device: torch.device) -> Batch:
    return Batch(*(t.to(device) for t in dataclasses.astuple(batch)))


def load_run(run_dir: str | Path, device: str = "cpu", overrides: dict | None = None) -> tuple[Method, dict]:
    """The trained model (eval mode) and its run metadata from RUN_DIR/checkpoint.pt; ``overrides``
    change settings that do not touch the weights (e.g. localization thresholds)."""
    path = Path(run_dir) / CHECKPOINT
    if not path.exists():
        raise DataError("no checkpoint in this run directory", "train first: wtal train --out RUN_DIR", run_dir)
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        raise DataError(f"unreadable checkpoint ({exc.__class__.__name__})", "re-train the run", path)
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        raise DataError("not a wtal-pipe checkpoint", "pass the RUN_DIR written by wtal train", path)
    cls = get_method(saved["method"])
    config_fields = {f.name for f in dataclasses.fields(cls.Config)}
    settings = {k: v for k, v in saved["config"].items() if k in config_fields} | (overrides or {})
    unknown = set(settings) - config_fields
    if unknown:
        raise WtalError(f"unknown setting(s) {sorted(unknown)}", f"known: {', '.join(sorted(config_fields))}")
    config = cls.Config(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in settings.items()})
    model = cls(saved["feature_dim"], len(saved["classes"]), config)
    model.load_state_dict(saved["state_dict"])
    meta = {k: v for k, v in saved.items() if k != "state_dict"}
    return model.to(resolve_device(device)).eval(), meta
