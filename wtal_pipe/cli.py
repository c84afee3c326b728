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
from rich.markup import escape

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Weakly-supervised temporal action localization: video -> features -> model -> mAP.")
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

DataDir = Annotated[Path, typer.Option("--out", "-o", help="Dataset folder (features/, cache/ go here).")]
Device = Annotated[str, typer.Option(help="auto | cpu | cuda")]


def warn(message: str) -> None:
    err_console.print(f"[bold yellow]WARNING[/]: {escape(message)}")


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
    force: Annotated[bool, typer.Option(help="Recompute every stage, even when cached.")] = False,
    allow_partial: Annotated[bool, typer.Option(
        help="Keep the features of a video that decodes short of its declared length (coverage is recorded).")] = False,
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
                err_console.print(f"[red]FAILED[/] {escape(str(outcome.error))}")
            else:
                console.print(f"{outcome.status:>6} {outcome.video.name} -> {outcome.features}")

        outcomes = extract_all(found, out, model, decode_config, flow_config, feature_config,
                               workers or default_workers(), force, on_stage, on_result, allow_partial)
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
    stage: Annotated[str, typer.Argument(help="decode | flow | i3d | evaluate | all")] = "all",
    device: Device = "auto",
    seconds: Annotated[float, typer.Option(help="Length of the synthetic clip used.")] = 20.0,
    out: Annotated[Optional[Path], typer.Option(help="Also write the results as JSON here.")] = None,
):
    """Measure decode frames/s, flow pairs/s per worker count, I3D chunks/s (fp32 vs bf16), evaluator time."""
    from .bench import run_benchmarks

    run_benchmarks(stage, device=device, seconds=seconds, out=out, print_fn=console.print)


@app.command("negatives")
def negatives_cli(
    data: Annotated[Path, typer.Argument(help="Dataset folder (features/, cache/ from wtal extract).")],
    ratio: Annotated[float, typer.Option(help="Lowest share of frames (by log flow intensity) taken as static.")] = 0.25,
    whole_chunk: Annotated[bool, typer.Option(
        help="A feature row is static only when all its frames are (official: when its first frame is).")] = False,
    subset: Annotated[str, typer.Option(help="Training subset: only training videos get negatives.")] = "train",
    from_features: Annotated[bool, typer.Option(
        help="No flow cache (imported features): rank rows by flow-feature norm, an approximation.")] = False,
):
    """Build CMCS hard-negative pseudo videos <vid>_bg from the static stretches of training videos."""
    from .negatives import NegativesConfig, build_negatives

    if from_features:
        warn("--from-features: static rows are ranked by the norm of the flow half of each feature row, an "
             "approximation of the published per-frame TV-L1 ranking.")
    results = build_negatives(data, subset, NegativesConfig(ratio=ratio, whole_chunk=whole_chunk,
                                                            from_features=from_features))
    for r in results:
        console.print(f"{r.status:>8} {r.vid}" + (f" ({r.rows} rows)" if r.rows else "")
                      + (f" - {r.reason}" if r.reason else ""))
    made = [r for r in results if r.status in ("written", "cached")]
    console.print(f"{len(made)} pseudo videos ({sum(r.rows for r in made)} rows) in {data / 'negatives'}, "
                  f"{len(results) - len(made)} videos skipped")


