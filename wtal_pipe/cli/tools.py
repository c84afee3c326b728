"""``wtal demo``, ``wtal make-sample``, ``wtal annotate`` and ``wtal bench``: tools around the pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ..tools.bench_sections import BENCH_SECTIONS
from .app import Data, Device, app, console, warn


@app.command("demo")
def demo_cli(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for every artifact of the demo.")] = Path(
        "wtal_demo"
    ),
    videos: Annotated[int, typer.Option(min=4, help="Synthetic videos to generate (3 of 4 for training).")] = 24,
    seconds: Annotated[float, typer.Option(min=4.0, help="Length of each video.")] = 14.0,
    iters: Annotated[int, typer.Option(min=1, help="Training steps.")] = 400,
    seed: Annotated[int, typer.Option(help="Seed of the generated videos and the training.")] = 0,
):
    """The whole pipeline on a generated labelled video set: extract -> negatives -> train -> test -> localize."""
    from ..tools.demo import run_demo

    run_demo(out, n_videos=videos, seconds=seconds, iterations=iters, seed=seed, print_fn=console.print, warn_fn=warn)


@app.command("make-sample")
def make_sample_cli(
    out: Annotated[
        Path, typer.Argument(help="The clip to write, or with --classes the folder of class folders.")
    ] = Path("sample.mp4"),
    seconds: Annotated[float, typer.Option(min=1.0, help="Length of each clip.")] = 8.0,
    fps: Annotated[float, typer.Option(min=1.0, help="Frame rate.")] = 30.0,
    classes: Annotated[
        int | None,
        typer.Option(min=1, max=4, help="Write OUT/<class>/*.mp4 and OUT/labels.csv for this many classes instead."),
    ] = None,
    per_class: Annotated[
        int, typer.Option(min=2, help="Clips per class (with --classes; the last one is a test clip).")
    ] = 4,
    seed: Annotated[int, typer.Option(help="Seed of the scenes and of where the actions are.")] = 0,
):
    """Synthetic clips to try the pipeline on: one clip with two planted moving shapes, or (--classes) a folder
    of clips per class with a labels.csv, standing in for your own videos."""
    from ..tools.synthetic import make_class_folders, make_sample

    if classes is not None:
        labels = make_class_folders(out, classes, per_class, seconds=seconds, fps=fps, seed=seed)
        console.print(
            f"wrote {classes * per_class} clips in {out}/<class>/ and {labels} (labels; test clips' segments)"
        )
        return
    path, actions = make_sample(out, seconds=seconds, fps=fps, seed=seed)
    console.print(
        f"wrote {path} ({seconds:g} s at {fps:g} fps); planted: "
        + ", ".join(f"{a.style.name} {a.start:g}-{a.end:g} s" for a in actions)
    )


@app.command("weights")
def weights_cli() -> None:
    """Where I3D checkpoints are looked for, which of the known ones are there, and whether each file's sha256
    matches the registry."""
    from ..features.weights import MODELS_RULE, inventory, models_dir

    console.print(f"looking in {models_dir()} ({MODELS_RULE})")
    for found in inventory():
        digest = f"  sha256 {found.sha256}" if found.sha256 else ""
        console.print(f"  {found.name:<14} {found.path.name:<18} {escape(found.verdict)}{digest}")
    console.print("use them as: wtal extract VIDEOS --rgb-weights rgb_imagenet --flow-weights flow_imagenet")


@app.command("annotate")
def annotate_cli(
    videos: Annotated[Path, typer.Option(help="Folder with the videos, named <video_id>.<ext>.")],
    data: Data = Path("data"),
    old_data: Annotated[
        Path | None, typer.Argument(hidden=True, help="Deprecated: the dataset folder; pass --data.")
    ] = None,
    annotator: Annotated[
        str | None, typer.Option(help="Save to clicks.<NAME>.json (one file per annotator) instead of clicks.json.")
    ] = None,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port on 127.0.0.1 (0: any free one).")] = 8765,
    run: Annotated[
        Path | None, typer.Option(help="A trained run: show its per-class scores and detections under the video.")
    ] = None,
):
    """A local web page to click background moments on the videos and review detections (clicks are saved in
    the dataset folder, --data)."""
    from ..errors import WtalError
    from ..web.app import Workspace, serve

    if old_data is not None:
        warn(f"the dataset folder as an argument is deprecated: pass --data {old_data}")
        data = old_data

    workspace = Workspace(data, videos, annotator, run, report=console.print)
    try:
        serve(workspace, port)
    except OSError as exc:
        raise WtalError(f"cannot serve on 127.0.0.1:{port} ({exc.strerror})", "pick another --port") from exc
    except KeyboardInterrupt:
        console.print("stopped")


@app.command("bench")
def bench_cli(
    sections: Annotated[
        list[str] | None,
        typer.Argument(
            help=f"Sections to measure (default: all but scale, which writes ~21 GB): {', '.join(BENCH_SECTIONS)}.",
            show_default=False,
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write the report (Markdown) here, e.g. BENCHMARKS.md.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write every number as JSON here.")] = None,
    device: Device = "auto",
    quick: Annotated[bool, typer.Option(help="Toy sizes: every section in seconds (a smoke test).")] = False,
    gt: Annotated[
        Path | None, typer.Option(help="Annotation file with test-video durations for the localize section.")
    ] = None,
):
    """Throughput and memory of every stage, each next to a naive baseline measured in the same run."""
    from ..tools.bench import run_benchmarks

    run_benchmarks(out, json_out, device, quick, gt, list(sections or []), print_fn=console.print)
    if out:
        console.print(f"report written to {out}")
