"""Public feature releases -> DATA_DIR: the W-TALC layout (THUMOS14 and ActivityNet 1.2 I3D features most WTAL
repositories train on) and per-video ``.npy`` releases with an ActivityNet annotation file (1.3).

W-TALC (``sujoyp/wtalc-pytorch``, ``video_dataset.py`` and ``detectionMAP.py`` read it)::

    <Name>-I3D-JOINTFeatures.npy     object array: one (T, 2048) float array per video (RGB | flow)
    <Name>-Annotations/videoname.npy  bytes, one per video          subset.npy    bytes ("validation", "test", ...)
                      labels_all.npy  the video's labels (list)     duration.npy  seconds, (N, 1)
                      segments.npy    [[start, end], ...] seconds   labels.npy    the label of each segment
                      classlist.npy   bytes, the class order

Rows are 16-frame chunks at 25 fps (``detectionMAP.py``: ``factor = 25 / 16`` for I3D). Its object arrays are
pickles, read with ``safe_npy`` (nothing in them runs). Every file is checked before anything is written; videos
the annotations list but the release lacks (ActivityNet videos vanish from YouTube) are counted and named in
the summary, never fatal.
"""

from __future__ import annotations

import filecmp
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..cache import atomic_path, atomic_save_npy, atomic_write_json, atomic_write_text, read_json
from ..errors import DataError
from ..layout import DataLayout, safe_name
from .annotations import load_annotations
from .dataset import checked_rows, first_nonfinite_row, read_feature_rows
from .safe_npy import as_text, load_npy
from .timing import I3D_TIMING, FeatureTiming, own_timing

WTALC_FILES = ("videoname", "subset", "labels_all", "segments", "duration", "classlist")


@dataclass
class Imported:
    """What an import wrote, and what it could not."""

    data_dir: Path
    videos: int
    subsets: dict[str, int]
    classes: int | None = None
    missing: list[str] = field(default_factory=list)  # annotated, but the release has no features for them
    unlisted: list[str] = field(default_factory=list)  # features without an annotation entry: not imported
    unlabelled: int = 0  # annotation entries without labels (ActivityNet "testing"): left out
    copied: int | None = None  # feature files copied (the others were there already, the same bytes)
    declared: int | None = None  # feature files timed by the dataset's declaration (no record of their own)

    def summary(self) -> str:
        counts = ", ".join(f"{n} {subset}" for subset, n in sorted(self.subsets.items()))
        lines = [f"imported {self.videos} videos into {self.data_dir}" + (f" ({counts})" if counts else "")]
        if self.classes is not None:
            lines[0] += f", {self.classes} classes"
        if self.missing:
            lines.append(
                f"note: {len(self.missing)} annotated videos have no features in the release: {_few(self.missing)}"
            )
        if self.unlisted:
            few = _few(self.unlisted)
            lines.append(f"note: {len(self.unlisted)} feature files have no annotation entry, not imported: {few}")
        if self.unlabelled:
            lines.append(f"note: {self.unlabelled} annotation entries have no labels (withheld test labels), left out")
        if self.copied is not None and self.copied < self.videos:
            lines.append(f"note: {self.videos - self.copied} were there already with the same bytes, left as they are")
        if self.declared is not None and self.declared < self.videos:
            lines.append(f"note: {self.videos - self.declared} keep the timing their own record gives")
        return "\n".join(lines)


def _few(names: list[str]) -> str:
    return ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")


def refuse_existing_dataset(layout: DataLayout, force: bool) -> None:
    """An import writes a new annotations.json over an existing dataset's only with ``force``."""
    if layout.annotations.exists() and not force:
        raise DataError(
            "already holds a dataset", "pass --force to import over it, or another --data", layout.annotations
        )


