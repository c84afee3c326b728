"""``wtal report``: runs (and their seeds) scored on one subset, as mean +- sd per group, with the protocol."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.markup import escape

from .app import Data, app, console, warn


@app.command("report")
def report_cli(
    runs: Annotated[list[Path], typer.Argument(help="Run folders, or folders of seed-K runs (wtal train --seeds).")],
    data: Data = Path("data"),
    subset: Annotated[str, typer.Option(help="The subset to score every run on.")] = "test",
    checkpoint: Annotated[
        Literal["final", "best"] | None,
        typer.Option(help="The final step, or the best on the held-out videos (default: best with --val, else final)."),
    ] = None,
    tiou: Annotated[
        str | None,
        typer.Option(help="tIoU thresholds (default: the runs' papers' range; 0.1:0.7:0.1 if they differ)."),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the Markdown report here.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write every number as JSON here.")] = None,
    plot: Annotated[
        Path | None, typer.Option(help="PNG of the loss and held-out mAP curves, one line per seed.")
    ] = None,
):
    """Per group of runs (seeds apart): mAP at each tIoU and on average, mean +- sd over seeds, with n and the
    protocol that chose each checkpoint."""
    from ..cache import check_output_file
    from ..evaluation.report import score_runs, write_report

    for option, path in (("--out", out), ("--json", json_out), ("--plot", plot)):
        if path is not None:
            check_output_file(path, option)  # before scoring every run
    groups, thresholds = score_runs(runs, data, subset, checkpoint, tiou, report=warn)
    text = write_report(groups, thresholds, subset, data, out=out, json_out=json_out, plot=plot)
    console.print(escape(text))
