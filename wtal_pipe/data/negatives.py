"""CMCS hard negatives: static stretches of training videos become background-only pseudo videos.

As the official CMCS tool (``tools/get_flow_intensity_anet.py``) and loader (``__load_background``):
per frame, the mean magnitude of the 8-bit flow decoded as ``u8 * 2 / 255 - 1``; ``log(x + 1e-7)``;
frames strictly below the ``ratio`` percentile are static; a median filter of ``2 int(fps) - 1``
frames (zero-padded, as ``scipy.signal.medfilt``); static runs shorter than ``2 int(fps)`` frames are
dropped (a run that reaches the last frame is measured one frame short and keeps its last frame, as
the official loop does); a video whose static share falls outside [0.05, 0.30] is skipped. Feature
rows whose first frame is static, in time order, form ``<vid>_bg`` (``--whole-chunk``: only rows whose
frames are all static).

Without a flow cache (imported features) ``from_features=True`` ranks rows by the norm of the flow
half of each feature instead - an approximation, labelled as such in the output.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from scipy.signal import medfilt

from ..cache import atomic_save_npy, atomic_write_json, file_digest, file_identity, read_json, reusable, stage_key
from ..errors import DataError, WtalError
from ..features.plan import video_cache
from ..features.provenance import Provenance
from ..intervals import runs
from ..layout import DataLayout
from .annotations import load_annotations
from .dataset import read_feature_rows
from .timing import declared_timing

RULES = "cmcs-official-1"  # keys the cache: cached negatives of an earlier rule are recomputed


@dataclass(frozen=True)
class NegativesConfig:
    ratio: float = 0.25  # lowest share of each video's frames (by log flow intensity) taken as static
    min_static: float = 0.05  # skip videos whose final static share is below this ...
    max_static: float = 0.30  # ... or above this
    whole_chunk: bool = False  # a feature row is static only when all its frames are (official: its first frame)
    from_features: bool = False  # approximate from the flow half of the features (no flow cache)

    def __post_init__(self):
        if not 0 < self.ratio < 1:
            raise WtalError(f"--ratio must lie in (0, 1), got {self.ratio}")


def flow_intensity(flow_u8: np.ndarray, block: int = 256) -> np.ndarray:
    """Per frame, the mean over pixels of the flow magnitude, the 8-bit flow decoded as the official tool
    decodes its flow images (``u8 * 2 / 255 - 1``). Reads ``block`` frames at a time."""
    intensity = np.empty(flow_u8.shape[0])
    for start in range(0, flow_u8.shape[0], block):
        flow = np.asarray(flow_u8[start : start + block], np.float64) * 2 / 255 - 1  # (n, H, W, 2)
        intensity[start : start + block] = np.sqrt(flow[..., 0] ** 2 + flow[..., 1] ** 2).mean(axis=(1, 2))
    return intensity


def static_mask(intensity: np.ndarray, ratio: float, fps: float) -> np.ndarray:
    """Boolean mask of static positions from per-position motion intensities (see the module docstring)."""
    log_intensity = np.log(np.asarray(intensity, np.float64) + 1e-7)
    static = (log_intensity < np.percentile(log_intensity, 100 * ratio)).astype(np.float64)
    filtered = medfilt(static, kernel_size=2 * int(fps) - 1) > 0
    min_run = 2 * int(fps)
    for start, end in runs(filtered):
        if end == filtered.size - 1:  # the official loop measures a final run to its last index
            if end - start < min_run:
                filtered[start:end] = False
        elif end + 1 - start < min_run:
            filtered[start : end + 1] = False
    return filtered


@dataclass
class NegativeResult:
    vid: str
    status: Literal["written", "cached", "skipped"]
    reason: str = ""
    rows: int = 0


@dataclass(frozen=True)
class Motion:
    """A video's motion intensity per position (frame, or row), with what it was measured on."""

    intensity: np.ndarray
    fps: float  # positions per second
    per_row: int  # positions per feature row
    source: str  # in words, for the record
    upstream: str | None  # the flow cache key it was read from


