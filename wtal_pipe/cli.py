"""The ``wtal`` command: one thin Typer function per stage that parses options, calls a library
function and prints what it returned.

Heavy imports (torch, cv2, av) happen inside the commands so ``wtal --help`` stays instant. Defaults
come from the config dataclasses; choices from the ``Literal`` types that own them. Every error ends
as one line (see :func:`main`).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated, get_args

import typer
from rich.console import Console
from rich.markup import escape

from . import __version__
from .bench import BenchSection
from .config import DeviceName, ExtractionConfig, FlowPreset, Precision
from .methods.names import MethodName

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Weakly-supervised temporal action localization: video -> features -> model -> mAP.",
)
import_app = typer.Typer(help="Bring other published layouts into a DATA_DIR or RUN_DIR.", no_args_is_help=True)
app.add_typer(import_app, name="import")
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

DEFAULTS = ExtractionConfig()
Data = Annotated[Path, typer.Option("--data", "-d", help="Dataset folder: features/, annotations.json, cache/, ...")]
LegacyOut = Annotated[Path | None, typer.Option("--out", "-o", hidden=True, help="Old spelling of --data.")]
Device = Annotated[DeviceName, typer.Option(help="Where to run: auto picks CUDA when a GPU is visible.")]
Method = Annotated[MethodName, typer.Option(help="The method (backtal is trained with background clicks).")]
Run = Annotated[Path, typer.Option("--run", "-r", help="Run folder written by wtal train or wtal import checkpoint.")]
Settings = Annotated[
    list[str] | None,
    typer.Option("--set", help="Any method setting, e.g. --set nms_threshold=0.5 (repeatable; JSON values)."),
]
Workers = Annotated[int, typer.Option(min=0, help="Flow worker processes (default: one per core).")]


def warn(message: str) -> None:
    err_console.print(f"[bold yellow]WARNING[/]: {escape(message)}")


def dataset_folder(data: Path, legacy: Path | None, old: str) -> Path:
    """``--data``, or its old spelling (accepted for one release, with a warning)."""
    if legacy is None:
        return data
    warn(f"{old} is now --data (the old spelling goes in the next release)")
    return legacy


def random_weights_warning(what: str) -> None:
    warn(
        f"no I3D weights given: {what} use RANDOM (seeded) weights. They exercise the pipeline but "
        "carry no semantics. Put rgb_imagenet.pt / flow_imagenet.pt in models/ and pass "
        "--rgb-weights rgb_imagenet --flow-weights flow_imagenet (see models/README.md)."
    )


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    )


def _version(value: bool) -> None:
    if value:
        console.print(f"wtal-pipe {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Weakly-supervised temporal action localization: video -> features -> model -> mAP."""


