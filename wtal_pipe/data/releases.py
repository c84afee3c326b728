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

import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..cache import atomic_path, atomic_save_npy, atomic_write_json, atomic_write_text, read_json
from ..errors import DataError
from ..layout import DataLayout, safe_name
from .annotations import load_annotations
from .dataset import first_nonfinite_row, read_feature_rows
from .safe_npy import as_text, load_npy
from .timing import I3D_TIMING, FeatureTiming

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
        return "\n".join(lines)


def _few(names: list[str]) -> str:
    return ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")


def _refuse_existing(layout: DataLayout, force: bool) -> None:
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
    _refuse_existing(layout, force)
    arrays = {key: load_npy(_required(folder / f"{key}.npy")) for key in WTALC_FILES}
    segment_labels = load_npy(folder / "labels.npy") if (folder / "labels.npy").exists() else None
    features = load_npy(features_path)
    count = len(arrays["videoname"])
    for key, values in [*arrays.items(), ("features", features), ("labels", segment_labels)]:
        if values is not None and key != "classlist" and len(values) != count:
            raise DataError(
                f"holds {len(values)} entries where videoname.npy holds {count}",
                "use the release's files together, unchanged",
                folder / f"{key}.npy" if key != "features" else features_path,
            )
    classes = [as_text(c) for c in arrays["classlist"]]
    database, rows_of = {}, {}
    dims: set[int] = set()
    for i in range(count):
        vid = safe_name(as_text(arrays["videoname"][i]), "video name", folder / "videoname.npy")
        rows = np.asarray(features[i], dtype=np.float32) if isinstance(features[i], np.ndarray) else None
        where = f"{features_path} (video {vid})"
        if rows is None or rows.ndim != 2 or rows.shape[0] == 0:
            raise DataError("is not a (T, D) array", "use the release's original file", where)
        bad = first_nonfinite_row(rows)
        if bad is not None:
            raise DataError(f"row {bad} holds NaN or inf values", "drop or repair this video", where)
        dims.add(rows.shape[1])
        labels = sorted({as_text(label) for label in arrays["labels_all"][i]})
        unknown = [label for label in labels if label not in classes]
        if unknown:
            raise DataError(
                f"video {vid}: label {unknown[0]!r} is not in classlist.npy", "use the release's files", folder
            )
        database[vid] = {
            "subset": as_text(arrays["subset"][i]),
            "duration": float(np.asarray(arrays["duration"][i], np.float64).reshape(-1)[0]),
            "labels": labels,
            "annotations": _segments(vid, arrays["segments"][i], segment_labels, i, folder),
        }
        rows_of[vid] = rows
    if len(dims) > 1:
        raise DataError(f"videos of {sorted(dims)} feature sizes", "use one release", features_path)
    for vid, rows in rows_of.items():
        atomic_save_npy(layout.features(vid), rows)
        record = {
            "imported_from": str(features_path.resolve()),
            "shape": list(rows.shape),
            "timing": I3D_TIMING.to_dict(),
        }
        atomic_write_json(
            layout.provenance(vid), record | {"layout": "W-TALC I3D joint features: [0:D/2] RGB, [D/2:D] flow"}
        )
    atomic_write_text(layout.classes, "\n".join(classes) + "\n")
    atomic_write_json(layout.annotations, {"database": database})
    subsets = Counter(str(entry["subset"]) for entry in database.values())
    return Imported(layout.root, len(database), dict(subsets), len(classes))


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


def _segments(vid: str, segments: object, labels: np.ndarray | None, index: int, folder: Path) -> list[dict]:
    spans = list(segments) if isinstance(segments, (list, tuple, np.ndarray)) else []
    if not spans:
        return []
    if labels is None:
        raise DataError(f"video {vid} has segments and the release has no labels.npy", "add labels.npy", folder)
    names = list(labels[index])
    if len(names) != len(spans):
        raise DataError(
            f"video {vid}: {len(spans)} segments, {len(names)} segment labels", "use the release's files", folder
        )
    out = []
    for span, label in zip(spans, names, strict=True):
        start, end = (float(v) for v in np.asarray(span, np.float64).reshape(-1)[:2])
        if not (np.isfinite(start) and np.isfinite(end) and 0 <= start <= end):
            raise DataError(
                f"video {vid}: segment {[start, end]} is not 0 <= start <= end", "use the release's files", folder
            )
        out.append({"label": as_text(label), "segment": [start, end]})
    return out


def import_features(
    source: Path,
    data_dir: Path,
    timing: FeatureTiming,
    force: bool = False,
    annotations: Path | None = None,
) -> Imported:
    """Every ``SOURCE/*.npy`` checked (a finite (T, D) array, one D for all, a name that can be a file in
    DATA_DIR), then copied, and the timing declared; nothing is written when one is refused. With an
    ActivityNet annotation file, only its labelled videos are imported (a file named ``v_<id>.npy`` is video
    ``<id>``, as many releases name them) and annotations.json written from it."""
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
        _refuse_existing(layout, force)
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
    for path, vid in pairs:
        with atomic_path(layout.features(vid)) as tmp:
            shutil.copyfile(path, tmp)
        layout.provenance(vid).unlink(missing_ok=True)  # the record of a file this one replaced
    atomic_write_json(declaration, timing.to_dict())
    if database is not None:
        atomic_write_json(layout.annotations, {"database": database})
    return result


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
