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
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cache import reusable, stage_key
from .config import ExtractionConfig
from .errors import WtalError
from .features.extract import (
    ExtractOutcome,
    Stage,
    VideoPaths,
    assemble_flow,
    checked_frames,
    ensure_flow_part,
    extract_video,
    video_identity,
)
from .layout import DataLayout
from .video.flow import split_ranges

if TYPE_CHECKING:
    from distributed import Client

    from .features.two_stream import I3DPair

INSTALL_HINT = "pip install 'wtal-pipe[dask]'"
RETRIES = 2  # re-runs of a task that raised an unexpected error (a worker that died is re-run by Dask)


@dataclass(frozen=True)
class ClusterJob:
    """What every task needs to know (sent to the workers)."""

    data_dir: str
    extraction: dict[str, Any]
    device: str
    force: bool = False
    allow_partial: bool = False
    split_frames: int = 15000  # flow of a longer video is split into ranges of about this many frames

    @property
    def config(self) -> ExtractionConfig:
        return ExtractionConfig.from_dict(self.extraction)

    def paths(self, video: str) -> VideoPaths:
        return VideoPaths(Path(video), DataLayout(Path(self.data_dir)))


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


def _model(job: ClusterJob) -> I3DPair:
    """One loaded I3D per worker process and setting, reused by every video it extracts."""
    from .features.two_stream import I3DPair

    key = json.dumps([job.extraction["features"], job.device], sort_keys=True)
    if key not in _models:
        _models[key] = I3DPair.load(job.config.features, job.device)
    return _models[key]


def decode_task(video: str, job: ClusterJob) -> dict[str, Any]:
    """Decode (or reuse) the frames; what the flow tasks need, or the one-line error."""
    try:
        paths = job.paths(video)
        config = job.config
        frames_path, meta = checked_frames(
            paths, video_identity(paths.video), config, job.force, None, job.allow_partial
        )
    except WtalError as exc:
        return {"error": exc.one_line()}
    flow_path, marker = paths.layout.flow(paths.stem, stage_key("flow", meta["key"], config.flow))
    return {
        "frames": str(frames_path),
        "frames_key": meta["key"],
        "n_frames": meta["n_frames"],
        "flow_cached": not job.force and reusable(flow_path, marker) is not None,
    }


def flow_part_task(video: str, job: ClusterJob, decoded: dict[str, Any], start: int, stop: int) -> str:
    config = job.config.flow
    part = ensure_flow_part(
        job.paths(video), Path(decoded["frames"]), decoded["frames_key"], config, start, stop, job.force
    )
    return str(part)


def assemble_task(
    video: str, job: ClusterJob, decoded: dict[str, Any], ranges: list[tuple[int, int]], *parts: str
) -> None:
    """Join the flow parts into the video's flow entry (``parts`` only orders this after them)."""
    assemble_flow(job.paths(video), Path(decoded["frames"]), decoded["frames_key"], job.config.flow, ranges)


def features_task(video: str, job: ClusterJob, n_frames: int, *after: Any) -> dict[str, Any]:
    """I3D on the cached frames and flow (computing the flow here only for ``tvl1-torch``, on this
    worker's device); ``after`` orders it after the flow tasks."""
    try:
        force: frozenset[Stage] = frozenset({"features"} if job.force else ())
        status, path = extract_video(
            Path(video), Path(job.data_dir), _model(job), job.config, 1, force, None, job.allow_partial
        )
    except WtalError as exc:
        return {"status": "failed", "error": exc.one_line()}
    return {"status": status, "features": str(path), "frames": n_frames}


# --- the driver ----------------------------------------------------------------------------------------


def flow_ranges(n_frames: int, split_frames: int) -> list[tuple[int, int]]:
    """Frame ranges of about ``split_frames`` each (one range for a short video)."""
    return split_ranges(n_frames, max(1, -(-n_frames // max(1, split_frames))))


def extract_on_cluster(
    client: Client,
    videos: list[Path],
    job: ClusterJob,
    on_result: Callable[[ExtractOutcome, int], None] | None = None,
) -> list[ExtractOutcome]:
    """Extract every video on the cluster; ``on_result(outcome, frames)`` as each video finishes (in
    completion order). Returns the outcomes in the order of ``videos``."""
    from distributed import as_completed

    run = uuid.uuid4().hex[:8]
    gpu = {"GPU": 1} if _cluster_has_gpu(client) else None
    flow_here = job.config.flow.on_device  # computed by the I3D worker
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
        if future in featuring:
            status = result["status"]
            features = Path(result["features"]) if "features" in result else None
            finish(video, ExtractOutcome(video, status, features, result.get("error")), result.get("frames", 0))
        elif "error" in result:
            finish(video, ExtractOutcome(video, "failed", error=result["error"]))
        else:
            after = [] if flow_here else _submit_flow(client, video, job, result, run)
            task = client.submit(
                features_task,
                str(video),
                job,
                result["n_frames"],
                *after,
                key=f"features-{video.stem}-{run}",
                retries=RETRIES,
                resources=gpu,
            )
            featuring[task] = video
            pending.add(task)
    return [outcomes[video] for video in videos]


def _submit_flow(client: Client, video: Path, job: ClusterJob, decoded: dict[str, Any], run: str) -> list[Any]:
    """The flow tasks of one decoded video (none when its flow is cached and intact)."""
    if decoded["flow_cached"]:
        return []
    ranges = flow_ranges(decoded["n_frames"], job.split_frames)
    parts = [
        client.submit(
            flow_part_task, str(video), job, decoded, a, b, key=f"flow-{video.stem}-{a}-{run}", retries=RETRIES
        )
        for a, b in ranges
    ]
    return [
        client.submit(
            assemble_task, str(video), job, decoded, ranges, *parts, key=f"assemble-{video.stem}-{run}", retries=RETRIES
        )
    ]


def _cluster_has_gpu(client: Client) -> bool:
    workers = client.scheduler_info().get("workers", {}).values()
    return any(worker.get("resources", {}).get("GPU") for worker in workers)
