"""``wtal train``: a method on a DATA_DIR's features -> RUN_DIR (or one run per seed)."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.markup import escape

from ..methods.presets import PresetName
from .app import Data, Device, Method, Settings, app, console

Out = Annotated[Path, typer.Option("--out", "-o", help="Run folder for checkpoint, config and log.")]
Seed = Annotated[int, typer.Option(help="Seed of sampling, dropout, initialization and the --val split.")]
Iters = Annotated[int | None, typer.Option(min=1, help="Optimizer steps (default: the method's published value).")]
BatchSize = Annotated[int | None, typer.Option(min=1, help="Videos per forward pass.")]
Lr = Annotated[float | None, typer.Option(help="Learning rate (published: 1e-4; 1e-3 for short CPU runs).")]
NumSegments = Annotated[int | None, typer.Option(min=1, help="Rows per training video.")]
Subset = Annotated[
    str | None, typer.Option(help="Training subset (default: the preset's: train, ActivityNet training).")
]
Preset = Annotated[
    PresetName,
    typer.Option(help="Benchmark whose published settings, subsets and tIoU range to use (wtal presets lists them)."),
]
Negatives = Annotated[
    bool | None,
    typer.Option(
        "--negatives/--no-negatives", help="Train with CMCS hard negatives (default: on for cmcs if present)."
    ),
]
SimulateClicks = Annotated[bool, typer.Option(help="BackTAL: one simulated click per background run of the GT.")]
Annotator = Annotated[
    str | None, typer.Option(help="BackTAL: train on DATA_DIR/clicks.<NAME>.json (from wtal annotate).")
]
Val = Annotated[
    str | None,
    typer.Option(help="Videos held out and scored during training: a fraction of the training subset, or a subset."),
]
SelectOn = Annotated[
    Literal["validation", "test"],
    typer.Option(help="Keep the best step on the held-out videos, or on test (the official protocol; labelled so)."),
]
EvalEvery = Annotated[int | None, typer.Option(min=1, help="Steps between held-out evaluations (default: a tenth).")]
Seeds = Annotated[
    str | None, typer.Option(help="One run per seed into OUT/seed-K (e.g. 0-4 or 0,1,2); finished seeds are skipped.")
]
TensorBoard = Annotated[Path | None, typer.Option(help="Write TensorBoard scalars here (needs wtal-pipe[tb]).")]


@app.command("train")
def train_cli(
    method: Method,
    data: Data = Path("data"),
    out: Out = Path("run"),
    seed: Seed = 0,
    iters: Iters = None,
    batch_size: BatchSize = None,
    lr: Lr = None,
    num_segments: NumSegments = None,
    subset: Subset = None,
    preset: Preset = "thumos14",
    negatives: Negatives = None,
    simulate_clicks: SimulateClicks = False,
    annotator: Annotator = None,
    settings: Settings = None,
    val: Val = None,
    select_on: SelectOn = "validation",
    eval_every: EvalEvery = None,
    seeds: Seeds = None,
    tensorboard: TensorBoard = None,
    device: Device = "auto",
):
    """Train a method on DATA_DIR's features; writes RUN_DIR/checkpoint.pt, config.json, train_log.jsonl."""
    from ..training.train import TrainOptions, train, train_seeds
    from .options import parse_seeds, parse_settings

    flags = {"iterations": iters, "batch_size": batch_size, "lr": lr, "num_segments": num_segments}
    options = TrainOptions(
        method, data, out, seed=seed, subset=subset, preset=preset, device=device, negatives=negatives,
        simulate_clicks=simulate_clicks, annotator=annotator, val=val, select_on_test=select_on == "test",
        eval_every=eval_every, tensorboard=tensorboard,
        overrides={k: v for k, v in flags.items() if v is not None} | parse_settings(settings or []),
    )  # fmt: skip
    with TrainingProgress() as progress:
        if seeds is None:
            checkpoint = train(options, on_log=progress, report=progress.say)
            progress.say(f"wrote {checkpoint}")
            return
        for seeded in train_seeds(options, parse_seeds(seeds), on_log=progress, report=progress.say):
            if seeded.trained:
                progress.say(f"wrote {seeded.checkpoint}")


Rounds = Annotated[int, typer.Option(min=1, help="Rounds of pseudo-labelling and training.")]
Force = Annotated[bool, typer.Option(help="Redo a finished refined run at --out.")]


