"""The extraction pipeline for one video: decode -> flow -> two-stream I3D -> (T, 2048) + provenance.

Each stage caches its output under ``DATA_DIR/cache/<video_stem>/`` keyed by the video's content
fingerprint and the stage's parameters (plus the keys of the stages it reads), so a re-run skips
finished work and a changed parameter recomputes only what depends on it.

Chunking: row ``k`` covers frames ``[16k, 16k+16)``, seconds ``[16k/fps, 16(k+1)/fps)``; an
incomplete tail chunk is dropped (the published convention), so ``T = floor(frames / 16)``.
"""

from __future__ import annotations

import contextlib
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from .. import __version__
from ..cache import (NpyStreamWriter, atomic_path, atomic_write_json, file_digest, file_identity, intact,
                     read_json, stage_key)
from ..config import DecodeConfig, FeatureConfig, FlowConfig
from ..errors import VideoError, WtalError
from ..layout import DataLayout, safe_name
from ..video import decode, flow
from .weights import WeightsInfo, load_i3d

ProgressFn = Callable[[str, int, int], None]  # (stage, done, total)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise WtalError("--device cuda was asked for but no CUDA GPU is visible", "use --device auto or cpu")
    return torch.device(name)


def cpu_has_native_bf16() -> bool:
    """True on CPUs with AVX512-BF16 or AMX, where bf16 autocast is faster than fp32."""
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_native_bf16() else "fp32"


@dataclass
class I3DPair:
    """The two loaded I3D streams on their device, with how they were loaded."""

    rgb: torch.nn.Module
    flow: torch.nn.Module
    weights: dict[str, WeightsInfo]
    device: torch.device
    precision: str

    @classmethod
    def load(cls, config: FeatureConfig, device: str = "auto") -> "I3DPair":
        dev = resolve_device(device)
        precision = resolve_precision(config.precision, dev)
        rgb, rgb_info = load_i3d("rgb", config.rgb_weights)
        flw, flow_info = load_i3d("flow", config.flow_weights)
        memory_format = torch.channels_last_3d
        rgb, flw = (m.to(dev, memory_format=memory_format) for m in (rgb, flw))
        return cls(rgb, flw, {"rgb": rgb_info, "flow": flow_info}, dev, precision)

    @property
    def is_random(self) -> bool:
        return any(w.is_random for w in self.weights.values())

    def weights_key(self) -> dict:
        return {s: w.sha256 for s, w in self.weights.items()}

    @torch.inference_mode()
    def __call__(self, rgb_u8: np.ndarray, flow_u8: np.ndarray) -> np.ndarray:
        """(B, L, H, W, 3) uint8 frames + (B, L, H, W, 2) uint8 flow -> (B, 2048) float32, RGB first."""
        pin = self.device.type == "cuda"
        rgb = _to_device(rgb_u8, self.device, pin)
        flw = _to_device(flow_u8, self.device, pin)
        rgb = rgb.permute(0, 4, 1, 2, 3).float().div_(127.5).sub_(1.0)  # (B, 3, L, H, W) in [-1, 1]
        flw = flw.permute(0, 4, 1, 2, 3).float().sub_(128.0).div_(127.5).clamp_(-1.0, 1.0)  # (B, 2, L, H, W)
        rgb = rgb.contiguous(memory_format=torch.channels_last_3d)
        flw = flw.contiguous(memory_format=torch.channels_last_3d)
        autocast = (torch.autocast(self.device.type, dtype=torch.bfloat16) if self.precision == "bf16"
                    else contextlib.nullcontext())
        # fp32 means fp32: cuDNN would otherwise silently use TF32 for the convolutions.
        cudnn = torch.backends.cudnn.flags(enabled=True, benchmark=True, allow_tf32=self.precision != "fp32")
        with autocast, cudnn:
            features = torch.cat([self.rgb.features(rgb), self.flow.features(flw)], dim=1)
        return features.float().cpu().numpy()


def _to_device(array: np.ndarray, device: torch.device, pin: bool) -> torch.Tensor:
    tensor = torch.from_numpy(np.array(array))  # a copy: memmaps are read-only
    return tensor.pin_memory().to(device, non_blocking=True) if pin else tensor


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


def ensure_frames(paths: VideoPaths, identity: str, config: DecodeConfig, force: bool = False,
                  progress: ProgressFn | None = None) -> tuple[Path, dict]:
    """Decoded frames (N, crop, crop, 3) uint8 at the target fps, streamed to disk, with what decoding
    saw (coverage of the container's duration, rotation); reused only while intact."""
    key = stage_key("decode", identity, config)
    out, meta_path = paths.layout.frames(paths.stem, key)
    meta = read_json(meta_path)
    if not force and meta is not None and intact(out, meta.get("digest")):
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
    meta = {"key": key, "n_frames": writer.rows, "fps": config.fps, "duration": writer.rows / config.fps,
            "source": asdict(info), "rotation": stats.rotation,
            "coverage": {"decoded_seconds": round(stats.span, 4), "declared_seconds": info.duration,
                         "decoded_frames": stats.source_frames, "declared_frames": info.frames,
                         "missing_seconds": round(stats.missing_seconds(info), 4), "partial": stats.is_partial(info)},
            "digest": digest}
    atomic_write_json(meta_path, meta)
    return out, meta


