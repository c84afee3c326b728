"""Evaluation during training: a held-out set scored every N steps, the scores written to
``RUN_DIR/metrics.jsonl`` (and TensorBoard), and the weights of the best step kept.

Published WTAL numbers are mostly the best of many evaluations on the test set; a number a reviewer can
trust is chosen on videos the model never trained on. So the held-out set is a validation split of the
training subset (``--val 0.2``: seeded, stratified by label) or another subset (``--val SUBSET``); the test
subset (``--select-on test``, the official protocol) is allowed, and labelled wherever its numbers go.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from ..data.annotations import is_labels_only, load_annotations
from ..data.dataset import Dataset, Video
from ..data.labels import stratified_split
from ..errors import DataError, WtalError
from ..evaluation.evaluate import evaluate
from ..inference.detections import DetectionTable
from ..inference.pipeline import localize_rows, model_input
from ..intervals import parse_tiou
from ..methods.base import Batch, Method
from ..run import PROTOCOLS, Run

if TYPE_CHECKING:
    from ..run import RunMeta

SelectedOn = Literal["validation", "test"]


@dataclass(frozen=True)
class HeldOut:
    """Which videos are held out for evaluation during training, and why they were chosen."""

    videos: list[str]
    subset: str  # the annotation subset they come from
    selected_on: SelectedOn
    how: str  # in words, for the run's metadata

    def to_dict(self) -> dict[str, Any]:
        return {"videos": self.videos, "subset": self.subset, "selected_on": self.selected_on, "how": self.how}


def choose_held_out(
    database: dict, train_subset: str, val: str | None, *, test_subset: str, select_on_test: bool, seed: int
) -> HeldOut | None:
    """``val``: a fraction of the training subset (``"0.2"``) or another subset's name; ``select_on_test``:
    select on the benchmark's ``test_subset``, as the official code does (and labelled so). ``val`` may not
    name the test subset: a checkpoint chosen on it is chosen on test, whatever the option was called.
    Held-out videos need segments."""
    if val is not None and select_on_test:
        raise WtalError("--val and --select-on test choose the checkpoint in two ways", "pass one of them")
    if select_on_test:
        how = f"the {test_subset!r} subset, the benchmark's test set (the official protocol)"
        held = HeldOut(_subset(database, test_subset, "--select-on test"), test_subset, "test", how)
    elif val is None:
        return None
    elif (fraction := _fraction(val)) is not None:
        training = {v: e["labels"] or ["-"] for v, e in database.items() if e.get("subset") == train_subset}
        split = stratified_split(training, fraction, seed)
        chosen = sorted(vid for vid, part in split.items() if part == "test")
        if not chosen:
            raise WtalError(f"--val {val} holds out no video of {len(training)}", "use a larger fraction")
        if len(chosen) == len(training):
            raise WtalError(
                f"--val {val} holds out all {len(training)} videos of {train_subset!r}, leaving none to train on",
                "use a smaller fraction, e.g. --val 0.2",
            )
        how = f"{val} of {train_subset!r}, stratified by label, seed {seed}"
        held = HeldOut(chosen, train_subset, "validation", how)
    elif val == test_subset:
        raise WtalError(
            f"--val {val} is the subset runs are tested on: a checkpoint chosen there is chosen on test",
            "pass --select-on test to do that knowingly (every output then says so), or --val 0.2",
        )
    else:
        if val == train_subset:
            raise WtalError(f"--val {val} is the training subset itself", "pass a fraction like 0.2, or another subset")
        held = HeldOut(_subset(database, val, f"--val {val}"), val, "validation", f"the {val!r} subset")
    unscored = [vid for vid in held.videos if is_labels_only(database[vid])]
    if unscored:
        raise DataError(
            f"held-out video(s) {', '.join(unscored[:3])} have labels but no segments: they cannot be scored",
            "hold out videos with segments (another subset, or add segments)",
        )
    return held


def _fraction(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    if not 0 < value < 1:
        raise WtalError(f"--val {text}: a fraction lies between 0 and 1", "e.g. --val 0.2")
    return value


def _subset(database: dict, subset: str, option: str) -> list[str]:
    videos = sorted(vid for vid, e in database.items() if e.get("subset") == subset)
    if not videos:
        present = ", ".join(sorted({str(e.get("subset")) for e in database.values()}))
        raise WtalError(f"{option}: no videos in subset {subset!r}", f"subsets present: {present}")
    return videos


@dataclass
class Monitor:
    """Scores a model on the held-out videos; remembers the best step's weights."""

    held_out: HeldOut
    videos: list[Video]
    database: dict
    classes: list[str]
    every: int
    metrics_path: Path
    tensorboard: Any = None  # a SummaryWriter, or None
    best_step: int | None = None
    best_score: float = -1.0
    best_state: dict[str, torch.Tensor] | None = None
    seconds: list[float] = field(default_factory=list)  # time of each evaluation

    @classmethod
    def open(cls, data_dir: Path, held_out: HeldOut, classes: list[str], every: int, run_dir: Path) -> Monitor:
        dataset = Dataset(data_dir, held_out.subset, classes=classes, only=set(held_out.videos))
        annotations = load_annotations(dataset.annotations_path)
        database = {vid: annotations[vid] for vid in held_out.videos}  # the held-out videos are the ground truth
        return cls(held_out, dataset.videos, database, classes, every, Run(run_dir).metrics)

    def due(self, step: int, last: int) -> bool:
        return step % self.every == 0 or step == last

    @torch.no_grad()
    def __call__(self, model: Method, step: int) -> dict[str, Any]:
        """Score ``model`` now: one line of ``metrics.jsonl``; the best step's weights are kept."""
        started = time.perf_counter()
        was_training = model.training
        model.eval()
        results, losses = {}, []
        for video in self.videos:
            rows = video.load()
            results[video.vid] = localize_rows(model, rows, video.timing(rows.shape[0]))
            losses.append(self._loss(model, video, rows))
        model.train(was_training)
        thresholds = parse_tiou(model.config.localization.eval_tiou)
        detections = DetectionTable.of({vid: r.detections for vid, r in results.items()}, self.classes)
        result = evaluate(self.database, detections, self.held_out.subset, thresholds)
        terms = {name: float(np.mean([loss[name] for loss in losses])) for name in losses[0]}
        record = {
            "step": step,
            "held_out": self.held_out.selected_on,
            "average_mAP": result.average_map,
            "mAP": {f"{t:g}": float(m) for t, m in zip(result.thresholds, result.map_per_threshold, strict=True)},
            "loss": sum(terms.values()),
            **{f"loss_{k}": v for k, v in terms.items()},
        }
        if result.average_map > self.best_score:
            self.best_step, self.best_score = step, result.average_map
            self.best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        self.seconds.append(time.perf_counter() - started)
        record["seconds"] = round(self.seconds[-1], 3)
        with open(self.metrics_path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        if self.tensorboard is not None:
            self.tensorboard.add_scalar(f"{self.held_out.selected_on}/average_mAP", result.average_map, step)
            self.tensorboard.add_scalar(f"{self.held_out.selected_on}/loss", record["loss"], step)
        return record

    def _loss(self, model: Method, video: Video, rows: np.ndarray) -> dict[str, float]:
        """The loss terms of one held-out video as the model sees it at test time (no clicks)."""
        x = model_input(model, rows)
        batch = Batch(
            features=x,
            labels=torch.from_numpy(video.labels[None]).to(x.device),
            background_only=torch.tensor([video.background_only], device=x.device),
            clicks=torch.zeros(x.shape[:2], device=x.device),
            weights=torch.ones(1, device=x.device),
        )
        return {k: float(v) for k, v in model.objective(model(batch.features), batch).items()}

    def best_model(self, model: Method) -> Method:
        """A copy of ``model`` holding the best step's weights."""
        best = copy.deepcopy(model)
        if self.best_state is not None:
            best.load_state_dict(self.best_state)
        return best

    def describe_best(self) -> str:
        where = PROTOCOLS[self.held_out.selected_on]
        return f"{where} (step {self.best_step}, average mAP {100 * self.best_score:.2f})"


def tensorboard_writer(folder: Path | None, meta: RunMeta) -> Any:
    """A TensorBoard SummaryWriter in ``folder`` (None: no TensorBoard); a one-line error naming the extra
    when the package is missing."""
    if folder is None:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise WtalError("--tensorboard needs the tensorboard package", "pip install 'wtal-pipe[tb]'") from exc
    writer = SummaryWriter(str(folder))
    writer.add_text("run", json.dumps({"method": meta.method, "seed": meta.seed, "config": meta.config}))
    return writer
