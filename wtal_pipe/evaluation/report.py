"""``wtal report``: runs scored on one subset and grouped by what they share (method and settings, seeds
apart), each group's mAP as mean +- standard deviation over its seeds, with the protocol that chose each
checkpoint said in words, the settings that tell the groups apart, and the training curves.

A number a reader can trust says how many runs it averages and whether its checkpoint was chosen on
the test set (as the four methods' official code does: "selected on test"), on validation videos, or
not at all (the final step).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..cache import atomic_path, atomic_write_json, atomic_write_text, read_json
from ..data.annotations import load_annotations, unscored_videos
from ..errors import WtalError
from ..intervals import parse_tiou
from ..layout import DataLayout
from ..methods import get_method
from ..run import Checkpoint, Run, RunMeta, load_run
from .evaluate import EvaluationResult
from .testing import test_run

DEFAULT_TIOU = "0.1:0.7:0.1"  # when the runs' papers report different ranges: THUMOS14's


@dataclass
class RunScore:
    """One run's result on the subset."""

    path: Path
    meta: RunMeta
    result: EvaluationResult

    @property
    def protocol(self) -> str:
        return self.meta.protocol


@dataclass
class Group:
    """Runs that differ only in their seed."""

    name: str
    runs: list[RunScore] = field(default_factory=list)

    @property
    def table(self) -> np.ndarray:
        """(runs, thresholds + 1): each run's mAP per tIoU and its average, in %."""
        return np.array([[*r.result.map_per_threshold, r.result.average_map] for r in self.runs]) * 100

    def mean_sd(self) -> tuple[np.ndarray, np.ndarray]:
        table = self.table
        sd = table.std(axis=0, ddof=1) if len(table) > 1 else np.zeros(table.shape[1])
        return table.mean(axis=0), sd


def expand(paths: list[Path]) -> list[Path]:
    """Run folders: each path itself, or its ``seed-*`` runs; a run reached twice (``R R``, ``R R/seed-0``,
    a link) is a one-line error naming both spellings: counted twice, it would shrink the sd."""
    runs: dict[Path, Path] = {}
    for path in paths:
        found = [Path(path)] if Run(path).checkpoint.exists() else sorted(Path(path).glob("seed-*"))
        found = [p for p in found if Run(p).checkpoint.exists()]
        if not found:
            raise WtalError("holds no run (checkpoint.pt) and no seed-K runs", "pass run folders of wtal train", path)
        for run in found:
            first = runs.get(run.resolve())
            if first is not None:
                raise WtalError(
                    f"the run {run} is given twice (also as {first})", "name each run once: it would count twice"
                )
            runs[run.resolve()] = run
    return list(runs.values())


def _group_key(meta: RunMeta, protocol: str) -> str:
    """Runs that share this differ in their seed only (settings as this version reads them: runs of an earlier
    version group with their equals)."""
    settings = get_method(meta.method).from_saved(meta.config).values()
    return json.dumps([meta.method, settings, meta.data_dir, meta.subset, protocol], sort_keys=True, default=str)


def score_runs(
    paths: list[Path],
    data_dir: Path,
    subset: str,
    checkpoint: Checkpoint | None,
    tiou: str | None,
    report: Callable[[str], None] = lambda _: None,
) -> tuple[list[Group], np.ndarray]:
    """Every run scored on ``subset`` and grouped; the tIoU thresholds used. ``report`` hears of a run whose
    ``config.json`` is missing or unreadable (its checkpoint's own record is used; nothing is guessed)."""
    layout = DataLayout(Path(data_dir))
    database = load_annotations(layout.annotations)
    if unscored_videos(database, subset, False, layout.annotations) is None:
        raise WtalError(f"no video of subset {subset!r} has segments: nothing to score", "", layout.annotations)
    runs = expand(paths)
    for path in runs:
        if not isinstance(read_json(Run(path).config), dict):
            report(f"{Run(path).config} is missing or unreadable: {path} is read from its checkpoint's own record")
    loaded = [(path, *load_run(path, "cpu", checkpoint=checkpoint)) for path in runs]
    ranges = {model.config.localization.eval_tiou for _, model, _ in loaded}
    thresholds = parse_tiou(tiou or (ranges.pop() if len(ranges) == 1 else DEFAULT_TIOU))
    groups: dict[str, Group] = {}
    for path, model, meta in loaded:
        result = test_run(model, meta, data_dir, subset, thresholds).result
        assert result is not None  # the subset has segments (checked above)
        run = RunScore(path, meta, result)
        key = _group_key(meta, run.protocol)
        groups.setdefault(key, Group(f"{meta.method} ({len(groups) + 1})")).runs.append(run)
    return _named(list(groups.values())), thresholds