def import_wtalc(source: Path, data_dir: Path, name: str | None = None, force: bool = False) -> Imported:
    """A W-TALC release folder (``<Name>-I3D-JOINTFeatures.npy`` and ``<Name>-Annotations/``) -> DATA_DIR:
    features (I3D timing), annotations.json with the release's subsets and segments, classes.txt."""
    source, layout = Path(source), DataLayout(Path(data_dir))
    features_path = _wtalc_features(source, name)
    prefix = features_path.name.removesuffix("-I3D-JOINTFeatures.npy")
    folder = source / f"{prefix}-Annotations"
    if not folder.is_dir():
        raise DataError(f"no {folder.name}/ beside the features", "pass the release folder as downloaded", source)
    refuse_existing_dataset(layout, force)
    release = _WtalcRelease.read(folder, features_path)
    database, rows_of = {}, {}
    for i in range(release.count):
        vid, entry, rows = release.video(i)
        database[vid], rows_of[vid] = entry, rows
    dims = {rows.shape[1] for rows in rows_of.values()}
    if len(dims) > 1:
        raise DataError(f"videos of {sorted(dims)} feature sizes", "use one release", features_path)
    refuse_replacing([layout.features(vid) for vid in rows_of], force)
    for vid, rows in rows_of.items():
        atomic_save_npy(layout.features(vid), rows)
        record = {
            "imported_from": str(features_path.resolve()),
            "shape": list(rows.shape),
            "timing": I3D_TIMING.to_dict(),
            "layout": "W-TALC I3D joint features: [0:D/2] RGB, [D/2:D] flow",
        }
        atomic_write_json(layout.provenance(vid), record)
    atomic_write_text(layout.classes, "\n".join(release.classes) + "\n")
    atomic_write_json(layout.annotations, {"database": database})
    subsets = Counter(str(entry["subset"]) for entry in database.values())
    return Imported(layout.root, len(database), dict(subsets), len(release.classes))


@dataclass
class _WtalcRelease:
    """A W-TALC release's arrays, each checked to hold one entry per video; :meth:`video` reads and checks one
    video's entries (names are names, numbers numbers), so a malformed file is a one-line error naming it."""

    folder: Path
    features_path: Path
    arrays: dict[str, np.ndarray]
    segment_labels: np.ndarray | None
    features: np.ndarray
    classes: list[str]

    @classmethod
    def read(cls, folder: Path, features_path: Path) -> _WtalcRelease:
        arrays = {key: load_npy(_required(folder / f"{key}.npy")) for key in WTALC_FILES}
        labels_path = folder / "labels.npy"
        segment_labels = load_npy(labels_path) if labels_path.exists() else None
        features = load_npy(features_path)
        count = len(_entries(arrays["videoname"], folder / "videoname.npy"))
        named = [*((folder / f"{k}.npy", v) for k, v in arrays.items()), (features_path, features)]
        for path, values in [*named, *([(labels_path, segment_labels)] if segment_labels is not None else [])]:
            if len(_entries(values, path)) != count and path.name != "classlist.npy":
                raise DataError(
                    f"holds {len(values)} entries where videoname.npy holds {count}",
                    "use the release's files together, unchanged",
                    path,
                )
        classes = [as_text(c, "class name", folder / "classlist.npy") for c in arrays["classlist"]]
        return cls(folder, features_path, arrays, segment_labels, features, classes)

    @property
    def count(self) -> int:
        return len(self.arrays["videoname"])

    def video(self, i: int) -> tuple[str, dict, np.ndarray]:
        """Video ``i``: its id, annotation entry and (T, D) float32 rows."""
        folder, arrays = self.folder, self.arrays
        vid = safe_name(as_text(arrays["videoname"][i], "video name", folder / "videoname.npy"), "video name")
        where = f"{self.features_path} (video {vid})"
        raw = self.features[i]
        if not isinstance(raw, np.ndarray):
            raise DataError(
                f"holds a {type(raw).__name__}, not a (T, D) array", "use the release's original file", where
            )
        rows = checked_rows(raw, where).astype(np.float32, copy=False)
        bad = first_nonfinite_row(rows)
        if bad is not None:
            raise DataError(f"row {bad} holds NaN or inf values", "drop or repair this video", where)
        labels_path = folder / "labels_all.npy"
        labels = sorted(
            {
                as_text(label, f"label of video {vid}", labels_path)
                for label in _listed(arrays["labels_all"][i], labels_path)
            }
        )
        unknown = [label for label in labels if label not in self.classes]
        if unknown:
            raise DataError(
                f"video {vid}: label {unknown[0]!r} is not in classlist.npy", "use the release's files", folder
            )
        entry = {
            "subset": safe_name(as_text(arrays["subset"][i], "subset", folder / "subset.npy"), "subset"),
            "duration": _numbers(arrays["duration"][i], 1, f"duration of video {vid}", folder / "duration.npy")[0],
            "labels": labels,
            "annotations": self._segments(vid, i),
        }
        return vid, entry, rows

    def _segments(self, vid: str, index: int) -> list[dict]:
        path = self.folder / "segments.npy"
        spans = _listed(self.arrays["segments"][index], path)
        if not spans:
            return []
        if self.segment_labels is None:
            raise DataError(
                f"video {vid} has segments and the release has no labels.npy", "add labels.npy", self.folder
            )
        names = _listed(self.segment_labels[index], self.folder / "labels.npy")
        if len(names) != len(spans):
            raise DataError(
                f"video {vid}: {len(spans)} segments, {len(names)} segment labels", "use the release's files", path
            )
        out = []
        for span, label in zip(spans, names, strict=True):
            start, end = _numbers(span, 2, f"a segment of video {vid}", path)
            if not 0 <= start <= end:
                raise DataError(
                    f"video {vid}: segment {[start, end]} is not 0 <= start <= end", "use the release's files", path
                )
            out.append(
                {
                    "label": as_text(label, f"segment label of video {vid}", self.folder / "labels.npy"),
                    "segment": [start, end],
                }
            )
        return out


