"""The extraction stages for one video: decode -> flow -> two-stream I3D -> (T, 2048) + provenance.

Each stage caches its output under ``DATA_DIR/cache/<video_stem>/`` keyed by the video's content
fingerprint and the stage's parameters (plus the keys of the stages it reads), so a re-run skips
finished work and a changed parameter recomputes only what depends on it; every entry's record holds
its size and sha256, so a damaged entry is recomputed instead of trusted. A flow computed on the
device (``tvl1-torch``) is fed straight from the decoder instead (:func:`stream_video`): no frames entry,
the same flow entry and features.

Chunking: row ``k`` covers frames ``[16k, 16k+16)``, seconds ``[16k/fps, 16(k+1)/fps)``; an
incomplete tail chunk is dropped (the published convention), so ``T = floor(frames / 16)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from ..cache import NpyStreamWriter, atomic_path, atomic_write_json, file_digest, file_identity, reusable, stage_key
from ..config import DecodeConfig, ExtractionConfig, FlowConfig
from ..errors import VideoError, WtalError
from ..layout import DataLayout, safe_name
from ..provenance import Provenance, extracted_record
from ..video import decode, flow
from .stream import frame_blocks, prefetch, stream_features
from .two_stream import I3DPair, ProgressFn, features_from_arrays


@dataclass
class VideoPaths:
    """Where one video's stage outputs live: its stem names them in the dataset's layout."""

    video: Path
    layout: DataLayout
    stem: str = field(init=False)

    def __post_init__(self):
        self.stem = safe_name(self.video.stem, "video file name", self.video)

    @property
    def cache(self) -> Path:
        return self.layout.cache(self.stem)

    @property
    def features(self) -> Path:
        return self.layout.features(self.stem)

    @property
    def metadata(self) -> Path:
        return self.layout.provenance(self.stem)


def ensure_frames(
    paths: VideoPaths, identity: str, config: DecodeConfig, force: bool = False, progress: ProgressFn | None = None
) -> tuple[Path, dict]:
    """Decoded frames (N, crop, crop, 3) uint8 at the target fps, streamed to disk, with what decoding
    saw (coverage of the container's duration, rotation); reused only while intact."""
    key = stage_key("decode", identity, config)
    out, meta_path = paths.layout.frames(paths.stem, key)
    meta = None if force else reusable(out, meta_path)
    if meta is not None:
        return out, meta
    info = decode.probe(paths.video)
    stats = decode.DecodeStats()
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as fh:
            writer = NpyStreamWriter(fh, (config.crop, config.crop, 3), np.uint8)
            for frame in decode.iter_frames(paths.video, config, stats):
                writer.append(frame.rgb)
                if progress and frame.index % 25 == 0:
                    progress("decode", frame.index, 0)
            writer.close()
        digest = file_digest(tmp)
    meta = decode_record(key, writer.rows, config, info, stats, digest)
    atomic_write_json(meta_path, meta)
    return out, meta


def decode_record(
    key: str,
    n_frames: int,
    config: DecodeConfig,
    info: decode.VideoInfo,
    stats: decode.DecodeStats,
    digest: dict | None,
) -> dict:
    """What decoding produced and saw (coverage of the container's duration, rotation); ``digest`` is the
    frames cache's, None when the frames went straight to the device."""
    return {
        "key": key,
        "n_frames": n_frames,
        "fps": config.fps,
        "duration": n_frames / config.fps,
        "source": asdict(info),
        "rotation": stats.rotation,
        "coverage": {
            "decoded_seconds": round(stats.span, 4),
            "declared_seconds": info.duration,
            "decoded_frames": stats.source_frames,
            "declared_frames": info.frames,
            "missing_seconds": round(stats.missing_seconds(info), 4),
            "partial": stats.is_partial(info),
        },
        "digest": digest,
    }


def write_flow(
    paths: VideoPaths,
    frames_path: Path,
    frames_key: str,
    config: FlowConfig,
    workers: int,
    progress: ProgressFn | None = None,
    device: str = "cpu",
) -> Path:
    """Compute the flow cache entry, (N, H, W, 2) uint8, for the decoded frames. ``device`` runs the
    ``tvl1-torch`` preset (the extraction device, so a GPU does the flow as well as I3D)."""
    key = stage_key("flow", frames_key, config)
    out, marker = paths.layout.flow(paths.stem, key)
    n_frames = np.load(frames_path, mmap_mode="r").shape[0]
    done = 0

    def step(count: int) -> None:
        nonlocal done
        done += count
        if progress:
            progress("flow", done, n_frames)

    with atomic_path(out) as tmp_flow:
        flow.compute_flow(frames_path, tmp_flow, config, workers, step, device)
        digest = file_digest(tmp_flow)
    _write_flow_record(marker, key, frames_key, n_frames, config, digest)
    return out


def _write_flow_record(
    marker: Path, key: str, frames_key: str, n_frames: int, config: FlowConfig, digest: dict
) -> None:
    atomic_write_json(
        marker,
        {
            "key": key,
            "frames_key": frames_key,
            "n_frames": n_frames,
            "preset": config.preset,
            "params": config.params,
            "bound": config.bound,
            "storage": "uint8 round(128 + clip(f, -bound, bound) * 127.5 / bound)",
            "digest": digest,
        },
    )


def ensure_flow_part(
    paths: VideoPaths,
    frames_path: Path,
    frames_key: str,
    config: FlowConfig,
    start: int,
    stop: int,
    force: bool = False,
) -> Path:
    """Flow of frames ``start..stop-1`` (reading frame ``stop``, the one-frame overlap) as its own
    atomic file, so a long video's flow can be split over machines and a lost part is redone alone."""
    key = stage_key("flow", frames_key, config)
    part = paths.layout.flow_part(paths.stem, key, start, stop)
    if part.exists() and not force:
        return part
    frames = np.load(frames_path, mmap_mode="r")
    with atomic_path(part, keep_suffix=True) as tmp:
        np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(stop - start, *frames.shape[1:3], 2)).flush()
        flow.flow_range(str(frames_path), str(tmp), start, stop, len(frames), config, offset=start)
    return part


