"""``wtal train``: a method on a DATA_DIR's features -> RUN_DIR (or one run per seed)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

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
    if seeds is None:
        console.print(f"wrote {train(options, on_log=show_progress)}")
        return
    for seeded in train_seeds(options, parse_seeds(seeds), on_log=show_progress, report=console.print):
        if seeded.trained:
            console.print(f"wrote {seeded.checkpoint}")


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
    console.print(f"wrote {refine(options, report=console.print, on_log=show_progress)}")


def show_progress(record: dict) -> None:
    console.print(progress_line(record))


def progress_line(record: dict) -> str:
    """One training log record as a line: step, total loss, each term, and the latest held-out score."""
    skip = ("step", "loss", "seconds", "held_out")
    terms = "  ".join(f"{k} {v:.4f}" for k, v in record.items() if k not in skip)
    line = f"step {record['step']:>6}  loss {record['loss']:.4f}  {terms}"
    held = record.get("held_out")
    if held:
        label = "selected on test" if held["name"] == "test" else "validation"
        best = f"best {100 * held['best']:.2f} at step {held['best_step']}"
        line += f"  | {label} avg mAP {100 * held['average_mAP']:.2f} ({best})"
    return line


@app.command("presets")
def presets_cli() -> None:
    """Each method's settings per benchmark preset, with the source of every value (Markdown)."""
    print(preset_table_markdown(), end="")


def preset_table_markdown() -> str:
    """The README's table: per method and setting, its value under each preset, with the sources of the
    ActivityNet values (``*``: the THUMOS14 value kept, no source gives one)."""
    from ..methods import get_method, list_methods
    from ..methods.presets import KEPT, PRESET_NAMES, preset_rows

    lines = [
        f"| method | setting | {' | '.join(PRESET_NAMES)} "
        "| source of the ActivityNet values (official code unless said) |",
        "|---|---|" + "---|" * len(PRESET_NAMES) + "---|",
    ]
    for method in list_methods():
        for setting, cells, source in preset_rows(get_method(method)):
            lines.append(f"| `{method}` | `{setting}` | {' | '.join(cells)} | {source} |")
    return "\n".join(lines) + f"\n\n`*` {KEPT}.\n"
