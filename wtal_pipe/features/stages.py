"""The extraction stages of one video, each reading and writing through its :class:`~.plan.VideoPlan`:
decode -> flow -> two-stream I3D -> (T, 2048) + provenance. They know no driver: one machine
(``extract.py``) and a Dask cluster (``cluster.py``) call the same functions.

Each stage writes its output to a temporary name and renames it into place, with a record holding the
output's size and sha256, so a damaged entry is recomputed instead of trusted. A flow computed on the
device (an ``on_device`` engine such as ``tvl1-torch``) is fed straight from the decoder instead
(:func:`stream_stages`): no frames entry, the same flow entry and features.

Chunking: row ``k`` covers frames ``[16k, 16k+16)``, seconds ``[16k/fps, 16(k+1)/fps)``; an incomplete
tail chunk is dropped (the published convention), so ``T = floor(frames / 16)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from dataclasses import asdict
from pathlib import Path
from typing import Literal

import numpy as np

from ..cache import NpyStreamWriter, atomic_path, atomic_write_json, file_digest, reusable
from ..errors import VideoError
from ..video import decode, flow
from .plan import CacheEntry, VideoPlan
from .provenance import FlowRecord, FramesRecord, Provenance, extracted_record
from .stream import frame_blocks, prefetch, stream_features
from .two_stream import I3DPair, ProgressFn, features_from_arrays, pooled_rows

Status = Literal["done", "cached", "failed"]  # of one video


def intact_record(entry: CacheEntry) -> dict | None:
    """The record of an intact cache entry, else None (recompute it)."""
    return reusable(entry.data, entry.record)


def cached_frames(plan: VideoPlan) -> FramesRecord | None:
    """The frames entry's record when it may be reused and is intact (a record of an older layout is
    not: the frames are decoded again)."""
    record = intact_record(plan.frames) if plan.reuses("frames") else None
    try:
        return None if record is None else FramesRecord.from_dict(record)
    except (TypeError, KeyError):
        return None


def ensure_frames(plan: VideoPlan, progress: ProgressFn | None = None) -> tuple[Path, FramesRecord]:
    """Decoded frames (N, crop, crop, 3) uint8 at the target fps, streamed to disk; reused while intact."""
    entry = plan.frames
    cached = cached_frames(plan)
    if cached is not None:
        return entry.data, cached
    config = plan.extraction.decode
    info, stats = decode.probe(plan.video), decode.DecodeStats()
    with atomic_path(entry.data) as tmp:
        with open(tmp, "wb") as fh:
            writer = NpyStreamWriter(fh, (*config.frame_size, 3), np.uint8)
            for frame in decode.iter_frames(plan.video, config, stats):
                writer.append(frame.rgb)
                if progress and frame.index % 25 == 0:
                    progress("decode", frame.index, 0)
            writer.close()
        digest = file_digest(tmp)
    record = FramesRecord.of(plan, writer.rows, info, stats, digest)
    atomic_write_json(entry.record, asdict(record))
    return entry.data, record


def check_decoded(plan: VideoPlan, frames: FramesRecord, allow_partial: bool) -> None:
    """Refuse a video that decoded short of its declared length (unless ``allow_partial``) or to less
    than one feature row."""
    coverage = frames.coverage
    if coverage.partial and not allow_partial:
        raise VideoError(
            f"decoded only {coverage.decoded_seconds:.2f} of {coverage.declared_seconds or 0:.2f} s "
            "the container declares (truncated or corrupt?)",
            "re-encode it, or pass --allow-partial to keep what decodes",
            plan.video,
        )
    chunk = plan.extraction.features.chunk
    if frames.n_frames < chunk:
        raise VideoError(
            f"only {frames.n_frames} frame(s) at {plan.extraction.decode.fps:g} fps, fewer than one "
            f"{chunk}-frame feature row",
            "remove it, or use longer clips",
            plan.video,
        )


def checked_frames(
    plan: VideoPlan, progress: ProgressFn | None = None, allow_partial: bool = False
) -> tuple[Path, FramesRecord]:
    """The decoded frames, once :func:`check_decoded` accepts them."""
    frames_path, record = ensure_frames(plan, progress)
    check_decoded(plan, record, allow_partial)
    return frames_path, record


def flow_is_cached(plan: VideoPlan) -> bool:
    return plan.reuses("flow") and intact_record(plan.flow) is not None


def write_flow(
    plan: VideoPlan, frames_path: Path, *, workers: int, device: str = "cpu", progress: ProgressFn | None = None
) -> Path:
    """Compute the flow cache entry, (N, H, W, 2) uint8, for the decoded frames; ``device`` runs an
    ``on_device`` engine (the extraction device, so a GPU does the flow as well as I3D)."""
    n_frames = np.load(frames_path, mmap_mode="r").shape[0]
    done = 0

    def step(count: int) -> None:
        nonlocal done
        done += count
        if progress:
            progress("flow", done, n_frames)

    with atomic_path(plan.flow.data) as tmp:
        flow.compute_flow(frames_path, tmp, plan.extraction.flow, workers=workers, progress=step, device=device)
        digest = file_digest(tmp)
    atomic_write_json(plan.flow.record, asdict(FlowRecord.of(plan, n_frames, digest)))
    return plan.flow.data


def ensure_flow_part(plan: VideoPlan, frames_path: Path, start: int, stop: int) -> Path:
    """Flow of frames ``start..stop-1`` (reading frame ``stop``, the one-frame overlap) as its own
    checksummed atomic file, so a long video's flow can be split over machines and a lost or damaged
    part is redone alone."""
    part = plan.flow_part(start, stop)
    if plan.reuses("flow") and intact_record(part) is not None:
        return part.data
    frames = np.load(frames_path, mmap_mode="r")
    with atomic_path(part.data, keep_suffix=True) as tmp:
        np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(stop - start, *frames.shape[1:3], 2)).flush()
        flow.flow_range(str(frames_path), str(tmp), plan.extraction.flow, start=start, stop=stop, offset=start)
        digest = file_digest(tmp)
    atomic_write_json(part.record, {"frames": [start, stop], "digest": digest})
    return part.data


def assemble_flow(plan: VideoPlan, frames_path: Path, ranges: list[tuple[int, int]]) -> Path:
    """The flow cache entry from the parts :func:`ensure_flow_part` wrote, as if computed here; then
    every part of this flow is removed (also ones a crashed run left with other ranges)."""
    n_frames, *size = np.load(frames_path, mmap_mode="r").shape[:3]
    with atomic_path(plan.flow.data) as tmp:
        whole = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n_frames, *size, 2))
        for start, stop in ranges:
            whole[start:stop] = np.load(plan.flow_part(start, stop).data, mmap_mode="r")
        whole.flush()
        del whole
        digest = file_digest(tmp)
    atomic_write_json(plan.flow.record, asdict(FlowRecord.of(plan, n_frames, digest)))
    for part in plan.cache.flow_parts(plan.keys.flow):
        part.unlink(missing_ok=True)
        part.with_suffix(".json").unlink(missing_ok=True)
    return plan.flow.data


def features_from_caches(plan: VideoPlan, frames_path: Path, model: I3DPair, progress: ProgressFn | None) -> np.ndarray:
    """I3D rows from the cached frames and flow."""
    features = plan.extraction.features
    return features_from_arrays(
        np.load(frames_path, mmap_mode="r"),
        np.load(plan.flow.data, mmap_mode="r"),
        model,
        config=features,
        progress=progress,
    )


def stream_stages(
    plan: VideoPlan, model: I3DPair, progress: ProgressFn | None = None, allow_partial: bool = False
) -> tuple[np.ndarray, FramesRecord]:
    """Features and flow cache for an ``on_device`` flow engine (:mod:`.stream`): frames come from the
    frames cache when it is intact, else straight from the decoder (no frames cache is written: the flow
    is the costly part, and it is cached). The flow is committed before the checks of
    :func:`check_decoded`, so ``--allow-partial`` on a refused video does not compute it again."""
    extraction = plan.extraction
    block = extraction.features.chunk * extraction.features.batch_size
    cached = cached_frames(plan)
    blocks: Iterator[np.ndarray]
    if cached is not None:
        frames = np.load(plan.frames.data, mmap_mode="r")
        expected = len(frames)
        blocks = (np.array(frames[start : start + block]) for start in range(0, expected, block))
    else:
        info, stats = decode.probe(plan.video), decode.DecodeStats()
        expected = round((info.duration or 0) * extraction.decode.fps)
        blocks = frame_blocks((frame.rgb for frame in decode.iter_frames(plan.video, extraction.decode, stats)), block)
    with atomic_path(plan.flow.data) as tmp, closing(prefetch(blocks)) as queued:  # closing: the decoder stops now
        with open(tmp, "wb") as fh:
            writer = NpyStreamWriter(fh, (*extraction.decode.frame_size, 2), np.uint8)
            rows = stream_features(
                queued,
                model,
                extraction.flow,
                chunk=extraction.features.chunk,
                batch_size=extraction.features.batch_size,
                flow_sink=writer.extend,
                progress=(lambda done: progress("decode + flow + I3D", done, max(done, expected)))
                if progress
                else None,
            )
            writer.close()
        digest = file_digest(tmp)
    record = cached or FramesRecord.of(plan, writer.rows, info, stats, None)
    atomic_write_json(plan.flow.record, asdict(FlowRecord.of(plan, writer.rows, digest)))
    check_decoded(plan, record, allow_partial)
    return rows, record


def write_features(plan: VideoPlan, rows: np.ndarray, frames: FramesRecord, model: I3DPair) -> Path:
    """The feature file and its provenance record (written last: a video is done once this exists)."""
    entry = plan.features
    with atomic_path(entry.data) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, rows)
        digest = file_digest(tmp)
    record = extracted_record(plan=plan, frames=frames, model=model, shape=rows.shape, digest=digest)
    atomic_write_json(entry.record, record)
    return entry.data


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
    flow_cached, layout = flow_is_cached(plan), plan.extraction.features
    if plan.extraction.flow.on_device and not flow_cached and not layout.layout():  # the streamed route: default rows
        rows, frames = stream_stages(plan, model, progress, allow_partial)
    else:
        frames_path, frames = checked_frames(plan, progress, allow_partial)
        if not flow_cached:
            write_flow(plan, frames_path, workers=workers, device=str(model.device), progress=progress)
        rows = features_from_caches(plan, frames_path, model, progress)
    if layout.rows is not None:
        rows = pooled_rows(rows, layout.rows, chunk=layout.chunk, step=layout.step, fps=plan.extraction.decode.fps)
    write_features(plan, rows, frames, model)
    return "done"