def assemble_flow(
    paths: VideoPaths, frames_path: Path, frames_key: str, config: FlowConfig, ranges: list[tuple[int, int]]
) -> Path:
    """The flow cache entry from the parts ``ensure_flow_part`` wrote (then removed), as if computed here."""
    key = stage_key("flow", frames_key, config)
    out, marker = paths.layout.flow(paths.stem, key)
    frames = np.load(frames_path, mmap_mode="r")
    parts = [paths.layout.flow_part(paths.stem, key, start, stop) for start, stop in ranges]
    with atomic_path(out) as tmp:
        whole = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(frames), *frames.shape[1:3], 2))
        for (start, stop), part in zip(ranges, parts, strict=True):
            whole[start:stop] = np.load(part, mmap_mode="r")
        whole.flush()
        del whole
        digest = file_digest(tmp)
    _write_flow_record(marker, key, frames_key, len(frames), config, digest)
    for part in parts:
        part.unlink(missing_ok=True)
    return out


Stage = Literal["frames", "flow", "features"]
STAGES: tuple[Stage, ...] = get_args(Stage)


def stages_to_recompute(force: bool | frozenset[Stage]) -> frozenset[Stage]:
    """``force``: True recomputes every stage; a set names the stages (a cluster recomputes each where
    it runs)."""
    return frozenset(STAGES) if force is True else frozenset(force or ())


def video_identity(video: Path) -> str:
    """The video's content fingerprint, or a one-line error when it cannot be read."""
    try:
        return file_identity(video)
    except FileNotFoundError as exc:
        raise VideoError("file not found", "check the path", video) from exc
    except OSError as exc:
        raise VideoError(
            f"cannot be read ({exc.strerror or exc.__class__.__name__})", "check its permissions, or remove it", video
        ) from exc


