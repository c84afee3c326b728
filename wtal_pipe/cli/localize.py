"""``wtal test`` (a subset of DATA_DIR), ``wtal localize`` (raw clips) and ``wtal evaluate`` (a detections file)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.markup import escape

from ..video.flow_engines import flow_presets

if TYPE_CHECKING:
    from ..evaluation.testing import ClipReport
    from ..methods.settings import LocalizationSettings
from .app import (
    Data,
    Device,
    Run,
    Settings,
    Workers,
    app,
    console,
    err_console,
    progress_bars,
    random_weights_warning,
    warn,
)

SkipUnannotated = Annotated[
    bool, typer.Option(help="Leave videos with labels but no segments out of the mAP (else: an error naming them).")
]


@app.command("test")
def test_cli(
    run: Run,
    data: Data = Path("data"),
    subset: Annotated[
        str | None, typer.Option(help="The subset to localize and evaluate (default: the run's preset's test subset).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Detections JSON (ActivityNet format).")] = Path("dets.json"),
    tiou: Annotated[
        str | None,
        typer.Option(
            help="tIoU thresholds: start:stop:step or a comma list (default: the range the method's paper reports)."
        ),
    ] = None,
    settings: Settings = None,
    plot_dir: Annotated[Path | None, typer.Option(help="Write one PNG per video (CAS, detections, GT) here.")] = None,
    skip_unannotated: SkipUnannotated = False,
    checkpoint: Annotated[
        Literal["final", "best"] | None,
        typer.Option(help="The final step, or the best on the held-out videos (default: best with --val, else final)."),
    ] = None,
    device: Device = "cpu",
):
    """Localize every video of a subset from its features, write detections, print the mAP table."""
    from ..cache import check_output_file
    from ..evaluation.testing import test_run
    from ..intervals import parse_tiou
    from ..methods.presets import benchmark
    from ..run import load_run
    from .options import parse_settings

    check_output_file(out, "--out")
    model, meta = load_run(run, device, parse_settings(settings or []), checkpoint)
    console.print(f"{run}: {meta.checkpoint}")
    subset = subset or benchmark(meta.preset).test_subset
    thresholds = parse_tiou(tiou or model.config.localization.eval_tiou)
    scores = out.with_suffix(".cas.npz")
    with progress_bars() as bars:
        task = bars.add_task(f"testing on {subset}", total=None)
        tested = test_run(
            model, meta, data, subset, thresholds, skip_unannotated=skip_unannotated, scores_out=scores,
            plot_dir=plot_dir, on_video=lambda done, total: bars.update(task, completed=done, total=total),
        )  # fmt: skip
    if tested.quiet:
        warn(tested.quiet)
    tested.detections.write_json(out)
    if plot_dir:
        console.print(f"wrote {tested.plots} plots to {plot_dir}")
    found = f"{len(tested.detections)} detections in {len(tested.detections.videos)} videos"
    console.print(f"wrote {out} ({found}; raw scores in {scores})")
    if tested.result is None:
        console.print(f"no ground truth for subset {subset} (labels only, no segments): mAP not computed")
        return
    if tested.set_aside:
        console.print(
            f"left out of the mAP: {len(tested.set_aside)} video(s) with labels but no segments (--skip-unannotated)"
        )
    counts = f"{tested.scored} videos with ground truth, {len(tested.result.classes)} classes"
    console.print(f"{meta.method} on {subset} ({counts}), {meta.checkpoint}:")
    console.print(escape(tested.result.table()))


@app.command("evaluate")
def evaluate_cli(
    detections: Annotated[Path, typer.Argument(help="ActivityNet-format detections JSON.")],
    gt: Annotated[Path, typer.Option(help="Ground truth (ActivityNet style; string segments fine).")],
    subset: Annotated[str, typer.Option(help="The ground truth subset to evaluate on.")] = "test",
    tiou: Annotated[str, typer.Option(help="THUMOS14 0.1:0.7:0.1; ActivityNet 0.5:0.95:0.05.")] = "0.1:0.7:0.1",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON with per-class AP.")] = False,
    skip_unannotated: SkipUnannotated = False,
):
    """mAP per tIoU threshold and on average, exactly the ActivityNet protocol."""
    import json

    from ..evaluation.evaluate import evaluate_files
    from ..intervals import parse_tiou

    result = evaluate_files(detections, gt, subset, parse_tiou(tiou), skip_unannotated)
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
    flow: Annotated[
        str | None, typer.Option(help=f"Override the run's flow preset ({', '.join(flow_presets())}).")
    ] = None,
    workers: Workers = 0,
    device: Device = "auto",
):
    """Raw clips -> decode -> flow -> I3D -> trained model -> detections (seconds from the clip's start)."""
    from ..data.annotations import load_annotations
    from ..errors import WtalError
    from ..evaluation.testing import localize_clip_files
    from ..inference.pipeline import clip_extraction
    from ..run import Run as RunDir
    from ..run import load_run
    from ..video.discover import find_videos
    from ..video.flow import default_workers

    model, meta = load_run(run, "cpu")
    found = find_videos(clips)
    if not found:
        raise WtalError(f"no videos found in {', '.join(map(str, clips))}", "pass video files or folders")
    extraction = clip_extraction(meta, rgb_weights=rgb_weights, flow_weights=flow_weights, preset=flow)
    if extraction.features.random_weights:
        random_weights_warning("clip features")
    reports = localize_clip_files(
        found,
        model,
        meta,
        extraction,
        cache_dir=data or RunDir(run).localize_cache,
        workers=workers or default_workers(),
        device=device,
        out=out,
        plot=plot,
        truth=load_annotations(gt) if gt else None,
        external={"method": meta.method, "run": str(run)},
    )
    for report in reports:
        _report_clip(report, model.config.localization, meta.classes)
    if any(r.clip.result and r.clip.result.detections for r in reports):
        console.print(score_legend(model.config.localization))
    console.print(f"wrote {out}")
    if any(r.clip.result is None for r in reports):
        raise typer.Exit(1)


def score_legend(settings: LocalizationSettings) -> str:
    """What a detection's score is, so a negative one reads right (the official scores of all four methods)."""
    video = "1" if settings.binarize_class_score else "the class's video score"
    return (
        f"score = the class's mean activation inside the segment minus around it, + {settings.class_score_weight:g} "
        f"x {video}: a ranking, not a probability (below 0: the segment's surroundings score higher)"
    )


def _report_clip(report: ClipReport, settings: LocalizationSettings, classes: list[str]) -> None:
    """A clip's ten best detections (or its failure), why it has none if no class was selected, its figure."""
    from ..inference.pipeline import QuietVideos

    clip = report.clip
    if clip.result is None:
        err_console.print(f"[red]FAILED[/] {escape(str(clip.error))}")
        return
    found = clip.result.detections
    console.print(f"[bold]{escape(clip.clip.name)}[/] ({clip.result.timing.duration:.1f} s): {len(found)} detections")
    quiet = QuietVideos(settings)
    quiet.add(clip.result.scores.video_scores)
    if why := quiet.message():
        warn(f"{clip.clip.name}: {why}")
    for detection in sorted(found, key=lambda d: -d.score)[:10]:
        name = escape(classes[detection.label])
        console.print(f"  {name:<28} {detection.start:8.2f} - {detection.end:8.2f} s   score {detection.score:6.3f}")
    if report.plot:
        console.print(f"  plot: {report.plot}")
