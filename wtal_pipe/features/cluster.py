"""``wtal extract --scheduler``: extraction over a Dask cluster.

Each video becomes a small task graph: decode (any worker) -> flow, split into frame ranges when the
video is long (any worker; each range reads one frame past its end) -> assemble -> two-stream I3D
(a worker with the ``GPU`` resource when the cluster has one, e.g. ``dask worker ... --resources
GPU=1``). Every task writes through the same atomic, content-keyed cache as a local run, into the
DATA_DIR that all workers and this process share (a shared filesystem), so the features are
byte-identical to a single-machine run and a re-run after any crash skips finished work. Dask
re-runs the task of a worker that died; a video that fails with a user error is reported in the
local format and the others go on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import WtalError
from ..video.flow import split_ranges
from .extract import ExtractJob, ExtractOutcome, OnResult
from .plan import FeatureIdentity, VideoPlan
from .stages import Status, assemble_flow, checked_frames, ensure_flow_part, flow_is_cached, run_plan

if TYPE_CHECKING:
    from distributed import Client

    from .two_stream import I3DPair

INSTALL_HINT = "pip install 'wtal-pipe[dask]'"
RETRIES = 2  # re-runs of a task that raised an unexpected error (a worker that died is re-run by Dask)


@dataclass(frozen=True)
class ClusterJob:
    """What every task needs to know (sent to the workers)."""

    job: ExtractJob
    device: str  # where the I3D workers run it
    identity: FeatureIdentity | None = None  # of the I3D workers' model (asked once, see probe)
    split_frames: int = 15000  # flow of a longer video is split into ranges of about this many frames

    @classmethod
    def probe(cls, client: Client, job: ExtractJob, *, device: str, split_frames: int) -> ClusterJob:
        """The job, with the feature identity (precision, weights) of the workers that take the I3D tasks."""
        unprobed = cls(job, device, None, split_frames)
        identity = client.submit(identity_task, unprobed, resources=gpu_resources(client), pure=False).result()
        return dataclasses.replace(unprobed, identity=identity)

    def plan(self, video: str) -> VideoPlan:
        if self.identity is None:
            raise RuntimeError("ClusterJob.probe first")
        return VideoPlan.build(Path(video), self.job.data_dir, self.job.extraction, self.identity, self.job.force)


def check_scheduler(scheduler: str) -> int | None:
    """Refuse, before any work, a scheduler that cannot be used: Dask missing, or not ``tcp://...`` /
    ``local:N``. Returns N for ``local:N``."""
    try:
        import distributed  # noqa: F401
    except ImportError as exc:
        raise WtalError("--scheduler needs Dask distributed, which is not installed", INSTALL_HINT) from exc
    if scheduler.startswith("local:"):
        count = scheduler.removeprefix("local:")
        if not count.isdigit() or int(count) < 1:
            raise WtalError(f"--scheduler {scheduler!r}: N must be a positive number", "e.g. --scheduler local:4")
        return int(count)
    if "://" not in scheduler:
        raise WtalError(f"--scheduler {scheduler!r} is not an address", "e.g. tcp://HOST:8786, or local:4")
    return None


@contextlib.contextmanager
def connect(scheduler: str) -> Iterator[Client]:
    """A client of ``tcp://HOST:PORT`` (a running ``dask scheduler``) or of ``local:N``, a LocalCluster
    of N single-threaded worker processes on 127.0.0.1 that lives as long as the block."""
    from distributed import Client, LocalCluster

    local_workers = check_scheduler(scheduler)
    if local_workers:
        with (
            LocalCluster(
                n_workers=local_workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client
        return
    try:
        client = Client(scheduler, timeout=10)
    except (OSError, TimeoutError, ValueError) as exc:
        raise WtalError(
            f"cannot reach the Dask scheduler at {scheduler} ({exc.__class__.__name__})",
            "start one with `dask scheduler`, or use --scheduler local:N",
        ) from exc
    with client:
        yield client


# --- tasks (run on the workers) ------------------------------------------------------------------------

_models: dict[str, I3DPair] = {}


def _model(cluster_job: ClusterJob) -> I3DPair:
    """One loaded I3D per worker process and setting, reused by every video it extracts."""
    from .two_stream import I3DPair

    features = cluster_job.job.extraction.features
    key = json.dumps([dataclasses.asdict(features), cluster_job.device], sort_keys=True)
    if key not in _models:
        _models[key] = I3DPair.load(features, cluster_job.device)
    return _models[key]


def identity_task(cluster_job: ClusterJob) -> FeatureIdentity:
    return _model(cluster_job).identity


@dataclass(frozen=True)
class Decoded:
    """What the decode task hands the flow and I3D tasks of one video (sent between workers)."""

    plan: VideoPlan
    frames: Path  # the frames cache entry
    n_frames: int
    flow_cached: bool  # the flow entry is intact: no flow task


@dataclass(frozen=True)
class Failed:
    """A task's one-line user error, for the local report."""

    error: str


@dataclass(frozen=True)
class Featured:
    """What the I3D task did with one video."""

    status: Status
    features: Path
    frames: int