@app.command("extract")
def extract_cli(
    videos: Annotated[list[Path], typer.Argument(help="Video files and/or folders (searched recursively).")],
    data: Data = Path("data"),
    fps: Annotated[
        float, typer.Option(min=0.001, help="Target frame rate (frames picked by timestamp).")
    ] = DEFAULTS.decode.fps,
    short_side: Annotated[
        int, typer.Option(min=1, help="Resize so the short side has this many pixels.")
    ] = DEFAULTS.decode.short_side,
    crop: Annotated[int, typer.Option(min=1, help="Centre crop size.")] = DEFAULTS.decode.crop,
    flow: Annotated[
        FlowPreset,
        typer.Option(
            help="Flow: tvl1 (OpenCV, CPU workers) is the published convention; tvl1-torch is the same "
            "TV-L1 batched in PyTorch on the extraction device (a GPU when present)."
        ),
    ] = DEFAULTS.flow.preset,
    chunk: Annotated[int, typer.Option(min=1, help="Frames per feature row.")] = DEFAULTS.features.chunk,
    rgb_weights: Annotated[str | None, typer.Option(help="RGB I3D checkpoint: path or registry name.")] = None,
    flow_weights: Annotated[str | None, typer.Option(help="Flow I3D checkpoint: path or registry name.")] = None,
    device: Device = "auto",
    precision: Annotated[Precision, typer.Option(help="auto: bf16 where the hardware has it, else fp32.")] = "auto",
    batch_size: Annotated[
        int, typer.Option(min=1, help="16-frame chunks per I3D forward pass.")
    ] = DEFAULTS.features.batch_size,
    workers: Workers = 0,
    force: Annotated[bool, typer.Option(help="Recompute every stage, even when cached.")] = False,
    allow_partial: Annotated[
        bool,
        typer.Option(
            help="Keep the features of a video that decodes short of its declared length (coverage is recorded)."
        ),
    ] = False,
    scheduler: Annotated[
        str | None,
        typer.Option(
            help="Run on a Dask cluster: tcp://HOST:8786 (a running `dask scheduler`; DATA_DIR and the videos on "
            "a filesystem every worker shares) or local:N (N worker processes here). Needs wtal-pipe[dask]."
        ),
    ] = None,
    split_minutes: Annotated[
        float,
        typer.Option(min=0.01, help="With --scheduler: the flow of a longer video is split into ranges this long."),
    ] = 10.0,
    shard: Annotated[
        str | None,
        typer.Option(
            help="Extract only shard i/N of the videos (0 <= i < N; stable, by file name), e.g. one Slurm array task."
        ),
    ] = None,
    merge_report: Annotated[
        bool,
        typer.Option(
            "--merge-report", help="Extract nothing: list the videos that have no intact features in DATA_DIR yet."
        ),
    ] = False,
    legacy_out: LegacyOut = None,
):
    """Decode -> TV-L1 flow -> two-stream I3D: one (T, 2048) .npy + provenance .json per video."""
    from .config import DecodeConfig, FeatureConfig, FlowConfig
    from .errors import WtalError
    from .features.extract import ExtractOutcome, extract_all
    from .features.two_stream import I3DPair
    from .shards import Shard
    from .video.discover import VIDEO_EXTENSIONS, find_videos
    from .video.flow import default_workers

    data = dataset_folder(data, legacy_out, "--out")
    extraction = ExtractionConfig(
        DecodeConfig(fps, short_side, crop),
        FlowConfig(flow),
        FeatureConfig(chunk, rgb_weights, flow_weights, precision, batch_size),
    )
    found = find_videos(videos)
    if not found:
        raise WtalError(
            f"no videos found in {', '.join(map(str, videos))}",
            f"pass files or folders containing {', '.join(VIDEO_EXTENSIONS)}",
        )
    if merge_report:
        _merge_report(found, data, Shard.parse(shard).count if shard else None)
        return
    if scheduler:
        from .cluster import check_scheduler

        check_scheduler(scheduler)
    if shard:
        part = Shard.parse(shard)
        found = [video for video in found if part.holds(video)]
        console.print(f"shard {part}: {len(found)} video(s)")
    model = I3DPair.load(extraction.features, "cpu" if scheduler else device)  # on a cluster: checks the weights
    if model.is_random:
        random_weights_warning("features")
    workers = workers or default_workers()
    if scheduler:
        where = f"Dask {scheduler}, I3D on the workers' {device} device"
    elif extraction.flow.on_device:
        where = f"flow and I3D on {model.device} {model.precision}, fed from the decoder"
    else:
        where = f"{workers} worker(s), I3D on {model.device} {model.precision}"
    console.print(escape(f"extracting {len(found)} video(s) -> {data}/features  [flow {flow}, {where}]"))
    with _progress() as bars:
        task = bars.add_task("videos", total=len(found))
        stage = bars.add_task("", total=None)
        started, frames_done = time.perf_counter(), 0

        def on_stage(name: str, done: int, total: int) -> None:
            bars.update(stage, description=f"  {name}", completed=done, total=total or None)

        def on_result(outcome: ExtractOutcome, frames: int = 0) -> None:
            nonlocal frames_done
            bars.advance(task)
            frames_done += frames
            if scheduler:
                rate = frames_done / max(time.perf_counter() - started, 1e-9)
                bars.update(stage, description=f"  {frames_done} frames, {rate:.0f} frames/s")
            if outcome.status == "failed":
                err_console.print(f"[red]FAILED[/] {escape(str(outcome.error))}")
            else:
                console.print(f"{outcome.status:>6} {escape(outcome.video.name)} -> {outcome.features}")

        if scheduler:
            from .cluster import ClusterJob, connect, extract_on_cluster

            split = round(split_minutes * 60 * extraction.decode.fps)
            job = ClusterJob(str(data.resolve()), extraction.to_dict(), device, force, allow_partial, split)
            with connect(scheduler) as client:
                outcomes = extract_on_cluster(client, [video.resolve() for video in found], job, on_result)
        else:
            outcomes = extract_all(found, data, model, extraction, workers, force, on_stage, on_result, allow_partial)
    failed = [o for o in outcomes if o.status == "failed"]
    console.print(
        f"{len(outcomes) - len(failed)} ok ({sum(o.status == 'cached' for o in outcomes)} cached), {len(failed)} failed"
    )
    if failed:
        raise typer.Exit(1)


