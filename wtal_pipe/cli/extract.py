"""``wtal extract`` (videos -> features) and ``wtal negatives`` (CMCS hard negatives)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.markup import escape

from ..features.config import ExtractionConfig, Precision
from ..video.flow_engines import flow_presets
from .app import (
    Data,
    Device,
    Workers,
    app,
    console,
    err_console,
    features_app,
    progress_bars,
    random_weights_warning,
    warn,
)

if TYPE_CHECKING:
    from ..features.extract import ExtractJob, ExtractOutcome, OnResult
    from ..features.two_stream import I3DPair, ProgressFn

DEFAULTS = ExtractionConfig()
Fps = Annotated[
    float | None, typer.Option(min=0.001, help="Target frame rate, frames picked by timestamp (default 25).")
]
ShortSide = Annotated[int | None, typer.Option(min=1, help="Resize so the short side has this many pixels (256).")]
Crop = Annotated[int | None, typer.Option(min=1, help="Centre crop size (224).")]
Resize = Annotated[
    str | None, typer.Option(help="Resize to exactly WxH instead (e.g. 340x256); no crop then unless --crop.")
]
Stride = Annotated[
    int | None,
    typer.Option(min=1, help="Frames from one row's start to the next (default: the chunk; less: rows overlap)."),
]
CropsOption = Annotated[
    Literal["center", "ten"] | None,
    typer.Option(
        help="Frames larger than 224: their centre, or ten crops (corners, centre, mirrored) averaged (10x I3D)."
    ),
]
Rows = Annotated[
    int | None, typer.Option(min=1, help="Resample each video to this many rows (fixed-length releases, e.g. 100).")
]
RecipeOption = Annotated[
    str | None,
    typer.Option(help="Start from the settings a public release was made with (--list-recipes); flags override them."),
]
ListRecipes = Annotated[
    bool, typer.Option("--list-recipes", help="Print every recipe, each value with its source, and exit.")
]
FlowPresetOption = Annotated[
    str | None,
    typer.Option(
        help=f"Flow preset, one of {', '.join(flow_presets())}: tvl1 (OpenCV, CPU workers) is the published "
        "convention; tvl1-torch is the same TV-L1 batched in PyTorch on the extraction device (a GPU when present).",
    ),
]
FlowBound = Annotated[
    float | None, typer.Option(min=0.001, help="Clip flow to +-this many pixels, then scale to [-1, 1] (20).")
]
Chunk = Annotated[int | None, typer.Option(min=1, help="Frames per feature row (16).")]
RgbWeights = Annotated[str | None, typer.Option(help="RGB I3D checkpoint: path or registry name.")]
FlowWeights = Annotated[str | None, typer.Option(help="Flow I3D checkpoint: path or registry name.")]
PrecisionOption = Annotated[
    Precision,
    typer.Option(
        help="auto = fp32 (the same features on every machine); bf16 is faster on some hardware, features move ~1e-2."
    ),
]
BatchSize = Annotated[int, typer.Option(min=1, help="16-frame chunks per I3D forward pass.")]
Force = Annotated[bool, typer.Option(help="Recompute every stage, even when cached.")]
AllowPartial = Annotated[
    bool,
    typer.Option(help="Keep the features of a video that decodes short of its declared length (coverage recorded)."),
]
Scheduler = Annotated[
    str | None,
    typer.Option(
        help="Run on a Dask cluster: tcp://HOST:8786 (a running `dask scheduler`; DATA_DIR and the videos on a "
        "filesystem every worker shares) or local:N (N worker processes here). Needs wtal-pipe[dask]."
    ),
]
SplitMinutes = Annotated[
    float, typer.Option(min=0.01, help="With --scheduler: the flow of a longer video is split into ranges this long.")
]
ShardOption = Annotated[
    str | None,
    typer.Option(help="Extract only shard i/N of the videos (0 <= i < N; stable, by file name), e.g. a Slurm task."),
]
MergeReport = Annotated[
    bool, typer.Option("--merge-report", help="Extract nothing: list the videos without intact features in DATA_DIR.")
]


@app.command("extract")
def extract_cli(
    videos: Annotated[
        list[Path] | None, typer.Argument(help="Video files and/or folders (searched recursively).")
    ] = None,
    data: Data = Path("data"),
    recipe: RecipeOption = None,
    list_recipes: ListRecipes = False,
    fps: Fps = None,
    short_side: ShortSide = None,
    crop: Crop = None,
    resize: Resize = None,
    flow: FlowPresetOption = None,
    flow_bound: FlowBound = None,
    chunk: Chunk = None,
    stride: Stride = None,
    crops: CropsOption = None,
    rows: Rows = None,
    rgb_weights: RgbWeights = None,
    flow_weights: FlowWeights = None,
    device: Device = "auto",
    precision: PrecisionOption = "auto",
    batch_size: BatchSize = DEFAULTS.features.batch_size,
    workers: Workers = 0,
    force: Force = False,
    allow_partial: AllowPartial = False,
    scheduler: Scheduler = None,
    split_minutes: SplitMinutes = 10.0,
    shard: ShardOption = None,
    merge_report: MergeReport = False,
):
    """Decode -> optical flow (--flow; TV-L1 by default) -> two-stream I3D: one (T, 2048) .npy + provenance
    .json per video. --recipe starts from the settings a public feature release was made with."""
    from ..errors import WtalError
    from ..features.extract import ExtractJob
    from ..features.recipes import recipes_markdown, resolve

    if list_recipes:
        print(recipes_markdown(), end="")
        return
    if not videos:
        raise WtalError("no videos given", "pass video files or folders (or --list-recipes)")
    extraction = resolve(
        recipe, fps=fps, short_side=short_side, crop=crop, resize=_size(resize), preset=flow, bound=flow_bound,
        chunk=chunk, stride=stride, crops=crops, rows=rows, rgb_weights=rgb_weights, flow_weights=flow_weights,
        precision=precision, batch_size=batch_size,
    )  # fmt: skip
    found = _videos(videos, data, shard, merge_report)
    model = _extractor(extraction, "cpu" if scheduler else device, scheduler)  # on a cluster: checks the weights
    job = ExtractJob.of(data, extraction, force=force, allow_partial=allow_partial, workers=workers)
    console.print(escape(f"extracting {len(found)} video(s) -> {data}/features  [{_route(job, model, scheduler)}]"))
    with progress_bars() as bars:
        report = _reporters(bars, len(found), per_second=scheduler is not None)
        outcomes = run_extraction(
            found, job, model, scheduler=scheduler, device=device, split_minutes=split_minutes, **report
        )
    _summarize(outcomes)


def run_extraction(
    videos: list[Path],
    job: ExtractJob,
    model: I3DPair,
    *,
    scheduler: str | None = None,
    device: str = "auto",
    split_minutes: float = 10.0,
    progress: ProgressFn | None = None,
    on_result: OnResult | None = None,
) -> list[ExtractOutcome]:
    """The driver: this machine, or the Dask cluster at ``scheduler`` (``model`` then only checked the weights;
    the workers load their own on ``device``)."""
    from ..features.extract import extract_all

    if scheduler is None:
        return extract_all(videos, job, model, progress=progress, on_result=on_result)
    from ..features.cluster import ClusterJob, connect, extract_on_cluster

    split = round(split_minutes * 60 * job.extraction.decode.fps)
    with connect(scheduler) as client:
        cluster_job = ClusterJob.probe(client, job, device=device, split_frames=split)
        return extract_on_cluster(client, [video.resolve() for video in videos], cluster_job, on_result)


def _size(text: str | None) -> tuple[int, int] | None:
    """``"340x256"`` -> (340, 256)."""
    if text is None:
        return None
    from ..errors import WtalError

    width, _, height = text.lower().partition("x")
    try:
        return int(width), int(height)
    except ValueError:
        raise WtalError(f"--resize {text!r} is not WIDTHxHEIGHT", "e.g. --resize 340x256") from None


def _summarize(outcomes: list[ExtractOutcome]) -> None:
    """The closing line; exit 1 when a video failed (the others are done)."""
    failed = sum(o.status == "failed" for o in outcomes)
    cached = sum(o.status == "cached" for o in outcomes)
    console.print(f"{len(outcomes) - failed} ok ({cached} cached), {failed} failed")
    if failed:
        raise typer.Exit(1)


def _videos(videos: list[Path], data: Path, shard: str | None, merge_report: bool) -> list[Path]:
    """The videos this call extracts (its shard's); with ``merge_report``, the report instead (then exit)."""
    from ..errors import WtalError
    from ..features.shards import Shard
    from ..video.discover import VIDEO_EXTENSIONS, find_videos

    found = find_videos(videos)
    if not found:
        raise WtalError(
            f"no videos found in {', '.join(map(str, videos))}",
            f"pass files or folders containing {', '.join(VIDEO_EXTENSIONS)}",
        )
    part = Shard.parse(shard) if shard is not None else None
    if merge_report:
        _merge_report(found, data, part.count if part else None)
    if part is None:
        return found
    mine = [video for video in found if part.holds(video)]
    console.print(f"shard {part}: {len(mine)} video(s)")
    return mine


def _extractor(extraction: ExtractionConfig, device: str, scheduler: str | None) -> I3DPair:
    from ..features.two_stream import I3DPair

    if scheduler:
        from ..features.cluster import check_scheduler

        check_scheduler(scheduler)
    model = I3DPair.load(extraction.features, device)
    if model.is_random:
        random_weights_warning("features")
    if extraction.flow.on_device and model.device.type == "cpu":
        warn(
            f"--flow {extraction.flow.preset} runs on the CPU here, about 100x slower than on a GPU and slower than "
            "OpenCV: use --flow tvl1 without a GPU"
        )
    return model


def _route(job, model: I3DPair, scheduler: str | None) -> str:
    """Where each stage runs, in words."""
    preset = job.extraction.flow.preset
    if scheduler:
        return f"flow {preset}, Dask {scheduler}"
    if job.extraction.flow.on_device:
        return f"flow {preset}, flow and I3D on {model.device} {model.precision}, fed from the decoder"
    return f"flow {preset}, {job.workers} worker(s), I3D on {model.device} {model.precision}"


def _reporters(bars, total: int, per_second: bool) -> dict[str, Callable]:
    """Progress callbacks (``progress``: the current stage of the current video; ``on_result``: one line
    per finished video)."""
    task = bars.add_task("videos", total=total)
    stage = bars.add_task("", total=None)
    started, frames_done = time.perf_counter(), 0

    def on_stage(name: str, done: int, total: int) -> None:
        bars.update(stage, description=f"  {name}", completed=done, total=total or None)

    def on_result(outcome: ExtractOutcome, frames: int) -> None:
        nonlocal frames_done
        bars.advance(task)
        frames_done += frames
        if per_second:
            rate = frames_done / max(time.perf_counter() - started, 1e-9)
            bars.update(stage, description=f"  {frames_done} frames, {rate:.0f} frames/s")
        if outcome.status == "failed":
            err_console.print(f"[red]FAILED[/] {escape(str(outcome.error))}")
        else:
            console.print(f"{outcome.status:>6} {escape(outcome.video.name)} -> {outcome.features}")

    return {"progress": on_stage, "on_result": on_result}


def _merge_report(videos: list[Path], data: Path, shards: int | None) -> None:
    """Which videos (of every shard) have no intact features yet; exit 1 when any is missing, else 0."""
    from ..features.extract import has_features
    from ..features.shards import shard_of

    missing = [video for video in videos if not has_features(video, data)]
    console.print(f"{len(videos) - len(missing)} of {len(videos)} video(s) have features in {data}")
    for video in missing:
        where = f"  (shard {shard_of(video, shards)}/{shards})" if shards else ""
        console.print(f"missing {escape(str(video))}{where}")
    raise typer.Exit(1 if missing else 0)


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
):
    """Build CMCS hard-negative pseudo videos <vid>_bg from the static stretches of training videos."""
    from ..data.negatives import NegativesConfig, build_negatives
    from ..layout import DataLayout

    if from_features:
        warn(
            "--from-features: static rows are ranked by the norm of the flow half of each feature row, an "
            "approximation of the published per-frame TV-L1 ranking."
        )
    config = NegativesConfig(ratio=ratio, whole_chunk=whole_chunk, from_features=from_features)
    results = build_negatives(data, subset, config)
    for r in results:
        rows = f" ({r.rows} rows)" if r.rows else ""
        console.print(f"{r.status:>8} {escape(r.vid)}{rows}" + (f" - {escape(r.reason)}" if r.reason else ""))
    made = [r for r in results if r.status in ("written", "cached")]
    console.print(
        f"{len(made)} pseudo videos ({sum(r.rows for r in made)} rows) in {DataLayout(data).negatives_dir}, "
        f"{len(results) - len(made)} videos skipped"
    )


@features_app.command("compare")
def compare_features_cli(
    first: Annotated[Path, typer.Argument(help="Features folder A (<video>.npy, e.g. yours: DATA_DIR/features).")],
    second: Annotated[
        Path, typer.Argument(help="Features folder B (e.g. a public release imported with wtal import).")
    ],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Also write the table as Markdown here.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write every number as JSON here.")] = None,
):
    """How two feature sets of the same videos differ: row alignment (rate and shift), cosine per stream, the
    recorded settings that differ, and a verdict per video naming the likeliest cause."""
    from ..cache import atomic_write_text, check_output_file
    from ..data.compare import compare_folders, markdown, to_json

    for path, option in ((out, "--out"), (json_out, "--json")):
        if path is not None:
            check_output_file(path, option)  # before the work: a bad path fails in a second, not after it
    found = compare_folders(first, second)
    table = markdown(found, first, second)
    console.print(table, markup=False, end="")
    for path, text in ((out, table), (json_out, to_json(found))):
        if path is not None:
            atomic_write_text(path, text)
            console.print(f"wrote {path}")