def checked_frames(
    paths: VideoPaths,
    identity: str,
    extraction: ExtractionConfig,
    force: bool = False,
    progress: ProgressFn | None = None,
    allow_partial: bool = False,
) -> tuple[Path, dict]:
    """The decoded frames, once :func:`check_decoded` accepts them."""
    frames_path, frames_meta = ensure_frames(paths, identity, extraction.decode, force, progress)
    check_decoded(paths, frames_meta, extraction, allow_partial)
    return frames_path, frames_meta


def check_decoded(paths: VideoPaths, frames_meta: dict, extraction: ExtractionConfig, allow_partial: bool) -> None:
    """Refuse a video that decoded short of its declared length (unless ``allow_partial``) or to less
    than one feature row."""
    coverage = frames_meta["coverage"]
    if coverage["partial"] and not allow_partial:
        raise VideoError(
            f"decoded only {coverage['decoded_seconds']:.2f} of {coverage['declared_seconds'] or 0:.2f} s "
            "the container declares (truncated or corrupt?)",
            "re-encode it, or pass --allow-partial to keep what decodes",
            paths.video,
        )
    chunk = extraction.features.chunk
    if frames_meta["n_frames"] < chunk:
        raise VideoError(
            f"only {frames_meta['n_frames']} frame(s) at {extraction.decode.fps:g} fps, fewer than one "
            f"{chunk}-frame feature row",
            "remove it, or use longer clips",
            paths.video,
        )


def stream_video(
    paths: VideoPaths,
    keys: dict[str, str],
    extraction: ExtractionConfig,
    model: I3DPair,
    force_decode: bool = False,
    progress: ProgressFn | None = None,
    allow_partial: bool = False,
) -> tuple[np.ndarray, dict]:
    """Features and flow cache for a flow computed on the device (:mod:`.stream`): frames come from the
    frames cache when it is intact, else straight from the decoder (no frames cache is written: the flow
    is the costly part, and it is cached). The flow is committed before the checks of
    :func:`check_decoded`, so ``--allow-partial`` on a refused video does not compute it again."""
    flow_path, flow_record = paths.layout.flow(paths.stem, keys["flow"])
    frames_path, frames_record = paths.layout.frames(paths.stem, keys["frames"])
    block = extraction.features.chunk * extraction.features.batch_size
    frames_meta = None if force_decode else reusable(frames_path, frames_record)
    blocks: Iterator[np.ndarray]
    if frames_meta is not None:
        cached = np.load(frames_path, mmap_mode="r")
        expected = len(cached)
        blocks = (np.array(cached[start : start + block]) for start in range(0, expected, block))
    else:
        info, stats = decode.probe(paths.video), decode.DecodeStats()
        expected = round((info.duration or 0) * extraction.decode.fps)
        frames = (frame.rgb for frame in decode.iter_frames(paths.video, extraction.decode, stats))
        blocks = frame_blocks(frames, block)
    crop = extraction.decode.crop
    with atomic_path(flow_path) as tmp, closing(prefetch(blocks)) as queued:  # closing: the decoder stops now
        with open(tmp, "wb") as fh:
            writer = NpyStreamWriter(fh, (crop, crop, 2), np.uint8)
            rows = stream_features(
                queued,
                model,
                extraction.flow,
                extraction.features.chunk,
                extraction.features.batch_size,
                writer.extend,
                (lambda done: progress("decode + flow + I3D", done, max(done, expected))) if progress else None,
            )
            writer.close()
        digest = file_digest(tmp)
    if frames_meta is None:
        frames_meta = decode_record(keys["frames"], writer.rows, extraction.decode, info, stats, None)
    _write_flow_record(flow_record, keys["flow"], keys["frames"], writer.rows, extraction.flow, digest)
    check_decoded(paths, frames_meta, extraction, allow_partial)
    return rows, frames_meta


