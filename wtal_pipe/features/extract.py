"""``wtal extract`` on this machine: each video's plan run through the stages (``stages.py``), one video
after another, flow in worker processes or on the device; or the same plans on a Dask cluster
(:func:`run_extraction` picks the driver).

A video that fails with a user error (corrupt, truncated, unreadable) is reported as failed and the
others go on; every stage output is reused only while its record says it is intact.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..cache import reusable, sweep_stale_tmp
from ..config import ExtractionConfig
from ..errors import VideoError, WtalError
from ..layout import DataLayout, safe_name
from ..provenance import Provenance
from ..video.flow import default_workers
from .plan import Stage, VideoPlan, stages_to_recompute, video_identity
from .stages import checked_frames, features_from_caches, flow_is_cached, stream_stages, write_features, write_flow
from .two_stream import I3DPair, ProgressFn

Status = Literal["done", "cached", "failed"]


@dataclass(frozen=True)
class ExtractJob:
    """What every video of one extraction shares."""

    data_dir: Path
    extraction: ExtractionConfig = field(default_factory=ExtractionConfig)
    force: frozenset[Stage] = frozenset()  # stages recomputed even when cached
    allow_partial: bool = False  # keep the features of a video that decodes short of its declared length
    workers: int = 1  # flow worker processes (CPU engines); 0: one per core

    @classmethod
    def of(
        cls,
        data_dir: Path,
        extraction: ExtractionConfig,
        *,
        force: bool = False,
        allow_partial: bool = False,
        workers: int = 1,
    ) -> ExtractJob:
        return cls(Path(data_dir), extraction, stages_to_recompute(force), allow_partial, workers or default_workers())

    def plan(self, video: Path, model: I3DPair) -> VideoPlan:
        return VideoPlan.build(video, self.data_dir, self.extraction, model.identity, self.force)


@dataclass
class ExtractOutcome:
    video: Path
    status: Status
    features: Path | None = None
    error: str | None = None


def check_same_stem(plan: VideoPlan) -> None:
    """Refuse a second file whose stem names features already extracted from another file (a.mp4, a.mkv)."""
    previous = Provenance.read(plan.features.data)
    if (
        not plan.forced
        and previous.video
        and previous.fingerprint != plan.fingerprint
        and Path(previous.video) != plan.video.resolve()
    ):
        raise VideoError(
            f"{plan.features.data.name} already holds the features of {previous.video}",
            "rename one of the two videos, or pass --force to replace them",
            plan.video,
        )


def run_plan(
    plan: VideoPlan, model: I3DPair, *, workers: int, progress: ProgressFn | None = None, allow_partial: bool = False
) -> Status:
    """Run (or reuse) every stage of one plan: ``cached`` when the features were intact, else ``done``.

    A video that decodes short of what its container declares, or to less than one chunk, is a
    VideoError (``allow_partial`` keeps the features of a partial one, its coverage in the provenance).
    """
    check_same_stem(plan)
    features = plan.features
    same_key = Provenance.read(features.data).keys.get("features") == plan.keys.features
    if plan.reuses("features") and same_key and reusable(features.data, features.record):
        return "cached"
    flow_cached = flow_is_cached(plan)
    if plan.extraction.flow.on_device and not flow_cached:
        rows, frames = stream_stages(plan, model, progress, allow_partial)
    else:
        frames_path, frames = checked_frames(plan, progress, allow_partial)
        if not flow_cached:
            write_flow(plan, frames_path, workers=workers, device=str(model.device), progress=progress)
        rows = features_from_caches(plan, frames_path, model, progress)
    write_features(plan, rows, frames, model)
    return "done"


def extract_video(video: Path, job: ExtractJob, model: I3DPair, progress: ProgressFn | None = None) -> ExtractOutcome:
    """One video through its plan; a user error becomes a failed outcome naming the file."""
    try:
        plan = job.plan(Path(video), model)
        status = run_plan(plan, model, workers=job.workers, progress=progress, allow_partial=job.allow_partial)
        return ExtractOutcome(Path(video), status, plan.features.data)
    except WtalError as exc:
        return ExtractOutcome(Path(video), "failed", error=exc.one_line())


OnResult = Callable[[ExtractOutcome, int], None]  # (outcome, frames decoded for it when known, else 0)


def extract_all(
    videos: list[Path],
    job: ExtractJob,
    model: I3DPair,
    *,
    progress: ProgressFn | None = None,
    on_result: OnResult | None = None,
) -> list[ExtractOutcome]:
    """Extract every video here, one after another (temporaries of killed runs are swept first)."""
    if job.data_dir.exists():
        sweep_stale_tmp(job.data_dir)
    outcomes = []
    for video in videos:
        outcome = extract_video(video, job, model, progress)
        outcomes.append(outcome)
        if on_result:
            on_result(outcome, 0)
    return outcomes


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
    """Extract on this machine, or on the Dask cluster at ``scheduler`` (``model`` then only checked
    the weights; the workers load their own on ``device``)."""
    if scheduler is None:
        return extract_all(videos, job, model, progress=progress, on_result=on_result)
    from ..cluster import ClusterJob, connect, extract_on_cluster

    split = round(split_minutes * 60 * job.extraction.decode.fps)
    with connect(scheduler) as client:
        cluster_job = ClusterJob.probe(client, job, device=device, split_frames=split)
        return extract_on_cluster(client, [video.resolve() for video in videos], cluster_job, on_result)


def has_features(video: Path, data_dir: Path) -> bool:
    """Whether ``data_dir`` holds intact features extracted from this very file."""
    layout = DataLayout(Path(data_dir))
    stem = safe_name(Path(video).stem, "video file name", video)
    record = reusable(layout.features(stem), layout.provenance(stem))
    return record is not None and Provenance.read(layout.features(stem)).fingerprint == video_identity(Path(video))