def decode_task(video: str, cluster_job: ClusterJob) -> Decoded | Failed:
    """The video's plan and its decoded (or reused) frames, or the one-line error."""
    try:
        plan = cluster_job.plan(video)
        frames_path, record = checked_frames(plan, None, cluster_job.job.allow_partial)
    except WtalError as exc:
        return Failed(exc.one_line())
    return Decoded(plan, frames_path, record.n_frames, flow_is_cached(plan))


def flow_part_task(decoded: Decoded, start: int, stop: int) -> str:
    return str(ensure_flow_part(decoded.plan, decoded.frames, start, stop))


def assemble_task(decoded: Decoded, ranges: list[tuple[int, int]], *parts: str) -> None:
    """Join the flow parts into the video's flow entry (``parts`` only orders this after them)."""
    assemble_flow(decoded.plan, decoded.frames, ranges)


def features_task(decoded: Decoded, cluster_job: ClusterJob, *after: Any) -> Featured | Failed:
    """I3D on the cached frames and flow (computing the flow here only for an ``on_device`` engine, on this
    worker's device); ``after`` orders it after the flow tasks."""
    plan = decoded.plan
    try:
        model = _model(cluster_job)
        if model.identity != cluster_job.identity:
            raise WtalError(
                f"this worker's I3D runs in {model.identity.precision} where the cluster's first I3D worker runs "
                f"{cluster_job.identity.precision if cluster_job.identity else '?'}: the features would not match",
                "give every I3D worker the same device, or pass --precision fp32",
                plan.video,
            )
        features_only = dataclasses.replace(plan, forced=plan.forced & {"features"})  # frames, flow: done above
        status = run_plan(features_only, model, workers=1, allow_partial=cluster_job.job.allow_partial)
    except WtalError as exc:
        return Failed(exc.one_line())
    return Featured(status, plan.features.data, decoded.n_frames)


# --- the driver ----------------------------------------------------------------------------------------


def flow_ranges(n_frames: int, split_frames: int) -> list[tuple[int, int]]:
    """Frame ranges of about ``split_frames`` each (one range for a short video)."""
    return split_ranges(n_frames, max(1, -(-n_frames // max(1, split_frames))))


def extract_on_cluster(
    client: Client, videos: list[Path], job: ClusterJob, on_result: OnResult | None = None
) -> list[ExtractOutcome]:
    """Extract every video on the cluster; ``on_result(outcome, frames)`` as each video finishes (in
    completion order). Returns the outcomes in the order of ``videos``."""
    from distributed import as_completed

    run = uuid.uuid4().hex[:8]
    gpu = gpu_resources(client)
    flow_here = job.job.extraction.flow.on_device  # computed by the I3D worker
    decoding = {
        client.submit(decode_task, str(video), job, key=f"decode-{video.stem}-{run}", retries=RETRIES): video
        for video in videos
    }
    featuring: dict[Any, Path] = {}
    outcomes: dict[Path, ExtractOutcome] = {}

    def finish(video: Path, outcome: ExtractOutcome, frames: int = 0) -> None:
        outcomes[video] = outcome
        if on_result:
            on_result(outcome, frames)

    pending = as_completed(list(decoding))
    for future in pending:
        video = decoding.get(future) or featuring[future]
        try:
            result = future.result()
        except Exception as exc:  # a task that kept failing or kept killing its worker
            finish(video, ExtractOutcome(video, "failed", error=f"{video}: {exc.__class__.__name__}: {exc}"))
            continue
        if isinstance(result, Failed):
            finish(video, ExtractOutcome(video, "failed", error=result.error))
        elif isinstance(result, Featured):
            finish(video, ExtractOutcome(video, result.status, result.features), result.frames)
        else:
            after = [] if flow_here else _submit_flow(client, result, job, f"{video.stem}-{run}")
            task = client.submit(
                features_task,
                result,
                job,
                *after,
                key=f"features-{video.stem}-{run}",
                retries=RETRIES,
                resources=gpu,
            )
            featuring[task] = video
            pending.add(task)
    return [outcomes[video] for video in videos]


def _submit_flow(client: Client, decoded: Decoded, job: ClusterJob, name: str) -> list[Any]:
    """The flow tasks of one decoded video (none when its flow is cached and intact)."""
    if decoded.flow_cached:
        return []
    ranges = flow_ranges(decoded.n_frames, job.split_frames)
    parts = [client.submit(flow_part_task, decoded, a, b, key=f"flow-{name}-{a}", retries=RETRIES) for a, b in ranges]
    return [client.submit(assemble_task, decoded, ranges, *parts, key=f"assemble-{name}", retries=RETRIES)]


def gpu_resources(client: Client) -> dict[str, int] | None:
    """``{"GPU": 1}`` when a worker advertises a GPU (I3D tasks go there), else None."""
    workers = client.scheduler_info().get("workers", {}).values()
    return {"GPU": 1} if any(worker.get("resources", {}).get("GPU") for worker in workers) else None