def differing_settings(groups: list[Group]) -> dict[str, dict[str, list[Any]]]:
    """Per method with several groups, the settings whose values differ between its groups: method -> name ->
    each of its groups' values (settings of different methods differ anyway: they are not listed)."""
    by_method: dict[str, list[dict[str, Any]]] = {}
    for group in groups:
        meta = group.runs[0].meta
        by_method.setdefault(meta.method, []).append(get_method(meta.method).from_saved(meta.config).values())
    return {
        method: {k: [f[k] for f in flat] for k in sorted(flat[0]) if len({json.dumps(f[k]) for f in flat}) > 1}
        for method, flat in by_method.items()
        if len(flat) > 1
    }


def _named(groups: list[Group]) -> list[Group]:
    """Each group named by its method and, where a method has several groups, the settings that differ."""
    differing = differing_settings(groups)
    seen: dict[str, int] = {}
    for group in groups:
        method = group.runs[0].meta.method
        index = seen[method] = seen.get(method, -1) + 1
        extra = [f"{k}={v[index]}" for k, v in differing.get(method, {}).items()]
        group.name = method + (f" ({', '.join(extra)})" if extra else "")
    return groups


def markdown(groups: list[Group], thresholds: np.ndarray, subset: str, data_dir: Path) -> str:
    head = " | ".join(f"mAP@{t:g}" for t in thresholds)
    lines = [
        f"Scored on subset `{subset}` of `{data_dir}`; mean +- standard deviation over n runs (seeds), in %.",
        "",
        f"| runs | protocol | n | {head} | average |",
        "|---|---|---|" + "---|" * (len(thresholds) + 1),
    ]
    for group in groups:
        mean, sd = group.mean_sd()
        cells = " | ".join(f"{m:.2f} +- {s:.2f}" for m, s in zip(mean, sd, strict=True))
        lines.append(f"| {group.name} | {group.runs[0].protocol} | {len(group.runs)} | {cells} |")
    for method, differing in differing_settings(groups).items():
        settings = "; ".join(f"`{k}` " + " / ".join(json.dumps(v) for v in values) for k, values in differing.items())
        lines += ["", f"Settings that differ between the {method} groups: {settings}"]
    if any(g.runs[0].protocol == "selected on test" for g in groups):
        lines += ["", "**selected on test**: the step that scored best on this very subset (the official protocol)."]
    for group in groups:
        seeds = ", ".join(f"seed {r.meta.seed} {r.result.average_map * 100:.2f}" for r in group.runs)
        lines += ["", f"{group.name}, {group.runs[0].protocol}, average mAP per run: {seeds}"]
    return "\n".join(lines) + "\n"


def to_json(groups: list[Group], thresholds: np.ndarray, subset: str) -> dict[str, Any]:
    listed = []
    for group in groups:
        mean, sd = group.mean_sd()
        runs = [
            {"path": str(r.path), "seed": r.meta.seed, "checkpoint": r.meta.checkpoint, **r.result.to_dict()}
            for r in group.runs
        ]
        listed.append(
            {
                "name": group.name,
                "protocol": group.runs[0].protocol,
                "n": len(group.runs),
                "mean": [float(v) for v in mean],
                "sd": [float(v) for v in sd],
                "runs": runs,
            }
        )
    return {"subset": subset, "tiou": [float(t) for t in thresholds], "groups": listed}


def _lines(path: Path) -> list[dict[str, Any]]:
    """A JSON-lines file's records ([] when there is none)."""
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def plot_curves(groups: list[Group], path: Path) -> None:
    """Per group: the training loss and the held-out average mAP over steps, one line per seed."""
    from .plot import pyplot

    plt = pyplot()
    fig, axes = plt.subplots(len(groups), 2, figsize=(11, 2.8 * len(groups) + 0.5), squeeze=False)
    for row, group in enumerate(groups):
        loss_ax, map_ax = axes[row]
        for run in group.runs:
            log, metrics = _lines(Run(run.path).log), _lines(Run(run.path).metrics)
            loss_ax.plot([r["step"] for r in log], [r["loss"] for r in log], lw=0.8, label=f"seed {run.meta.seed}")
            steps, scores = [m["step"] for m in metrics], [100 * m["average_mAP"] for m in metrics]
            map_ax.plot(steps, scores, marker=".", lw=0.8)
        loss_ax.set_title(f"{group.name}: training loss", fontsize=9)
        map_ax.set_title(f"{group.name}: held-out average mAP (%)", fontsize=9)
        loss_ax.legend(fontsize=7)
    axes[-1, 0].set_xlabel("step")
    axes[-1, 1].set_xlabel("step")
    fig.tight_layout()
    with atomic_path(path, keep_suffix=True) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def write_report(
    groups: list[Group],
    thresholds: np.ndarray,
    subset: str,
    data_dir: Path,
    *,
    out: Path | None,
    json_out: Path | None,
    plot: Path | None,
) -> str:
    text = markdown(groups, thresholds, subset, data_dir)
    if json_out:
        atomic_write_json(json_out, to_json(groups, thresholds, subset))
    if out:
        atomic_write_text(out, text)
    if plot:
        plot_curves(groups, plot)
    return text