@app.command("localize")
def localize_cli(
    clips: Annotated[list[Path], typer.Argument(help="Video files and/or folders.")],
    run: Annotated[Path, typer.Option("--run", "-r", help="Run folder written by wtal train.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Detections JSON (ActivityNet format).")] = Path("dets.json"),
    plot: Annotated[Optional[Path], typer.Option(help="PNG of the CAS and detections (one per clip: name_<clip>.png "
                                                       "when several).")] = None,
    gt: Annotated[Optional[Path], typer.Option(help="Annotations to draw as ground truth in the plot.")] = None,
    data: Annotated[Optional[Path], typer.Option(help="Extraction cache (default: RUN_DIR/localize).")] = None,
    rgb_weights: Annotated[Optional[str], typer.Option(help="Override the run's RGB I3D checkpoint.")] = None,
    flow_weights: Annotated[Optional[str], typer.Option(help="Override the run's flow I3D checkpoint.")] = None,
    flow: Annotated[Optional[str], typer.Option(help="Override the run's flow preset.")] = None,
    workers: Annotated[int, typer.Option(help="Flow worker processes (default: one per core).")] = 0,
    device: Device = "auto",
):
    """Raw clips -> decode -> flow -> I3D -> trained model -> detections (seconds from the clip's start)."""
    from .cache import atomic_write_json
    from .config import DecodeConfig, FeatureConfig, FlowConfig
    from .data.dataset import load_annotations
    from .features.extract import VIDEO_EXTENSIONS, find_videos
    from .localize import detections_json
    from .pipeline import localize_clips
    from .train import load_run
    from .video.flow import default_workers

    model, meta = load_run(run, "cpu")
    found = find_videos(clips, VIDEO_EXTENSIONS)
    if not found:
        raise _user_error(f"no videos found in {', '.join(map(str, clips))}", "pass video files or folders")
    settings = meta.get("extraction") or {}
    weights = settings.get("weights", {})
    trained_weights = {s: (None if str(w).startswith("random") else w) for s, w in weights.items()}
    feature_config = FeatureConfig(chunk=settings.get("chunk", 16),
                                   rgb_weights=rgb_weights or trained_weights.get("rgb"),
                                   flow_weights=flow_weights or trained_weights.get("flow"))
    decode_config = DecodeConfig(fps=settings.get("fps", 25.0), short_side=settings.get("short_side", 256),
                                 crop=settings.get("crop", 224))
    flow_config = FlowConfig(flow or settings.get("flow", "tvl1"))
    if feature_config.rgb_weights is None or feature_config.flow_weights is None:
        random_weights_warning("clip features")
    results = localize_clips(found, model, meta, data or run / "localize", decode_config, flow_config,
                             feature_config, workers or default_workers(), device)
    per_video = {r.clip.stem: r.detections for r in results if r.error is None}
    atomic_write_json(out, detections_json(per_video, meta["classes"], {"method": meta["method"], "run": str(run)}))
    annotations = load_annotations(gt) if gt else {}
    for r in results:
        if r.error:
            err_console.print(f"[red]FAILED[/] {escape(str(r.error))}")
            continue
        console.print(f"[bold]{escape(r.clip.name)}[/] ({r.timing.duration:.1f} s): {len(r.detections)} detections")
        for c, score, start, end in sorted(r.detections, key=lambda d: -d[1])[:10]:
            console.print(f"  {meta['classes'][c]:<28} {start:8.2f} - {end:8.2f} s   score {score:6.3f}")
        if plot:
            from .plot import plot_video

            target = plot if len(results) == 1 else plot.with_name(f"{plot.stem}_{r.clip.stem}{plot.suffix}")
            index = {name: i for i, name in enumerate(meta["classes"])}
            truth = [(a["segment"][0], a["segment"][1], index[a["label"]])
                     for a in annotations.get(r.clip.stem, {}).get("annotations", []) if a["label"] in index]
            plot_video(target, r.clip.name, r.scores, r.detections, meta["classes"], model.config, r.timing, truth)
            console.print(f"  plot: {target}")
    console.print(f"wrote {out}")
    if any(r.error for r in results):
        raise typer.Exit(1)


@app.command("demo")
def demo_cli(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for every artifact of the demo.")] = Path("wtal_demo"),
    videos: Annotated[int, typer.Option(help="Synthetic videos to generate (3 of 4 for training).")] = 24,
    seconds: Annotated[float, typer.Option(help="Length of each video.")] = 14.0,
    iters: Annotated[int, typer.Option(help="Training steps.")] = 400,
    seed: int = 0,
):
    """The whole pipeline on a generated labelled video set: extract -> negatives -> train -> test -> localize."""
    from .demo import run_demo

    run_demo(out, n_videos=videos, seconds=seconds, iterations=iters, seed=seed, print_fn=console.print,
             warn_fn=warn)


Method = Annotated[str, typer.Option(help="basnet | um | cmcs | backtal (backtal needs background clicks).")]
Data = Annotated[Path, typer.Option("--data", "-d", help="Dataset folder: features/, annotations.json, ...")]