def ensure_flow(paths: VideoPaths, frames_path: Path, frames_key: str, config: FlowConfig, workers: int,
                force: bool = False, progress: ProgressFn | None = None) -> tuple[Path, str]:
    """Flow (N, H, W, 2) uint8 for the decoded frames; reused only while intact."""
    key = stage_key("flow", frames_key, config)
    out, marker = paths.layout.flow(paths.stem, key)
    record = read_json(marker)
    if not force and record is not None and intact(out, record.get("digest")):
        return out, key
    n_frames = np.load(frames_path, mmap_mode="r").shape[0]
    done = 0

    def step(count: int) -> None:
        nonlocal done
        done += count
        if progress:
            progress("flow", done, n_frames)

    with atomic_path(out) as tmp_flow:
        flow.compute_flow(frames_path, tmp_flow, config, workers, step)
        digest = file_digest(tmp_flow)
    atomic_write_json(marker, {"key": key, "frames_key": frames_key, "n_frames": n_frames,
                               "preset": config.preset, "params": config.params, "bound": config.bound,
                               "storage": "uint8 round(128 + clip(f, -bound, bound) * 127.5 / bound)",
                               "digest": digest})
    return out, key


def features_from_arrays(frames: np.ndarray, flows: np.ndarray, model: I3DPair, chunk: int,
                         batch_size: int, progress: ProgressFn | None = None) -> np.ndarray:
    """(N, H, W, 3) frames + (N, H, W, 2) flow (memmaps welcome) -> (floor(N / chunk), 2048)."""
    n_chunks = frames.shape[0] // chunk
    rows = np.zeros((n_chunks, 2 * 1024), np.float32)
    for start in range(0, n_chunks, batch_size):
        stop = min(n_chunks, start + batch_size)
        span = slice(start * chunk, stop * chunk)
        shape = (stop - start, chunk)
        rows[start:stop] = model(frames[span].reshape(*shape, *frames.shape[1:]),
                                 flows[span].reshape(*shape, *flows.shape[1:]))
        if progress:
            progress("features", stop, n_chunks)
    return rows


def library_versions() -> dict:
    import av
    import cv2

    return {"wtal_pipe": __version__, "torch": torch.__version__, "av": av.__version__,
            "opencv": cv2.__version__, "numpy": np.__version__, "python": platform.python_version()}


