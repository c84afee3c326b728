"""``wtal extract`` on this machine: each video's plan run through the stages (``stages.py``), one video
after another, flow in worker processes or on the device (``cluster.py`` runs the same plans on a Dask
cluster; the CLI picks the driver).

A video that fails with a user error (corrupt, truncated, unreadable) is reported as failed and the
others go on; every stage output is reused only while its record says it is intact.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..cache import reusable, sweep_stale_tmp
from ..errors import WtalError
from ..layout import DataLayout, safe_name
from ..video.flow import default_workers
from .config import ExtractionConfig
from .plan import Stage, VideoPlan, stages_to_recompute, video_identity
from .provenance import Provenance
from .stages import Status, run_plan
from .two_stream import I3DPair, ProgressFn


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


def has_features(video: Path, data_dir: Path) -> bool:
    """Whether ``data_dir`` holds intact features extracted from this very file."""
    layout = DataLayout(Path(data_dir))
    stem = safe_name(Path(video).stem, "video file name", video)
    record = reusable(layout.features(stem), layout.provenance(stem))
    return record is not None and Provenance.read(layout.features(stem)).fingerprint == video_identity(Path(video))