def _entries(values: np.ndarray, path: Path) -> np.ndarray:
    """A release array holding one entry per video (not a single 0-d value)."""
    if values.ndim == 0:
        raise DataError("holds a single value, not one entry per video", "use the release's original file", path)
    return values


def _listed(value: object, path: Path, limit: int = 100_000) -> list:
    """One video's entry that is a list (of labels or segments): a list, tuple or 1-D+ array, at most ``limit``."""
    if not (isinstance(value, (list, tuple)) or (isinstance(value, np.ndarray) and value.ndim > 0)):
        raise DataError(
            f"holds a {type(value).__name__} where a list was expected", "use the release's original file", path
        )
    if len(value) > limit:
        raise DataError(f"holds an entry of {len(value)} items", "use the release's original file", path)
    return list(value)


def _numbers(value: object, count: int, what: str, path: Path) -> list[float]:
    """Exactly ``count`` finite numbers (a number, or a short list or array of them, nested twice at most), or
    a one-line error; nothing larger is ever expanded (a crafted entry may share one child a million times)."""
    found: list[float] = []

    def walk(item: object, depth: int) -> bool:
        if isinstance(item, (int, float, np.integer, np.floating)) and not isinstance(item, bool):
            found.append(float(item))
        elif isinstance(item, np.ndarray) and item.dtype.kind in "fiu" and item.size <= 4 * count:
            found.extend(float(v) for v in item.reshape(-1))
        elif isinstance(item, (list, tuple, np.ndarray)) and depth < 2 and len(item) <= 4 * count:
            return all(walk(child, depth + 1) for child in item)
        else:
            return False
        return len(found) <= count

    if not walk(value, 0) or len(found) != count or not all(np.isfinite(found)):
        raise DataError(
            f"{what}: expected {count} finite number(s), got a {type(value).__name__}",
            "use the release's original file",
            path,
        )
    return found


def _wtalc_features(source: Path, name: str | None) -> Path:
    found = sorted(source.glob("*-I3D-JOINTFeatures.npy")) if source.is_dir() else []
    if name is not None:
        found = [p for p in found if p.name == f"{name}-I3D-JOINTFeatures.npy"]
    if len(found) != 1:
        what = "no <Name>-I3D-JOINTFeatures.npy" if not found else f"{len(found)} feature files"
        fix = "pass the W-TALC release folder" if not found else "choose one with --name (e.g. ActivityNet1.2)"
        raise DataError(what, fix, source)
    return found[0]


def _required(path: Path) -> Path:
    if not path.exists():
        raise DataError("missing from the release", "download the release's annotation folder whole", path)
    return path