def extract_video(
    video: Path,
    data_dir: Path,
    model: I3DPair,
    extraction: ExtractionConfig,
    workers: int,
    force: bool | frozenset[Stage] = False,
    progress: ProgressFn | None = None,
    allow_partial: bool = False,
) -> tuple[str, Path]:
    """Run (or reuse) every stage for one video; returns ("cached" | "done", features path).

    Every stage output is reused only when its recorded size and sha256 still match (a damaged or
    truncated cache is recomputed); ``force`` recomputes every stage. A video that decodes short of
    what its container declares, or to less than one chunk, is a VideoError (``allow_partial`` keeps
    the features of a partial one, with its coverage in the provenance).
    """
    paths = VideoPaths(Path(video), DataLayout(Path(data_dir)))
    identity = video_identity(paths.video)
    forced = stages_to_recompute(force)
    chunk = extraction.features.chunk
    keys = {"frames": stage_key("decode", identity, extraction.decode)}
    keys["flow"] = stage_key("flow", keys["frames"], extraction.flow)
    keys["features"] = stage_key("features", keys["flow"], chunk, model.precision, model.weights_key())
    previous = Provenance.read(paths.features)
    if (
        not forced
        and previous.video
        and previous.fingerprint != identity
        and Path(previous.video) != paths.video.resolve()
    ):  # another file with the same stem (a.mp4, a.mkv)
        raise VideoError(
            f"{paths.features.name} already holds the features of {previous.video}",
            "rename one of the two videos, or pass --force to replace them",
            paths.video,
        )
    if (
        "features" not in forced
        and previous.keys.get("features") == keys["features"]
        and reusable(paths.features, paths.metadata)
    ):
        return "cached", paths.features

    flow_path, flow_record = paths.layout.flow(paths.stem, keys["flow"])
    flow_cached = "flow" not in forced and reusable(flow_path, flow_record) is not None
    if extraction.flow.on_device and not flow_cached:
        rows, frames_meta = stream_video(paths, keys, extraction, model, "frames" in forced, progress, allow_partial)
    else:
        frames_path, frames_meta = checked_frames(
            paths, identity, extraction, "frames" in forced, progress, allow_partial
        )
        if not flow_cached:
            write_flow(paths, frames_path, keys["frames"], extraction.flow, workers, progress, str(model.device))
        rows = features_from_arrays(
            np.load(frames_path, mmap_mode="r"),
            np.load(flow_path, mmap_mode="r"),
            model,
            chunk,
            extraction.features.batch_size,
            progress,
        )
    with atomic_path(paths.features) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, rows)
        digest = file_digest(tmp)
    atomic_write_json(
        paths.metadata,
        extracted_record(
            extraction,
            keys,
            paths.video,
            identity,
            rows.shape,
            digest,
            frames_meta,
            {stream: info.record() for stream, info in model.weights.items()},
            model.precision,
            str(model.device),
        ),
    )
    return "done", paths.features


def has_features(video: Path, data_dir: Path) -> bool:
    """Whether ``data_dir`` holds intact features extracted from this very file."""
    paths = VideoPaths(Path(video), DataLayout(Path(data_dir)))
    record = reusable(paths.features, paths.metadata)
    return record is not None and Provenance.read(paths.features).fingerprint == video_identity(paths.video)


@dataclass
class ExtractOutcome:
    video: Path
    status: str  # "done" | "cached" | "failed"
    features: Path | None = None
    error: str | None = None


def extract_all(
    videos: list[Path],
    data_dir: Path,
    model: I3DPair,
    extraction: ExtractionConfig,
    workers: int,
    force: bool = False,
    progress: ProgressFn | None = None,
    on_result: Callable[[ExtractOutcome], None] | None = None,
    allow_partial: bool = False,
) -> list[ExtractOutcome]:
    """Extract every video; a video that fails (a WtalError) is recorded and the rest go on."""
    from ..cache import sweep_stale_tmp

    if Path(data_dir).exists():
        sweep_stale_tmp(data_dir)
    outcomes = []
    for video in videos:
        try:
            status, path = extract_video(video, data_dir, model, extraction, workers, force, progress, allow_partial)
            outcome = ExtractOutcome(video, status, path)
        except WtalError as exc:
            outcome = ExtractOutcome(video, "failed", error=exc.one_line())
        outcomes.append(outcome)
        if on_result:
            on_result(outcome)
    return outcomes
