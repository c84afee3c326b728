"""``wtal train``: a method on a DATA_DIR's features -> RUN_DIR."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .app import Data, Device, Method, Settings, app, console


@app.command("train")
def train_cli(
    method: Method,
    data: Data = Path("data"),
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder for checkpoint, config and log.")] = Path("run"),
    seed: Annotated[int, typer.Option(help="Seed of sampling, dropout and initialization.")] = 0,
    iters: Annotated[
        int | None, typer.Option(min=1, help="Optimizer steps (default: the method's published value).")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Videos per forward pass.")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate (published: 1e-4; 1e-3 for short CPU runs).")] = None,
    num_segments: Annotated[int | None, typer.Option(min=1, help="Rows per training video.")] = None,
    subset: Annotated[str, typer.Option(help="Training subset name (ActivityNet: training).")] = "train",
    negatives: Annotated[
        bool | None,
        typer.Option(
            "--negatives/--no-negatives", help="Train with CMCS hard negatives (default: on for cmcs when present)."
        ),
    ] = None,
    simulate_clicks: Annotated[
        bool, typer.Option(help="BackTAL: one simulated click per background run of the GT.")
    ] = False,
    annotator: Annotated[
        str | None, typer.Option(help="BackTAL: train on DATA_DIR/clicks.<NAME>.json (from wtal annotate).")
    ] = None,
    settings: Settings = None,
    device: Device = "auto",
):
    """Train a method on DATA_DIR's features; writes RUN_DIR/checkpoint.pt, config.json, train_log.jsonl."""
    from ..train import TrainOptions, parse_settings, train

    flags = {"iterations": iters, "batch_size": batch_size, "lr": lr, "num_segments": num_segments}
    overrides = {k: v for k, v in flags.items() if v is not None} | parse_settings(settings or [])
    options = TrainOptions(
        method,
        data,
        out,
        seed=seed,
        subset=subset,
        device=device,
        negatives=negatives,
        simulate_clicks=simulate_clicks,
        annotator=annotator,
        overrides=overrides,
    )
    checkpoint = train(options, on_log=lambda record: console.print(progress_line(record)))
    console.print(f"wrote {checkpoint}")


def progress_line(record: dict) -> str:
    """One training log record as a line: step, total loss, then each term."""
    terms = "  ".join(f"{k} {v:.4f}" for k, v in record.items() if k not in ("step", "loss", "seconds"))
    return f"step {record['step']:>6}  loss {record['loss']:.4f}  {terms}"
