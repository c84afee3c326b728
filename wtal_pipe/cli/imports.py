"""``wtal import ...``: other published layouts -> a DATA_DIR or a RUN_DIR."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .app import Data, Method, console, import_app


@import_app.command("bas-thumos")
def import_bas_thumos_cli(
    source: Annotated[Path, typer.Argument(help="Folder with features/{train,test}/{rgb,flow}/ and gt.json.")],
    data: Data = Path("data"),
    durations: Annotated[Path | None, typer.Option(help="Annotation file with per-video durations.")] = None,
):
    """Import the BaS-Net/UM THUMOS14 I3D feature release (rows become concat(rgb, flow))."""
    from ..data.importers import import_bas_thumos

    count = import_bas_thumos(source, data, durations)
    console.print(f"imported {count} videos into {data}")


@import_app.command("clicks")
def import_clicks_cli(
    csv_file: Annotated[Path, typer.Argument(help="BackTAL click file (URLID,URL,TagID,Tag,Start,End,Time,State).")],
    data: Data = Path("data"),
):
    """Write DATA_DIR/clicks.json from a background-click CSV."""
    from ..data.importers import import_clicks

    count = import_clicks(csv_file, data)
    console.print(f"wrote clicks of {count} videos into {data}")


@import_app.command("checkpoint")
def import_checkpoint_cli(
    files: Annotated[
        list[Path], typer.Argument(help="State dict(s) saved by the official code (CMCS late fusion: RGB, then flow).")
    ],
    method: Method,
    data: Data = Path("data"),
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder to write.")] = Path("run"),
):
    """Import the authors' trained weights as a RUN_DIR for wtal test / wtal localize."""
    from ..data.importers import import_checkpoint

    checkpoint = import_checkpoint(files, method, data, out)
    console.print(f"wrote {checkpoint} ({method}, official weights from {', '.join(str(f) for f in files)})")
