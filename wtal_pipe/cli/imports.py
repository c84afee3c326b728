"""``wtal import ...``: other published layouts -> a DATA_DIR or a RUN_DIR."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .app import Data, Method, console, import_app, warn


@import_app.command("bas-thumos")
def import_bas_thumos_cli(
    source: Annotated[Path, typer.Argument(help="Folder with features/{train,test}/{rgb,flow}/ and gt.json.")],
    data: Data = Path("data"),
    durations: Annotated[Path | None, typer.Option(help="Annotation file with per-video durations.")] = None,
    force: Annotated[
        bool, typer.Option(help="Import over an existing dataset (its annotations and features).")
    ] = False,
):
    """Import the BaS-Net/UM THUMOS14 I3D feature release (rows become concat(rgb, flow))."""
    from ..data.importers import import_bas_thumos

    count = import_bas_thumos(source, data, durations, force)
    console.print(f"imported {count} videos into {data}")


@import_app.command("clicks")
def import_clicks_cli(
    csv_file: Annotated[Path, typer.Argument(help="BackTAL click file (URLID,URL,TagID,Tag,Start,End,Time,State).")],
    data: Data = Path("data"),
    force: Annotated[bool, typer.Option(help="Replace other clicks in DATA_DIR/clicks.json.")] = False,
):
    """Write DATA_DIR/clicks.json from a background-click CSV."""
    from ..data.importers import import_clicks

    count = import_clicks(csv_file, data, force)
    console.print(f"wrote clicks of {count} videos into {data}")


@import_app.command("checkpoint")
def import_checkpoint_cli(
    files: Annotated[
        list[Path],
        typer.Argument(
            help="State dict(s) saved by the official code (CMCS late fusion: RGB, then flow; CASE: best_model.pkl "
            "and cls_gt.npy)."
        ),
    ],
    method: Method,
    data: Data = Path("data"),
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder to write.")] = Path("run"),
    force: Annotated[bool, typer.Option(help="Replace the run --out holds.")] = False,
):
    """Import the authors' trained weights as a RUN_DIR for wtal test / wtal localize."""
    from ..run import import_checkpoint

    checkpoint, replaced = import_checkpoint(files, method, data, out, force)
    if replaced:
        warn(f"replaced {replaced}")
    console.print(f"wrote {checkpoint} ({method}, official weights from {', '.join(str(f) for f in files)})")


TestFraction = Annotated[
    float, typer.Option(min=0.0, max=0.99, help="Videos without a subset: this share (per label) goes to test.")
]
SplitSeed = Annotated[int, typer.Option(help="Seed of the train/test split (written into the annotations).")]
ForceAnnotations = Annotated[bool, typer.Option(help="Replace an existing DATA_DIR/annotations.json.")]


@import_app.command("labels")
def import_labels_cli(
    csv_file: Annotated[Path, typer.Argument(help="CSV with a header: video,label[,subset][,start,end].")],
    data: Data = Path("data"),
    test_fraction: TestFraction = 0.2,
    seed: SplitSeed = 0,
    force: ForceAnnotations = False,
):
    """DATA_DIR/annotations.json from a CSV of video-level labels (segments optional)."""
    from ..data.labels import import_labels_csv

    built = import_labels_csv(csv_file, data, test_fraction=test_fraction, seed=seed, force=force)
    console.print(built.summary())


@import_app.command("folders")
def import_folders_cli(
    videos: Annotated[Path, typer.Argument(help="Folder with one sub-folder of videos per class.")],
    data: Data = Path("data"),
    test_fraction: TestFraction = 0.2,
    seed: SplitSeed = 0,
    force: ForceAnnotations = False,
):
    """DATA_DIR/annotations.json from class folders: each video labelled with its folder, split train/test."""
    from ..data.labels import import_class_folders

    built = import_class_folders(videos, data, test_fraction=test_fraction, seed=seed, force=force)
    console.print(built.summary())


@import_app.command("features")
def import_features_cli(
    source: Annotated[Path, typer.Argument(help="Folder of <video>.npy (T, D) feature files made elsewhere.")],
    data: Data = Path("data"),
    fps: Annotated[float | None, typer.Option(min=0.001, help="Frame rate the rows were cut at.")] = None,
    frames_per_row: Annotated[int | None, typer.Option(min=1, help="Frames one row covers.")] = None,
    stride: Annotated[
        int | None, typer.Option(min=1, help="Frames from one row's start to the next (default: frames per row).")
    ] = None,
    whole_video: Annotated[
        bool, typer.Option(help="Rows resampled to cover each whole video (fixed T, ActivityNet style).")
    ] = False,
    annotations: Annotated[
        Path | None,
        typer.Option(help="ActivityNet-style annotation file (e.g. activity_net.v1-3.min.json): import its videos."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace another timing declaration or dataset.")] = False,
):
    """Copy feature files into DATA_DIR/features and declare how their rows are timed; with --annotations, the
    labelled videos of that file (files named <id>.npy or v_<id>.npy), its subsets and segments."""
    from ..data.releases import import_features
    from ..data.timing import DECLARE, FeatureTiming
    from ..errors import WtalError

    frame_options = (fps, frames_per_row, stride)
    timed = fps is not None and frames_per_row is not None
    if whole_video == timed or (whole_video and any(v is not None for v in frame_options)):
        raise WtalError("say how the rows are timed: --fps and --frames-per-row, or --whole-video (not both)", DECLARE)
    timing = FeatureTiming() if whole_video else FeatureTiming(fps, frames_per_row, stride or frames_per_row)
    imported = import_features(source, data, timing, force, annotations)
    console.print(f"{imported.summary()}\nrows timed as {timing.to_dict()}")


@import_app.command("wtalc")
def import_wtalc_cli(
    source: Annotated[
        Path, typer.Argument(help="Folder holding <Name>-I3D-JOINTFeatures.npy and <Name>-Annotations/ (W-TALC).")
    ],
    data: Data = Path("data"),
    name: Annotated[
        str | None, typer.Option(help="The release's <Name> when the folder holds several (e.g. ActivityNet1.2).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Import over an existing dataset.")] = False,
):
    """A W-TALC feature release (THUMOS14, ActivityNet 1.2 I3D) -> DATA_DIR; its pickles are read without
    running anything in them."""
    from ..data.releases import import_wtalc

    imported = import_wtalc(source, data, name, force)
    console.print(imported.summary())