@app.command("train")
def train_cli(
    method: Method,
    data: Data = Path("data"),
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder for checkpoint, config and log.")] = Path("run"),
    seed: int = 0,
    iters: Annotated[Optional[int], typer.Option(min=1, help="Optimizer steps (default: the method's published value).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Videos per forward pass.")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate (published: 1e-4; 1e-3 for short CPU runs).")] = None,
    num_segments: Annotated[Optional[int], typer.Option(min=1, help="Rows sampled per training video.")] = None,
    subset: Annotated[str, typer.Option(help="Training subset name (ActivityNet: training).")] = "train",
    negatives: Annotated[Optional[bool], typer.Option(
        "--negatives/--no-negatives", help="Train with CMCS hard negatives (default: on for cmcs when present).")] = None,
    simulate_clicks: Annotated[bool, typer.Option(help="BackTAL: one simulated click per background run of the GT.")] = False,
    settings: Annotated[Optional[list[str]], typer.Option(
        "--set", help="Any method setting, e.g. --set accumulate=4 --set class_threshold=0.2.")] = None,
    device: Device = "auto",
):
    """Train a method on DATA_DIR's features; writes RUN_DIR/checkpoint.pt, config.json, train_log.jsonl."""
    from .train import TrainOptions, train

    from .train import parse_settings

    flags = {"iterations": iters, "batch_size": batch_size, "lr": lr, "num_segments": num_segments}
    overrides = {k: v for k, v in flags.items() if v is not None} | parse_settings(settings or [])
    options = TrainOptions(method, data, out, seed=seed, subset=subset, device=device, negatives=negatives,
                           simulate_clicks=simulate_clicks, overrides=overrides)
    checkpoint = train(options, on_log=lambda r: console.print(
        f"step {r['step']:>6}  loss {r['loss']:.4f}  " + "  ".join(
            f"{k} {v:.4f}" for k, v in r.items() if k not in ("step", "loss", "seconds"))))
    console.print(f"wrote {checkpoint}")


@app.command("test")
def test_cli(
    run: Annotated[Path, typer.Option("--run", "-r", help="Run folder written by wtal train.")],
    data: Data = Path("data"),
    subset: str = "test",
    out: Annotated[Path, typer.Option("--out", "-o", help="Detections JSON (ActivityNet format).")] = Path("dets.json"),
    tiou: Annotated[Optional[str], typer.Option(
        help="tIoU thresholds: start:stop:step or a comma list (default: the range the method's paper reports).")] = None,
    settings: Annotated[Optional[list[str]], typer.Option(
        "--set", help="Re-tune localization without retraining, e.g. --set nms_threshold=0.5.")] = None,
    plot_dir: Annotated[Optional[Path], typer.Option(help="Write one PNG per video (CAS, detections, GT) here.")] = None,
    device: Device = "cpu",
):
    """Localize every video of a subset from its features, write detections, print the mAP table."""
    from .cache import atomic_write_json
    from .data.dataset import load_annotations
    from .evaluate import evaluate, parse_tiou
    from .layout import DataLayout
    from .pipeline import localize_dataset
    from .train import load_run, parse_settings

    model, meta = load_run(run, device, parse_settings(settings or []))
    thresholds = parse_tiou(tiou or model.config.eval_tiou)
    detections = localize_dataset(model, meta, data, subset, scores_out=out.with_suffix(".cas.npz"))
    atomic_write_json(out, detections)
    if plot_dir:
        from .plot import plot_saved_scores

        count = plot_saved_scores(out.with_suffix(".cas.npz"), detections, model.config, meta, data, subset, plot_dir)
        console.print(f"wrote {count} plots to {plot_dir}")
    n = sum(len(d) for d in detections["results"].values())
    console.print(f"wrote {out} ({n} detections in {len(detections['results'])} videos; raw scores in "
                  f"{out.with_suffix('.cas.npz')})")
    result = evaluate(load_annotations(DataLayout(data).annotations), detections, subset, thresholds, out,
                      meta["classes"])
    console.print(f"{meta['method']} on {subset} ({len(result.classes)} classes):\n{result.table()}")


@app.command("evaluate")
def evaluate_cli(
    detections: Annotated[Path, typer.Argument(help="ActivityNet-format detections JSON.")],
    gt: Annotated[Path, typer.Option(help="Ground truth (ActivityNet style; string segments fine).")],
    subset: str = "test",
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
        console.print(result.table())


import_app = typer.Typer(help="Bring other published layouts into a DATA_DIR.", no_args_is_help=True)
app.add_typer(import_app, name="import")


@import_app.command("bas-thumos")
def import_bas_thumos_cli(
    source: Annotated[Path, typer.Argument(help="Folder with features/{train,test}/{rgb,flow}/ and gt.json.")],
    out: DataDir = Path("data"),
    durations: Annotated[Optional[Path], typer.Option(help="Annotation file with per-video durations.")] = None,
):
    """Import the BaS-Net/UM THUMOS14 I3D feature release (rows become concat(rgb, flow))."""
    from .data.importers import import_bas_thumos

    count = import_bas_thumos(source, out, durations)
    console.print(f"imported {count} videos into {out}")


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
    files: Annotated[list[Path], typer.Argument(help="State dict(s) saved by the official code (CMCS late fusion: RGB, "
                                                     "then flow).")],
    method: Method,
    data: Data = Path("data"),
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder to write.")] = Path("run"),
):
    """Import the authors' trained weights as a RUN_DIR for wtal test / wtal localize."""
    from .data.importers import import_checkpoint

    checkpoint = import_checkpoint(files, method, data, out)
    console.print(f"wrote {checkpoint} ({method}, official weights from {', '.join(str(f) for f in files)})")


def _user_error(what: str, fix: str = ""):
    from .errors import WtalError

    return WtalError(what, fix)


def main() -> None:
    """Console entry point. Every error ends as one line on stderr (``WTAL_DEBUG=1`` re-raises it):
    exit 2 for bad input, options or a full disk, 3 for an unexpected internal error, 130 on Ctrl-C;
    per-video failures are reported by the commands themselves (exit 1)."""
    import signal
    import warnings

    from .data.dataset import DataWarning
    from .errors import WtalError

    def show_warning(message, category, *args, **kwargs):
        if issubclass(category, DataWarning):
            warn(str(message))
        else:
            err_console.print(f"[yellow]warning[/]: {escape(str(message))}")

    warnings.showwarning = show_warning
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))  # unwind: temporaries are removed

    def fail(message: str, code: int) -> None:
        err_console.print(f"[bold red]error[/]: {escape(message)}  [dim](WTAL_DEBUG=1 for details)[/]")
        sys.exit(code)

    debug = bool(os.environ.get("WTAL_DEBUG"))
    try:
        code = app(standalone_mode=False)
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