def _merge_report(videos: list[Path], data: Path, shards: int | None) -> None:
    """Which videos (of every shard) have no intact features yet; exit 1 when any is missing."""
    from .features.extract import has_features
    from .shards import shard_of

    missing = [video for video in videos if not has_features(video, data)]
    console.print(f"{len(videos) - len(missing)} of {len(videos)} video(s) have features in {data}")
    for video in missing:
        where = f"  (shard {shard_of(video, shards)}/{shards})" if shards else ""
        console.print(f"missing {escape(str(video))}{where}")
    if missing:
        raise typer.Exit(1)


@app.command("negatives")
def negatives_cli(
    data: Data = Path("data"),
    ratio: Annotated[
        float, typer.Option(help="Lowest share of frames (by log flow intensity) taken as static.")
    ] = 0.25,
    whole_chunk: Annotated[
        bool,
        typer.Option(help="A feature row is static only when all its frames are (official: when its first frame is)."),
    ] = False,
    subset: Annotated[str, typer.Option(help="Training subset: only training videos get negatives.")] = "train",
    from_features: Annotated[
        bool, typer.Option(help="No flow cache (imported features): rank rows by flow-feature norm, an approximation.")
    ] = False,
    legacy_data: Annotated[
        Path | None, typer.Argument(hidden=True, metavar="DATA_DIR", help="Old spelling of --data.")
    ] = None,
):
    """Build CMCS hard-negative pseudo videos <vid>_bg from the static stretches of training videos."""
    from .layout import DataLayout
    from .negatives import NegativesConfig, build_negatives

    data = dataset_folder(data, legacy_data, "the positional DATA_DIR")
    if from_features:
        warn(
            "--from-features: static rows are ranked by the norm of the flow half of each feature row, an "
            "approximation of the published per-frame TV-L1 ranking."
        )
    results = build_negatives(
        data, subset, NegativesConfig(ratio=ratio, whole_chunk=whole_chunk, from_features=from_features)
    )
    for r in results:
        console.print(
            f"{r.status:>8} {escape(r.vid)}"
            + (f" ({r.rows} rows)" if r.rows else "")
            + (f" - {escape(r.reason)}" if r.reason else "")
        )
    made = [r for r in results if r.status in ("written", "cached")]
    console.print(
        f"{len(made)} pseudo videos ({sum(r.rows for r in made)} rows) in {DataLayout(data).negatives_dir}, "
        f"{len(results) - len(made)} videos skipped"
    )


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
    from .train import TrainOptions, parse_settings, train

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
    checkpoint = train(
        options,
        on_log=lambda r: console.print(
            f"step {r['step']:>6}  loss {r['loss']:.4f}  "
            + "  ".join(f"{k} {v:.4f}" for k, v in r.items() if k not in ("step", "loss", "seconds"))
        ),
    )
    console.print(f"wrote {checkpoint}")


@app.command("test")
def test_cli(
    run: Run,
    data: Data = Path("data"),
    subset: Annotated[str, typer.Option(help="The subset to localize and evaluate.")] = "test",
    out: Annotated[Path, typer.Option("--out", "-o", help="Detections JSON (ActivityNet format).")] = Path("dets.json"),
    tiou: Annotated[
        str | None,
        typer.Option(
            help="tIoU thresholds: start:stop:step or a comma list (default: the range the method's paper reports)."
        ),
    ] = None,
    settings: Settings = None,
    plot_dir: Annotated[Path | None, typer.Option(help="Write one PNG per video (CAS, detections, GT) here.")] = None,
    device: Device = "cpu",
):
    """Localize every video of a subset from its features, write detections, print the mAP table."""
    from .cache import atomic_write_json
    from .data.dataset import load_annotations
    from .evaluate import evaluate, parse_tiou
    from .layout import DataLayout
    from .pipeline import localize_dataset
    from .run import load_run
    from .train import parse_settings

    model, meta = load_run(run, device, parse_settings(settings or []))
    thresholds = parse_tiou(tiou or model.config.eval_tiou)
    scores = out.with_suffix(".cas.npz")
    detections = localize_dataset(model, meta, data, subset, scores_out=scores)
    atomic_write_json(out, detections)
    if plot_dir:
        from .plot import plot_saved_scores

        count = plot_saved_scores(scores, detections, model.config, meta.classes, data, subset, plot_dir)
        console.print(f"wrote {count} plots to {plot_dir}")
    n = sum(len(d) for d in detections["results"].values())
    console.print(f"wrote {out} ({n} detections in {len(detections['results'])} videos; raw scores in {scores})")
    result = evaluate(load_annotations(DataLayout(data).annotations), detections, subset, thresholds, out, meta.classes)
    console.print(f"{meta.method} on {subset} ({len(result.classes)} classes):\n{escape(result.table())}")