@app.command("refine")
def refine_cli(
    run: Annotated[Path, typer.Option(help="The trained RUN_DIR to refine.")],
    data: Data = Path("data"),
    out: Out = Path("run-refined"),
    rounds: Rounds = 2,
    settings: Settings = None,
    force: Force = False,
    device: Device = "auto",
):
    """Self-train a run on its own confident detections on its training videos (their labelled classes only),
    round by round into OUT/rounds/round-K; OUT then holds the last round as a run. Pseudo-label settings:
    keep_ratio, sigma; also the run's training settings (iterations, lr), pseudo_label_weight and
    pseudo_label_target (what the pseudo labels supervise: cas, cas-with-background or foreground)."""
    from ..training.refine import RefineOptions, refine
    from .options import parse_settings

    options = RefineOptions(run, data, out, rounds, device, force, parse_settings(settings or []))
    with TrainingProgress() as progress:
        progress.say(f"wrote {refine(options, report=progress.say, on_log=progress)}")


class TrainingProgress:
    """What a training run shows while it goes. On a terminal, a Rich bar redrawn every step: steps done, the
    loss, the latest held-out mAP, time elapsed and left. Elsewhere (a log file, CI), a plain line at the first
    step, then every ``every`` steps or ``seconds`` seconds, at every held-out evaluation and at the last step,
    each with the time left; so a long run speaks within seconds of its start either way."""

    def __init__(self, every: int = 10, seconds: float = 10.0):
        self.every, self.seconds = every, seconds
        self.bar: Any = None
        self.task: Any = None
        self.last_line = -math.inf

    def __enter__(self) -> TrainingProgress:
        if console.is_terminal:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("eta"), TimeRemainingColumn(), console=console,
            )  # fmt: skip
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def say(self, text: str) -> None:
        """A line above the bar (or a plain line)."""
        (self.bar.console if self.bar is not None else console).print(escape(text))

    def __call__(self, record: dict) -> None:
        step, total = record["step"], record["of"]
        held = record.get("held_out")
        if self.bar is not None:
            if step == 1 or self.task is None:
                self.task = self.bar.add_task("", total=total)
            self.bar.update(self.task, completed=step, description=escape(_short_line(record)))
            if held:
                self.say(progress_line(record))
            return
        now = time.monotonic()
        if step == 1 or step == total or held or step % self.every == 0 or now - self.last_line >= self.seconds:
            self.last_line = now
            console.print(escape(progress_line(record)))


def _short_line(record: dict) -> str:
    held = record.get("held_out")
    mAP = f"  held-out avg mAP {100 * held['average_mAP']:.2f}" if held else ""
    return f"loss {record['loss']:.4f}{mAP}"


def progress_line(record: dict) -> str:
    """One training record as a line: step of steps, total loss, each term, the time left, and the latest
    held-out score."""
    skip = ("step", "of", "loss", "seconds", "held_out")
    terms = "  ".join(f"{k} {v:.4f}" for k, v in record.items() if k not in skip)
    step, total, seconds = record["step"], record["of"], record["seconds"]
    left = seconds / step * (total - step)
    line = f"step {step:>6}/{total}  loss {record['loss']:.4f}  {terms}  [eta {_duration(left)}]"
    held = record.get("held_out")
    if held:
        label = "selected on test" if held["name"] == "test" else "validation"
        best = f"best {100 * held['best']:.2f} at step {held['best_step']}"
        line += f"  | {label} avg mAP {100 * held['average_mAP']:.2f} ({best})"
    return line


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{rest:02d}s" if minutes else f"{rest}s"


@app.command("presets")
def presets_cli() -> None:
    """Each method's settings per benchmark preset, with the source of every value (Markdown)."""
    print(preset_table_markdown(), end="")


def preset_table_markdown() -> str:
    """The README's table: per method and setting, its value under each preset, with the sources of the values
    other than THUMOS14's (``*``: the THUMOS14 value kept, no source gives one)."""
    from ..methods import get_method, list_methods
    from ..methods.presets import KEPT, PRESET_NAMES, preset_rows

    lines = [
        f"| method | setting | {' | '.join(PRESET_NAMES)} "
        "| source of the values other than THUMOS14's (official code unless said) |",
        "|---|---|" + "---|" * len(PRESET_NAMES) + "---|",
    ]
    for method in list_methods():
        for setting, cells, source in preset_rows(get_method(method)):
            lines.append(f"| `{method}` | `{setting}` | {' | '.join(cells)} | {source} |")
    return "\n".join(lines) + f"\n\n`*` {KEPT}.\n"
