"""``wtal features compare A B``: how two feature sets of the same videos differ, and why.

Per video present in both folders: the shapes; the row alignment (B rows per A row and a shift), from the
records' timings when both place their rows, else searched; after alignment the per-row cosine and relative
error, for the whole row and for each stream half (RGB first, flow second, as I3D rows are laid out); the
settings the two provenance records give differently; and a one-line verdict naming the likeliest cause.
A release imported with ``wtal import`` carries no extraction record: then the numbers alone speak (which
stream differs, whether rows shift or come at another rate).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..features.provenance import Provenance
from .dataset import read_feature_rows

SAME = 1e-6  # relative error under which two rows are the same (float32 sums of the same inputs)
CLOSE = 1e-2  # relative error under which rows match up to rounding (another GPU, library version, precision)
RATIOS = (0.25, 0.5, 1.0, 2.0, 4.0)  # B rows per A row tried when the records do not say
OFFSETS = range(-4, 5)  # B rows tried around the aligned position
CAUSES = ("same", "close", "shifted", "rate", "flow", "rgb", "both", "width")


@dataclass(frozen=True)
class Agreement:
    """How aligned rows (or one stream's part of them) agree."""

    cosine: float  # mean over rows
    min_cosine: float
    relative_error: float  # max over rows of |a - b| / |a|: unlike the cosine, it sees a change of scale

    @classmethod
    def of(cls, a: np.ndarray, b: np.ndarray) -> Agreement:
        cosine = _cosines(a, b)
        error = np.linalg.norm(a - b, axis=1) / np.maximum(np.linalg.norm(a, axis=1), 1e-12)
        return cls(float(cosine.mean()), float(cosine.min()), float(error.max()))


@dataclass
class VideoComparison:
    """One video in both folders."""

    video: str
    shapes: tuple[list[int], list[int]]
    rows_per_row: float  # B rows per A row in the best alignment
    offset: float  # B rows the alignment is shifted by (a fraction where the records place rows between B's)
    rows: Agreement | None  # whole rows after alignment (None: rows of another width)
    rgb: Agreement | None  # the first and second halves of the rows (I3D: RGB, flow)
    flow: Agreement | None
    settings: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # differing recorded settings: (A, B)
    cause: str = ""  # one of CAUSES
    verdict: str = ""  # the cause in a sentence, with the numbers and the recorded settings that differ


def compare_folders(first: Path, second: Path) -> list[VideoComparison]:
    """Every video both folders hold (``<vid>.npy``), compared; a folder without feature files is an error."""
    files = [{p.stem: p for p in sorted(Path(folder).glob("*.npy"))} for folder in (first, second)]
    for folder, found in zip((first, second), files, strict=True):
        if not found:
            raise DataError("holds no <video>.npy feature files", "pass a features folder (DATA_DIR/features)", folder)
    shared = sorted(set(files[0]) & set(files[1]))
    if not shared:
        raise DataError(
            f"no video is in both {first} and {second}", "compare features of the same videos (same names)", second
        )
    return [compare_video(files[0][vid], files[1][vid]) for vid in shared]


def compare_video(a_path: Path, b_path: Path) -> VideoComparison:
    a = np.asarray(read_feature_rows(a_path), np.float64)
    b = np.asarray(read_feature_rows(b_path), np.float64)
    found = VideoComparison(a_path.stem, (list(a.shape), list(b.shape)), 1.0, 0, None, None, None)
    found.settings = _differing_settings(Provenance.read(a_path), Provenance.read(b_path))
    if a.shape[1] == b.shape[1]:  # else nothing to align: rows of another width are another model or layout
        recorded = _recorded_alignment(a_path, b_path)
        found.rows_per_row, found.offset = recorded or _searched_alignment(a, b)
        pairs_a, pairs_b = _pairs(a, b, found.rows_per_row, found.offset)
        found.rows = Agreement.of(pairs_a, pairs_b)
        if a.shape[1] % 2 == 0:
            half = a.shape[1] // 2
            found.rgb, found.flow = (Agreement.of(pairs_a[:, s], pairs_b[:, s]) for s in _halves(half))
    found.cause, found.verdict = diagnose(found)
    return found


def diagnose(found: VideoComparison) -> tuple[str, str]:
    """The likeliest cause (one of CAUSES) and a one-line verdict: the cause, then the recorded settings that
    differ."""
    differing = ", ".join(f"{name} {a} vs {b}" for name, (a, b) in found.settings.items())
    recorded = f"; the records differ in {differing}" if differing else ""
    (rows_a, dim_a), (rows_b, dim_b) = found.shapes
    if found.rows is None:
        return "width", f"not comparable: {dim_a}-d vs {dim_b}-d rows{recorded}"
    error, aligned = found.rows.relative_error, found.rows_per_row == 1
    counts = "" if rows_a == rows_b else f" on the rows both have ({rows_a} vs {rows_b} rows)"
    if aligned and found.offset == 0 and error <= CLOSE:
        if error <= SAME:
            return "same", f"same up to {SAME:g}{counts}{recorded}"
        return "close", (
            f"same up to rounding (relative error {error:.1e}){counts}: same settings, another device, precision or "
            f"library version{recorded}"
        )
    if aligned and found.offset and error <= CLOSE:
        return "shifted", f"rows shifted by {found.offset:g} (B's row k + {found.offset:g} is A's row k){recorded}"
    if not aligned:
        return "rate", (
            f"rows at another rate: {found.rows_per_row:g} of B's per A row (another stride or frame rate), "
            f"mean cosine {found.rows.cosine:.3f} after aligning{recorded}"
        )
    shift = f" (rows also shifted by {found.offset:g})" if found.offset else ""
    if found.rgb is not None and found.flow is not None:
        rgb, flow = found.rgb, found.flow
        if rgb.relative_error <= CLOSE < flow.relative_error:
            return "flow", (
                f"RGB stream matches, flow differs (relative error {flow.relative_error:.2f}, cosine "
                f"{flow.cosine:.3f}){shift}: another flow algorithm, its parameters or its clipping{recorded}"
            )
        if flow.relative_error <= CLOSE < rgb.relative_error:
            return "rgb", (
                f"flow stream matches, RGB differs (relative error {rgb.relative_error:.2f}, cosine "
                f"{rgb.cosine:.3f}){shift}: another RGB scaling or colour order{recorded}"
            )
    return "both", (
        f"both streams differ (relative error {error:.2f}, cosine {found.rows.cosine:.3f}){shift}: another "
        f"frame size, crop, frame rate or weights{recorded}"
    )


def _halves(half: int) -> tuple[slice, slice]:
    return slice(None, half), slice(half, None)


def _searched_alignment(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(B rows per A row, offset in B rows) under which the rows, or one stream's half of them, change over
    time most alike (a stream that matches pins the alignment even when the other differs); ties go to no
    shift, then to the rate nearest 1."""
    parts = [slice(None), *(_halves(a.shape[1] // 2) if a.shape[1] % 2 == 0 else ())]
    centred = [_centred(x) for x in (a, b)]

    def score(candidate: tuple[float, float]) -> tuple[float, float, float]:
        best = max(_aligned_cosine(centred[0][:, part], centred[1][:, part], *candidate) for part in parts)
        return round(best, 6), -abs(candidate[1]), -abs(np.log(candidate[0]))

    return max(((ratio, float(offset)) for ratio in RATIOS for offset in OFFSETS), key=score)


def _recorded_alignment(a_path: Path, b_path: Path) -> tuple[float, float] | None:
    """(B rows per A row, offset in B rows) from the two records' timings, when both place their rows: row k
    is centred at ``(k * stride + frames_per_row / 2) / fps`` seconds."""
    from .timing import own_timing

    timings = [own_timing(path) for path in (a_path, b_path)]
    if any(t is None or t.whole_video for t in timings):
        return None
    (a_step, a_centre), (b_step, b_centre) = (
        (t.seconds_per_step(), t.frames_per_row / 2 / t.fps)
        for t in timings
        if t is not None and t.frames_per_row is not None and t.fps is not None
    )
    return a_step / b_step, (a_centre - b_centre) / b_step


def _pairs(a: np.ndarray, b: np.ndarray, ratio: float, offset: float) -> tuple[np.ndarray, np.ndarray]:
    """A's rows and the B rows they align with: B row ``round(k * ratio + offset)`` for A row k."""
    index = np.round(np.arange(len(a)) * ratio + offset).astype(np.int64)
    keep = (index >= 0) & (index < len(b))
    return a[keep], b[index[keep]]


def _centred(rows: np.ndarray) -> np.ndarray:
    """Rows less their video's mean row: what stays is how rows change over time, which pins the alignment
    (features of one video share a large common part, random-weight ones most of all). Under 3 rows: as is."""
    return rows - rows.mean(axis=0) if len(rows) >= 3 else rows


def _aligned_cosine(a: np.ndarray, b: np.ndarray, ratio: float, offset: float) -> float:
    """Mean cosine of the aligned pairs; -1 when they cover under half of A's rows (a shift that keeps two
    rows of a short video would otherwise win by chance)."""
    pairs_a, pairs_b = _pairs(a, b, ratio, offset)
    if len(pairs_a) < max(min(2, len(a)), len(a) / 2):
        return -1.0
    return float(_cosines(pairs_a, pairs_b).mean())


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    both_zero = np.abs(a - b).max(axis=1) == 0
    return np.where(norms > 0, (a * b).sum(axis=1) / np.maximum(norms, 1e-300), both_zero.astype(float))


def _differing_settings(a: Provenance, b: Provenance) -> dict[str, tuple[Any, Any]]:
    """The extraction settings two records give differently (weights by the name or path given), and the
    source video's content fingerprint when both records have one and they differ (another encode of it)."""
    differing: dict[str, tuple[Any, Any]] = {}
    if a.fingerprint and b.fingerprint and a.fingerprint != b.fingerprint:
        differing["video fingerprint"] = (a.fingerprint[:12], b.fingerprint[:12])
    if a.extraction is None or b.extraction is None:
        return differing
    flat = [_flat(p.extraction.to_dict()) for p in (a, b) if p.extraction is not None]
    names = sorted(set(flat[0]) | set(flat[1]))
    return differing | {k: (flat[0].get(k), flat[1].get(k)) for k in names if flat[0].get(k) != flat[1].get(k)}


def _flat(record: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for group, values in record.items():
        if isinstance(values, dict):
            out |= {k: v for k, v in values.items() if k not in ("params", "batch_size")}
        else:
            out[group] = values
    if "chunk" in out:
        out["stride"] = out.get("stride") or out["chunk"]  # no stride recorded: rows follow one another
    return out


def markdown(found: list[VideoComparison], first: Path, second: Path) -> str:
    counts = Counter(v.cause for v in found)
    lines = [
        f"A = `{first}`, B = `{second}`: {len(found)} video(s) in both: "
        + ", ".join(f"{counts[cause]} {cause}" for cause in CAUSES if counts[cause])
        + ".",
        "",
        "| video | shapes (A, B) | B rows per A row, offset | cosine mean / min | RGB / flow cosine | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for v in found:
        rows = f"{v.rows.cosine:.4f} / {v.rows.min_cosine:.4f}" if v.rows else "-"
        streams = f"{v.rgb.cosine:.4f} / {v.flow.cosine:.4f}" if v.rgb and v.flow else "-"
        lines.append(
            f"| {v.video} | {v.shapes[0]} {v.shapes[1]} | {v.rows_per_row:g}, {v.offset:+g} | {rows} | {streams} | "
            f"{v.verdict} |"
        )
    return "\n".join(lines) + "\n"


def to_json(found: list[VideoComparison]) -> str:
    return json.dumps([asdict(v) for v in found], indent=2, default=str) + "\n"
