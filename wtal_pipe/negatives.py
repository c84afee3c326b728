"""CMCS hard negatives: static stretches of training videos become background-only pseudo videos.

Per frame: mean TV-L1 flow magnitude (from the flow cache), log(x + 1e-7); the lowest ``ratio`` of a
video is static; a median filter over ``2 * fps - 1`` frames smooths the mask; static runs shorter
than ``2 * fps`` frames are dropped; a video whose static share falls outside [0.05, 0.30] is skipped.
The feature rows whose 16 frames are all static, in time order, form ``<vid>_bg``.

Why matching rows rather than re-extracting from the static frames: a row whose frames are all static
is exactly what re-extraction of those frames computes, while concatenating static frames from
different stretches would create cuts whose fake motion the flow stream would encode.

Without a flow cache (imported features) ``from_features=True`` ranks rows by the norm of the flow
half of each feature instead - an approximation, labelled as such in the output.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import median_filter

from .cache import atomic_save_npy, atomic_write_json, file_identity, read_json, stage_key
from .data.dataset import load_annotations, seconds_per_row
from .errors import DataError, WtalError


@dataclass(frozen=True)
class NegativesConfig:
    ratio: float = 0.25  # lowest share of each video's frames (by log flow magnitude) taken as static
    min_static: float = 0.05  # skip videos whose final static share is below this ...
    max_static: float = 0.30  # ... or above this
    from_features: bool = False  # approximate from the flow half of the features (no flow cache)

    def __post_init__(self):
        if not 0 < self.ratio < 1:
            raise WtalError(f"--ratio must lie in (0, 1), got {self.ratio}")


def static_mask(magnitude: np.ndarray, ratio: float, window: int, min_run: int) -> np.ndarray:
    """Boolean mask of static positions from per-position motion magnitudes."""
    log_magnitude = np.log(np.asarray(magnitude, np.float64) + 1e-7)
    mask = log_magnitude <= np.quantile(log_magnitude, ratio)
    window = max(1, window | 1)  # odd
    mask = median_filter(mask.astype(np.uint8), size=window, mode="nearest").astype(bool)
    padded = np.concatenate([[False], mask, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    for start, end in zip(edges[::2], edges[1::2]):
        if end - start < min_run:
            mask[start:end] = False
    return mask


@dataclass
class NegativeResult:
    vid: str
    status: str  # "written" | "cached" | "skipped"
    reason: str = ""
    rows: int = 0


def _flow_magnitude(data_dir: Path, vid: str) -> tuple[np.ndarray, dict]:
    meta = read_json(data_dir / "features" / f"{vid}.json") or {}
    flow_key = meta.get("flow_key")
    path = data_dir / "cache" / vid / f"flowmag-{flow_key}.npy"
    if not flow_key or not path.exists():
        raise DataError(f"no flow cache for video {vid} (imported features?)",
                        "re-run with --from-features to rank chunks by flow-feature magnitude (an approximation)",
                        data_dir / "cache" / vid)
    return np.load(path), meta


def build_negative(data_dir: Path, vid: str, config: NegativesConfig) -> NegativeResult:
    features_path = data_dir / "features" / f"{vid}.npy"
    features = np.load(features_path, mmap_mode="r")
    out = data_dir / "negatives" / f"{vid}_bg.npy"
    marker = out.with_suffix(".json")
    spr = seconds_per_row(features_path)
    if config.from_features:
        flow_half = np.asarray(features[:, features.shape[1] // 2:], np.float32)
        magnitude, fps, chunk, source = np.linalg.norm(flow_half, axis=1), 1 / spr, 1, "flow-feature norm (approximation)"
        upstream = None
    else:
        magnitude, meta = _flow_magnitude(data_dir, vid)
        fps, chunk, source = meta["fps"], meta["chunk"], "TV-L1 flow magnitude per frame (flow cache)"
        upstream = meta["flow_key"]
    key = stage_key("negatives", config, file_identity(features_path), upstream)
    previous = read_json(marker)
    if previous is not None and previous.get("key") == key:
        return NegativeResult(vid, "cached" if out.exists() else "skipped", previous.get("reason", ""),
                              previous.get("rows", 0))
    window, min_run = int(round(2 * fps)) - 1, int(np.ceil(2 * fps))
    mask = static_mask(magnitude, config.ratio, window, min_run)
    share = float(mask.mean())
    record = {"key": key, "source_video": vid, "source": source, "config": asdict(config), "static_share": share,
              "seconds_per_row": spr, "labels": "background only"}
    n_rows = min(features.shape[0], mask.size // chunk)
    rows = np.flatnonzero(mask[: n_rows * chunk].reshape(n_rows, chunk).all(axis=1))
    reason = ""
    if not config.min_static <= share <= config.max_static:
        reason = f"static share {share:.3f} outside [{config.min_static}, {config.max_static}]"
    elif rows.size == 0:
        reason = "no chunk entirely static"
    if reason:
        out.unlink(missing_ok=True)
        atomic_write_json(marker, {**record, "skipped": True, "reason": reason})
        return NegativeResult(vid, "skipped", reason)
    atomic_save_npy(out.with_name(f"{vid}_bg.mask.npy"), mask)
    atomic_save_npy(out, np.asarray(features[rows], np.float32))
    atomic_write_json(marker, {**record, "rows": int(rows.size), "source_rows": rows.tolist(),
                               "mask_file": f"{vid}_bg.mask.npy (per {'row' if chunk == 1 else 'frame'})"})
    return NegativeResult(vid, "written", rows=int(rows.size))


def build_negatives(data_dir: str | Path, subset: str = "train", config: NegativesConfig = NegativesConfig(),
                    annotations: str | Path | None = None) -> list[NegativeResult]:
    """Hard negatives for every video of ``subset`` (training videos only: they are training data)."""
    data_dir = Path(data_dir)
    database = load_annotations(annotations or data_dir / "annotations.json")
    videos = [vid for vid, v in database.items() if v.get("subset") == subset]
    if not videos:
        raise DataError(f"no videos in subset {subset!r}", "check --subset", data_dir / "annotations.json")
    return [build_negative(data_dir, vid, config) for vid in videos]
