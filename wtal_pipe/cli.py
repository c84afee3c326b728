"""The ``wtal`` command: one thin Typer function per stage over plain library functions.

Heavy imports (torch, cv2, av) happen inside the commands so ``wtal --help`` stays instant. Known
user errors (:class:`WtalError`) become one red line and exit code 2; set ``WTAL_DEBUG=1`` for the
traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Weakly-supervised temporal action localization: video -> features -> model -> mAP.")
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

DataDir = Annotated[Path, typer.Option("--out", "-o", help="Dataset folder (features/, cache/ go here).")]
Device = Annotated[str, typer.Option(help="auto | cpu | cuda")]


def warn(message: str) -> None:
    err_console.print(f"[bold yellow]WARNING[/]: {message}")


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err_console, transient=True, disable=not err_console.is_terminal)


def random_weights_warning(what: str) -> None:
    warn(f"no I3D weights given: {what} use RANDOM (seeded) weights. They exercise the pipeline but "
         "carry no semantics. Put rgb_imagenet.pt / flow_imagenet.pt in models/ and pass "
         "--rgb-weights rgb_imagenet --flow-weights flow_imagenet (see models/README.md).")


@app.command("extract")
def extract_cli(
    videos: Annotated[list[Path], typer.Argument(help="Video files and/or folders (searched recursively).")],
    out: DataDir = Path("data"),
    fps: Annotated[float, typer.Option(help="Target frame rate (frames picked by timestamp).")] = 25.0,
    short_side: Annotated[int, typer.Option(help="Resize so the short side has this many pixels.")] = 256,
    crop: Annotated[int, typer.Option(help="Centre crop size.")] = 224,
    flow: Annotated[str, typer.Option(help="Flow preset: tvl1 (published) | tvl1-fast | dis.")] = "tvl1",
    chunk: Annotated[int, typer.Option(help="Frames per feature row.")] = 16,
    rgb_weights: Annotated[Optional[str], typer.Option(help="RGB I3D checkpoint: path or registry name.")] = None,
    flow_weights: Annotated[Optional[str], typer.Option(help="Flow I3D checkpoint: path or registry name.")] = None,
    device: Device = "auto",
    precision: Annotated[str, typer.Option(help="fp32 | bf16 | auto (bf16 where the hardware has it).")] = "auto",
    batch_size: Annotated[int, typer.Option(help="16-frame chunks per I3D forward pass.")] = 8,
    workers: Annotated[int, typer.Option(help="Flow worker processes (default: one per core).")] = 0,
    force: Annotated[bool, typer.Option(help="Recompute features even if cached.")] = False,
):
    """Decode -> TV-L1 flow -> two-stream I3D: one (T, 2048) .npy + provenance .json per video."""
    from .config import DecodeConfig, FeatureConfig, FlowConfig
    from .features.extract import VIDEO_EXTENSIONS, I3DPair, extract_all, find_videos
    from .video.flow import default_workers

    decode_config = DecodeConfig(fps=fps, short_side=short_side, crop=crop)
    flow_config = FlowConfig(preset=flow)
    feature_config = FeatureConfig(chunk=chunk, rgb_weights=rgb_weights, flow_weights=flow_weights,
                                   precision=precision, batch_size=batch_size)
    found = find_videos(videos, VIDEO_EXTENSIONS)
    if not found:
        raise _user_error(f"no videos found in {', '.join(map(str, videos))}",
                          f"pass files or folders containing {', '.join(VIDEO_EXTENSIONS)}")
    model = I3DPair.load(feature_config, device)
    if model.is_random:
        random_weights_warning("features")
    console.print(f"extracting {len(found)} video(s) -> {out}/features  [flow {flow}, "
                  f"{workers or default_workers()} worker(s), I3D on {model.device} {model.precision}]")
    with _progress() as bars:
        task = bars.add_task("videos", total=len(found))
        stage = bars.add_task("", total=None)

        def on_stage(name: str, done: int, total: int) -> None:
            bars.update(stage, description=f"  {name}", completed=done, total=total or None)

        def on_result(outcome) -> None:
            bars.advance(task)
            if outcome.status == "failed":
                err_console.print(f"[red]FAILED[/] {outcome.error}")
            else:
                console.print(f"{outcome.status:>6} {outcome.video.name} -> {outcome.features}")

        outcomes = extract_all(found, out, model, decode_config, flow_config, feature_config,
                               workers or default_workers(), force, on_stage, on_result)
    failed = [o for o in outcomes if o.status == "failed"]
    console.print(f"{len(outcomes) - len(failed)} ok ({sum(o.status == 'cached' for o in outcomes)} cached), "
                  f"{len(failed)} failed")
    if failed:
        raise typer.Exit(1)


@app.command("make-sample")
def make_sample_cli(
    out: Annotated[Path, typer.Argument(help="Where to write the clip.")] = Path("sample.mp4"),
    seconds: float = 8.0,
    fps: float = 30.0,
):
    """Write a small synthetic clip (textured scene, two planted moving shapes) to try the pipeline on."""
    from .video.synthetic import make_sample

    path, actions = make_sample(out, seconds=seconds, fps=fps)
    console.print(f"wrote {path} ({seconds:g} s at {fps:g} fps); planted: "
                  + ", ".join(f"{a.style.name} {a.start:g}-{a.end:g} s" for a in actions))


@app.command("bench")
def bench_cli(
    stage: Annotated[str, typer.Argument(help="decode | flow | i3d | all")] = "all",
    device: Device = "auto",
    seconds: Annotated[float, typer.Option(help="Length of the synthetic clip used.")] = 20.0,
    out: Annotated[Optional[Path], typer.Option(help="Also write the results as JSON here.")] = None,
):
    """Measure decode frames/s, flow pairs/s per worker count and I3D chunks/s (fp32 vs fast path)."""
    from .bench import run_benchmarks

    run_benchmarks(stage, device=device, seconds=seconds, out=out, print_fn=console.print)


def _user_error(what: str, fix: str = ""):
    from .errors import WtalError

    return WtalError(what, fix)


def main() -> None:
    """Console entry point: run the app, turning known errors into one line and exit code 2."""
    from .errors import WtalError

    try:
        app()
    except WtalError as exc:
        if os.environ.get("WTAL_DEBUG"):
            raise
        err_console.print(f"[bold red]error[/]: {exc.one_line()}  [dim](WTAL_DEBUG=1 for details)[/]")
        sys.exit(2)