def import_features(
    source: Path,
    data_dir: Path,
    timing: FeatureTiming,
    force: bool = False,
    annotations: Path | None = None,
) -> Imported:
    """Every ``SOURCE/*.npy`` checked (a finite (T, D) array of numbers, one D for all, a name that can be a
    file in DATA_DIR), then copied with its record when it has one, and the timing declared for the files
    without a record of their own; nothing is written when one is refused. A feature file already in
    DATA_DIR is replaced only with ``force`` (its record goes with it); the same file, or one with the same
    bytes, is left as it is, record and all (importing DATA_DIR/features into DATA_DIR only declares the
    timing). With an ActivityNet annotation file, only its labelled videos are imported (a file named
    ``v_<id>.npy`` is video ``<id>``, as many releases name them) and annotations.json written from it."""
    source, layout = Path(source), DataLayout(Path(data_dir))
    files = sorted(source.glob("*.npy")) if source.is_dir() else []
    if not files:
        raise DataError("no .npy feature files", "pass the folder holding one <video>.npy (T, D) per video", source)
    declaration = layout.timing_declaration
    previous = read_json(declaration)
    if previous is not None and previous != timing.to_dict() and not force:
        raise DataError(f"declares another timing {previous}", "pass --force to replace it", declaration)
    pairs, database, result = [(path, path.stem) for path in files], None, Imported(layout.root, len(files), {})
    if annotations is not None:
        refuse_existing_dataset(layout, force)
        pairs, database, result = _match(files, load_annotations(annotations), layout.root)
    dims: dict[int, Path] = {}
    for path, vid in pairs:
        safe_name(vid, "video name", path)
        rows = read_feature_rows(path, "pass intact feature files")
        bad = first_nonfinite_row(rows)
        if bad is not None:
            raise DataError(f"row {bad} holds NaN or inf values", "repair or drop this video", path)
        dims.setdefault(rows.shape[1], path)
    if len(dims) > 1:
        (d1, p1), (d2, p2) = list(dims.items())[:2]
        raise DataError(f"{d2}-d features where {p1.name} has {d1}-d", "every video needs the same extractor", p2)
    copies = [(path, vid) for path, vid in pairs if not _already_there(path, layout.features(vid))]
    refuse_replacing([layout.features(vid) for _, vid in copies], force)
    for path, vid in copies:
        with atomic_path(layout.features(vid)) as tmp:
            shutil.copyfile(path, tmp)
        record = path.with_suffix(".json")
        if isinstance(read_json(record), dict):  # a file's record travels with it
            with atomic_path(layout.provenance(vid)) as tmp:
                shutil.copyfile(record, tmp)
        else:
            layout.provenance(vid).unlink(missing_ok=True)  # the record of the file this one replaced
    atomic_write_json(declaration, timing.to_dict())
    if database is not None:
        atomic_write_json(layout.annotations, {"database": database})
    result.copied = len(copies)
    result.declared = sum(own_timing(layout.features(vid)) is None for _, vid in pairs)
    return result


def _already_there(source: Path, target: Path) -> bool:
    """``target`` is ``source`` itself, or a file with the same bytes (nothing to copy, nothing to replace)."""
    if not target.exists():
        return False
    return source.resolve() == target.resolve() or filecmp.cmp(source, target, shallow=False)


def refuse_replacing(paths: list[Path], force: bool) -> None:
    """An import replaces feature files already in DATA_DIR only with ``force``: they may be features ``wtal
    extract`` spent hours on. The refusal names them (one line)."""
    present = [path for path in paths if path.exists()]
    if present and not force:
        raise DataError(
            f"would replace {len(present)} feature file(s) already there: {_few([p.name for p in present])}",
            "pass --force to replace them (their records go with them), or import into another --data",
            present[0].parent,
        )


def _match(files: list[Path], database: dict, root: Path) -> tuple[list[tuple[Path, str]], dict, Imported]:
    """The feature files of the annotation file's labelled videos, the annotations to write, and the counts."""
    by_id: dict[str, Path] = {}
    for path in files:
        by_id.setdefault(path.stem.removeprefix("v_") if path.stem.removeprefix("v_") in database else path.stem, path)
    labelled = {vid: entry for vid, entry in database.items() if entry["labels"]}
    kept = {vid: entry for vid, entry in labelled.items() if vid in by_id}
    result = Imported(
        root,
        len(kept),
        dict(Counter(str(entry.get("subset")) for entry in kept.values())),
        len({label for entry in kept.values() for label in entry["labels"]}),
        missing=sorted(set(labelled) - set(by_id)),
        unlisted=sorted(by_id[vid].name for vid in set(by_id) - set(database)),
        unlabelled=len(database) - len(labelled),
    )
    if not kept:
        raise DataError(
            "no feature file matches a labelled video of the annotations", "name files <id>.npy or v_<id>.npy", root
        )
    return [(by_id[vid], vid) for vid in sorted(kept)], kept, result