def extract_video(video: Path, data_dir: Path, model: I3DPair, decode_config: DecodeConfig,
                  flow_config: FlowConfig, feature_config: FeatureConfig, workers: int,
                  force: bool = False, progress: ProgressFn | None = None,
                  allow_partial: bool = False) -> tuple[str, Path]:
    """Run (or reuse) every stage for one video; returns ("cached" | "done", features path).

    Every stage output is reused only when its recorded size and sha256 still match (a damaged or
    truncated cache is recomputed); ``force`` recomputes every stage. A video that decodes short of
    what its container declares, or to less than one chunk, is a VideoError (``allow_partial`` keeps
    the features of a partial one, with its coverage in the provenance).
    """
    paths = VideoPaths(Path(video), DataLayout(Path(data_dir)))
    try:
        identity = file_identity(paths.video)
    except FileNotFoundError as exc:
        raise VideoError("file not found", "check the path", paths.video) from exc
    except OSError as exc:
        raise VideoError(f"cannot be read ({exc.strerror or exc.__class__.__name__})",
                         "check its permissions, or remove it", paths.video) from exc
    frames_key = stage_key("decode", identity, decode_config)
    flow_key = stage_key("flow", frames_key, flow_config)
    feature_key = stage_key("features", flow_key, feature_config.chunk, model.precision, model.weights_key())
    meta = read_json(paths.metadata)
    previous = Path(str(meta.get("video", ""))) if meta else None
    if (not force and previous and meta.get("video_fingerprint") != identity
            and previous != paths.video.resolve()):  # another file with the same stem (a.mp4 then a.mkv)
        raise VideoError(f"{paths.features.name} already holds the features of {previous}",
                         "rename one of the two videos, or pass --force to replace them", paths.video)
    if (not force and meta is not None and meta.get("cache_key") == feature_key
            and intact(paths.features, meta.get("digest"))):
        return "cached", paths.features

    frames_path, frames_meta = ensure_frames(paths, identity, decode_config, force, progress)
    coverage = frames_meta["coverage"]
    if coverage["partial"] and not allow_partial:
        raise VideoError(f"decoded only {coverage['decoded_seconds']:.2f} of {coverage['declared_seconds'] or 0:.2f} s "
                         "the container declares (truncated or corrupt?)",
                         "re-encode it, or pass --allow-partial to keep what decodes", paths.video)
    if frames_meta["n_frames"] < feature_config.chunk:
        raise VideoError(f"only {frames_meta['n_frames']} frame(s) at {decode_config.fps:g} fps, fewer than one "
                         f"{feature_config.chunk}-frame feature row", "remove it, or use longer clips", paths.video)
    flow_path, _ = ensure_flow(paths, frames_path, frames_key, flow_config, workers, force, progress)
    frames = np.load(frames_path, mmap_mode="r")
    flows = np.load(flow_path, mmap_mode="r")
    rows = features_from_arrays(frames, flows, model, feature_config.chunk, feature_config.batch_size,
                                progress)
    with atomic_path(paths.features) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, rows)
        digest = file_digest(tmp)
    source = frames_meta["source"]
    atomic_write_json(paths.metadata, {
        "cache_key": feature_key,
        "frames_key": frames_key,
        "flow_key": flow_key,
        "video": str(paths.video.resolve()),
        "video_fingerprint": identity,
        "shape": list(rows.shape),
        "digest": digest,
        "layout": "row k = frames [k*chunk, (k+1)*chunk) at fps; columns [0:1024] RGB I3D, [1024:2048] flow I3D",
        "fps": decode_config.fps,
        "chunk": feature_config.chunk,
        "seconds_per_row": feature_config.chunk / decode_config.fps,
        "n_frames": frames_meta["n_frames"],
        "duration": frames_meta["duration"],
        "tail_frames_dropped": frames_meta["n_frames"] % feature_config.chunk,
        "coverage": coverage,
        "rotation": frames_meta["rotation"],
        "source": {"width": source["width"], "height": source["height"], "fps": source["source_fps"],
                   "duration": source["duration"], "codec": source["codec"]},
        "decode": asdict(decode_config) | {"resize": "bilinear short side, centre crop",
                                           "rgb_scale": "x / 127.5 - 1"},
        "flow": {"preset": flow_config.preset, "params": flow_config.params, "bound": flow_config.bound,
                 "scale": "clip(f, -bound, bound) / bound, stored as uint8"},
        "weights": {s: (w.sha256 if w.is_random else {"path": w.path, "sha256": w.sha256, "layout": w.layout})
                    for s, w in model.weights.items()},
        "random_weights": model.is_random,
        "precision": model.precision,
        "device": str(model.device),
        "versions": library_versions(),
    })
    return "done", paths.features


def find_videos(inputs: Iterable[str | Path], extensions: tuple[str, ...]) -> list[Path]:
    """Expand folders (recursively, by extension) and keep files as given, in a stable order."""
    videos: list[Path] = []
    for item in map(Path, inputs):
        if not item.exists():
            raise WtalError("no such file or folder", "check the path", item)
        if item.is_dir():
            videos += sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
        else:
            videos.append(item)
    stems: dict[str, Path] = {}
    for video in videos:
        if video.stem in stems and stems[video.stem] != video:
            raise WtalError(f"two videos share the name {video.stem!r} ({stems[video.stem]} and {video})",
                            "features are keyed by file stem; rename one", video)
        stems[video.stem] = video
    return list(stems.values())


VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")


@dataclass
class ExtractOutcome:
    video: Path
    status: str  # "done" | "cached" | "failed"
    features: Path | None = None
    error: str | None = None


def extract_all(videos: list[Path], data_dir: Path, model: I3DPair, decode_config: DecodeConfig,
                flow_config: FlowConfig, feature_config: FeatureConfig, workers: int, force: bool = False,
                progress: ProgressFn | None = None, on_result: Callable[[ExtractOutcome], None] | None = None,
                allow_partial: bool = False) -> list[ExtractOutcome]:
    """Extract every video; a video that fails (a WtalError) is recorded and the rest go on."""
    from ..cache import sweep_stale_tmp

    if Path(data_dir).exists():
        sweep_stale_tmp(data_dir)
    outcomes = []
    for video in videos:
        try:
            status, path = extract_video(video, data_dir, model, decode_config, flow_config, feature_config,
                                         workers, force, progress, allow_partial)
            outcome = ExtractOutcome(video, status, path)
        except WtalError as exc:
            outcome = ExtractOutcome(video, "failed", error=exc.one_line())
        outcomes.append(outcome)
        if on_result:
            on_result(outcome)
    return outcomes