def motion(layout: DataLayout, vid: str, features: np.ndarray, from_features: bool) -> Motion:
    """Per frame from the video's flow cache, or (``from_features``) per row from the flow half of its
    features, an approximation for imported features."""
    provenance = Provenance.read(layout.features(vid))
    if from_features:
        flow_half = np.asarray(features[:, features.shape[1] // 2 :], np.float32)
        timing = declared_timing(layout.features(vid), layout)
        if timing.whole_video:
            raise DataError(f"video {vid}: whole-video rows have no fixed time step", "hard negatives need timed rows")
        rows_per_second = 1 / timing.seconds_per_step()
        return Motion(np.linalg.norm(flow_half, axis=1), rows_per_second, 1, "flow-feature norm (approximation)", None)
    flow_key = provenance.keys.get("flow")
    path = video_cache(layout, vid).flow(str(flow_key)).data
    if not flow_key or not path.exists():
        raise DataError(
            f"no flow cache for video {vid} (imported features?)",
            "re-run with --from-features to rank chunks by flow-feature magnitude (an approximation)",
            layout.cache(vid),
        )
    extraction = provenance.extraction
    assert extraction is not None  # a flow cache key comes with its extraction settings
    intensity = flow_intensity(np.load(path, mmap_mode="r"))
    source = f"8-bit {extraction.flow.preset} flow intensity per frame (flow cache)"
    return Motion(intensity, extraction.decode.fps, extraction.features.chunk, source, flow_key)


def static_rows(mask: np.ndarray, per_row: int, n_rows: int, whole_chunk: bool) -> np.ndarray:
    """Indices of the feature rows a static mask makes hard negatives: rows whose first position is static
    (the official rule), or (``whole_chunk``) rows whose positions all are."""
    n_rows = min(n_rows, -(-mask.size // per_row))
    if whole_chunk:
        n_rows = min(n_rows, mask.size // per_row)
        return np.flatnonzero(mask[: n_rows * per_row].reshape(n_rows, per_row).all(axis=1))
    return np.flatnonzero(mask[::per_row][:n_rows])


def build_negative(layout: DataLayout, vid: str, config: NegativesConfig) -> NegativeResult:
    """One training video's pseudo video (or why it has none), reused while its inputs are unchanged."""
    features_path = layout.features(vid)
    features = read_feature_rows(features_path, f"run wtal extract on the video {vid}")
    out, marker, mask_path = layout.negative(vid)
    moving = motion(layout, vid, features, config.from_features)
    key = stage_key("negatives", RULES, config, file_identity(features_path), moving.upstream)
    previous = read_json(marker)
    if isinstance(previous, dict) and previous.get("key") == key and (previous.get("skipped") or reusable(out, marker)):
        status: Literal["skipped", "cached"] = "skipped" if previous.get("skipped") else "cached"
        return NegativeResult(vid, status, previous.get("reason", ""), previous.get("rows", 0))
    mask = static_mask(moving.intensity, config.ratio, moving.fps)
    share = float(mask.mean())
    record = {
        "key": key,
        "source_video": vid,
        "source": moving.source,
        "config": asdict(config),
        "static_share": share,
        "timing": declared_timing(features_path, layout).to_dict(),
        "labels": "background only",
    }
    rows = static_rows(mask, moving.per_row, features.shape[0], config.whole_chunk)
    reason = ""
    if not config.min_static <= share <= config.max_static:
        reason = f"static share {share:.3f} outside [{config.min_static}, {config.max_static}]"
    elif rows.size == 0:
        reason = "no static feature row"
    if reason:
        out.unlink(missing_ok=True)
        atomic_write_json(marker, {**record, "skipped": True, "reason": reason})
        return NegativeResult(vid, "skipped", reason)
    atomic_save_npy(mask_path, mask)
    atomic_save_npy(out, np.asarray(features[rows], np.float32))
    mask_file = f"{mask_path.name} (per {'row' if moving.per_row == 1 else 'frame'})"
    extra = {"rows": int(rows.size), "source_rows": rows.tolist(), "digest": file_digest(out), "mask_file": mask_file}
    atomic_write_json(marker, {**record, **extra})
    return NegativeResult(vid, "written", rows=int(rows.size))


def build_negatives(
    data_dir: str | Path,
    subset: str = "train",
    config: NegativesConfig = NegativesConfig(),
    annotations: str | Path | None = None,
) -> list[NegativeResult]:
    """Hard negatives for every video of ``subset`` (training videos only: they are training data)."""
    layout = DataLayout(Path(data_dir))
    source = Path(annotations) if annotations else layout.annotations
    database = load_annotations(source)
    videos = [vid for vid, v in database.items() if v.get("subset") == subset]
    if not videos:
        raise DataError(f"no videos in subset {subset!r}", "check --subset", source)
    for vid in videos:  # every id is checked before anything is written
        layout.negative(vid, source=source)
    return [build_negative(layout, vid, config) for vid in videos]
