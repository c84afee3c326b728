"""``wtal demo``, ``wtal make-sample``, ``wtal annotate`` and ``wtal bench``: tools around the pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..tools.bench_sections import BENCH_SECTIONS
from .app import Device, app, console, warn


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
    out: Annotated[Path, typer.Argument(help="Where to write the clip.")] = Path("sample.mp4"),
    seconds: Annotated[float, typer.Option(min=1.0, help="Length of the clip.")] = 8.0,
    fps: Annotated[float, typer.Option(min=1.0, help="Its frame rate.")] = 30.0,
):
    """Write a small synthetic clip (textured scene, two planted moving shapes) to try the pipeline on."""
    from ..tools.synthetic import make_sample

    path, actions = make_sample(out, seconds=seconds, fps=fps)
    console.print(
        f"wrote {path} ({seconds:g} s at {fps:g} fps); planted: "
        + ", ".join(f"{a.style.name} {a.start:g}-{a.end:g} s" for a in actions)
    )


@app.command("annotate")
def annotate_cli(
    data: Annotated[Path, typer.Argument(help="The dataset folder (annotations.json; clicks are saved here).")],
    videos: Annotated[Path, typer.Option(help="Folder with the videos, named <video_id>.<ext>.")],
    annotator: Annotated[
        str | None, typer.Option(help="Save to clicks.<NAME>.json (one file per annotator) instead of clicks.json.")
    ] = None,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port on 127.0.0.1 (0: any free one).")] = 8765,
    run: Annotated[
        Path | None, typer.Option(help="A trained run: show its per-class scores and detections under the video.")
    ] = None,
):
    """A local web page to click background moments on the videos and review detections."""
    from ..errors import WtalError
    from ..web.app import Workspace, serve

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