@app.command("evaluate")
def evaluate_cli(
    detections: Annotated[Path, typer.Argument(help="ActivityNet-format detections JSON.")],
    gt: Annotated[Path, typer.Option(help="Ground truth (ActivityNet style; string segments fine).")],
    subset: Annotated[str, typer.Option(help="The ground truth subset to evaluate on.")] = "test",
    tiou: Annotated[str, typer.Option(help="THUMOS14 0.1:0.7:0.1; ActivityNet 0.5:0.95:0.05.")] = "0.1:0.7:0.1",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON with per-class AP.")] = False,
):
    """mAP per tIoU threshold and on average, exactly the ActivityNet protocol."""
    import json

    from .evaluate import evaluate_files, parse_tiou

    result = evaluate_files(detections, gt, subset, parse_tiou(tiou))
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        console.print(escape(result.table()))


@app.command("localize")
def localize_cli(
    clips: Annotated[list[Path], typer.Argument(help="Video files and/or folders.")],
    run: Run,
    out: Annotated[Path, typer.Option("--out", "-o", help="Detections JSON (ActivityNet format).")] = Path("dets.json"),
    plot: Annotated[
        Path | None, typer.Option(help="PNG of the CAS and detections (one per clip: name_<clip>.png when several).")
    ] = None,
    gt: Annotated[Path | None, typer.Option(help="Annotations to draw as ground truth in the plot.")] = None,
    data: Annotated[
        Path | None, typer.Option("--data", "-d", help="Extraction cache (default: RUN_DIR/localize).")
    ] = None,
    rgb_weights: Annotated[str | None, typer.Option(help="Override the run's RGB I3D checkpoint.")] = None,
    flow_weights: Annotated[str | None, typer.Option(help="Override the run's flow I3D checkpoint.")] = None,
    flow: Annotated[FlowPreset | None, typer.Option(help="Override the run's flow preset.")] = None,
    workers: Workers = 0,
    device: Device = "auto",
):
    """Raw clips -> decode -> flow -> I3D -> trained model -> detections (seconds from the clip's start)."""
    from .cache import atomic_write_json
    from .data.dataset import load_annotations
    from .errors import WtalError
    from .localize import detections_json
    from .pipeline import clip_extraction, localize_clips
    from .run import Run as RunDir
    from .run import load_run
    from .video.discover import find_videos
    from .video.flow import default_workers

    model, meta = load_run(run, "cpu")
    found = find_videos(clips)
    if not found:
        raise WtalError(f"no videos found in {', '.join(map(str, clips))}", "pass video files or folders")
    extraction = clip_extraction(meta, rgb_weights=rgb_weights, flow_weights=flow_weights, preset=flow)
    if extraction.features.random_weights:
        random_weights_warning("clip features")
    results = localize_clips(
        found, model, meta, data or RunDir(run).localize_cache, extraction, workers or default_workers(), device
    )
    per_video = {r.clip.stem: r.detections for r in results if r.error is None}
    atomic_write_json(out, detections_json(per_video, meta.classes, {"method": meta.method, "run": str(run)}))
    annotations = load_annotations(gt) if gt else {}
    index = {name: i for i, name in enumerate(meta.classes)}
    for r in results:
        if r.error or r.scores is None or r.timing is None:
            err_console.print(f"[red]FAILED[/] {escape(str(r.error))}")
            continue
        console.print(f"[bold]{escape(r.clip.name)}[/] ({r.timing.duration:.1f} s): {len(r.detections)} detections")
        for c, score, start, end in sorted(r.detections, key=lambda d: -d[1])[:10]:
            console.print(f"  {escape(meta.classes[c]):<28} {start:8.2f} - {end:8.2f} s   score {score:6.3f}")
        if plot:
            from .plot import plot_video

            target = plot if len(results) == 1 else plot.with_name(f"{plot.stem}_{r.clip.stem}{plot.suffix}")
            truth = [
                (a["segment"][0], a["segment"][1], index[a["label"]])
                for a in annotations.get(r.clip.stem, {}).get("annotations", [])
                if a["label"] in index
            ]
            plot_video(target, r.clip.name, r.scores, r.detections, meta.classes, model.config, r.timing, truth)
            console.print(f"  plot: {target}")
    console.print(f"wrote {out}")
    if any(r.error for r in results):
        raise typer.Exit(1)


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
    from .demo import run_demo

    run_demo(out, n_videos=videos, seconds=seconds, iterations=iters, seed=seed, print_fn=console.print, warn_fn=warn)


@app.command("make-sample")
def make_sample_cli(
    out: Annotated[Path, typer.Argument(help="Where to write the clip.")] = Path("sample.mp4"),
    seconds: Annotated[float, typer.Option(min=1.0, help="Length of the clip.")] = 8.0,
    fps: Annotated[float, typer.Option(min=1.0, help="Its frame rate.")] = 30.0,
):
    """Write a small synthetic clip (textured scene, two planted moving shapes) to try the pipeline on."""
    from .video.synthetic import make_sample

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
    from .errors import WtalError
    from .web.app import Workspace, serve

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
            help=f"Sections to measure (default: all): {', '.join(get_args(BenchSection))}.", show_default=False
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
    from .bench import run_benchmarks

    run_benchmarks(out, json_out, device, quick, gt, list(sections or []), print_fn=console.print)
    if out:
        console.print(f"report written to {out}")


@import_app.command("bas-thumos")
def import_bas_thumos_cli(
    source: Annotated[Path, typer.Argument(help="Folder with features/{train,test}/{rgb,flow}/ and gt.json.")],
    data: Data = Path("data"),
    durations: Annotated[Path | None, typer.Option(help="Annotation file with per-video durations.")] = None,
    legacy_out: LegacyOut = None,
):
    """Import the BaS-Net/UM THUMOS14 I3D feature release (rows become concat(rgb, flow))."""
    from .data.importers import import_bas_thumos

    data = dataset_folder(data, legacy_out, "--out")
    count = import_bas_thumos(source, data, durations)
    console.print(f"imported {count} videos into {data}")


@import_app.command("clicks")
def import_clicks_cli(
    csv_file: Annotated[Path, typer.Argument(help="BackTAL click file (URLID,URL,TagID,Tag,Start,End,Time,State).")],
    data: Data = Path("data"),
):
    """Write DATA_DIR/clicks.json from a background-click CSV."""
    from .data.importers import import_clicks

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
    from .data.importers import import_checkpoint

    checkpoint = import_checkpoint(files, method, data, out)
    console.print(f"wrote {checkpoint} ({method}, official weights from {', '.join(str(f) for f in files)})")


def main() -> None:
    """Console entry point. Every error ends as one line on stderr (``WTAL_DEBUG=1`` re-raises it):
    exit 2 for bad input, options or a full disk, 3 for an unexpected internal error, 130 on Ctrl-C;
    per-video failures are reported by the commands themselves (exit 1)."""
    import signal
    import warnings

    from .errors import WtalError

    def show_warning(message, category, *args, **kwargs):
        warn(str(message))

    warnings.showwarning = show_warning
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))  # unwind: temporaries are removed

    def fail(message: str, code: int) -> None:
        err_console.print(f"[bold red]error[/]: {escape(message)}  [dim](WTAL_DEBUG=1 for details)[/]")
        sys.exit(code)

    debug = bool(os.environ.get("WTAL_DEBUG"))
    try:
        code = app(standalone_mode=False, prog_name="wtal")
    except typer.Abort:
        err_console.print("interrupted")
        sys.exit(130)
    except WtalError as exc:
        if debug:
            raise
        fail(exc.one_line(), 2)
    except OSError as exc:
        if debug:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        fail(f"{where}{exc.strerror or exc} (free disk space, or check the path and its permissions)", 2)
    except Exception as exc:
        if debug:
            raise
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):  # the command line parser's usage errors
            context = getattr(exc, "ctx", None)
            if context is not None and not exc.format_message():  # a command group given no command: its help
                console.print(context.get_help())
                sys.exit(2)
            command = getattr(context, "command_path", "wtal") or "wtal"
            fail(f"{exc.format_message()} (see {command} --help)", 2)
        fail(f"unexpected {exc.__class__.__name__}: {exc} (please report it)", 3)  # a bug: still one line
    sys.exit(code if isinstance(code, int) else 0)
