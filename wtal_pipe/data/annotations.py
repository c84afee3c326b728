"""Annotation files: which videos, in which subset, with which labels, and where (if anyone said).

ActivityNet style, with video-level labels allowed on their own (the premise of weak supervision)::

    {"database": {vid: {"subset": "train", "labels": ["Diving"]}}}                       labels only
    {"database": {vid: {"subset": "train", "annotations": [{"label": "Diving"}]}}}       the same
    {"database": {vid: {"subset": "test", "duration": 12.5,
                        "annotations": [{"label": "Diving", "segment": [1.5, 4.0]}]}}}  with segments

Loaded, every entry has ``labels`` (sorted, the union of both spellings) and ``annotations`` holding only
segments (as floats; THUMOS files store strings). Training needs labels; only an evaluation needs segments.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..errors import DataError
from ..layout import DataLayout

EXPECTED = 'expected {"database": {vid: {"subset": ..., "labels": [...] and/or "annotations": [{"label", "segment"}]}}}'


def load_annotations(path: str | Path) -> dict:
    """The annotation file's database, checked and normalized (see the module docstring)."""
    path = Path(path)
    if not path.exists():
        raise DataError(
            "annotation file not found", "write annotations.json (ActivityNet style) or run wtal import", path
        )
    try:
        database = json.loads(path.read_text())["database"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError) as exc:
        raise DataError(f"not ActivityNet-style JSON ({exc.__class__.__name__})", EXPECTED, path) from exc
    if not isinstance(database, dict):
        raise DataError(f'"database" is a {type(database).__name__}, not an object of videos', EXPECTED, path)
    for vid, video in database.items():
        _normalize(vid, video, path)
    return database


def _normalize(vid: str, video: object, path: Path) -> None:
    annotations = video.get("annotations", []) if isinstance(video, dict) else None
    labels = video.get("labels", []) if isinstance(video, dict) else None
    if not isinstance(video, dict) or not isinstance(annotations, list) or not isinstance(labels, list):
        raise DataError(f"video {vid}: not an object with an annotations (or labels) list", EXPECTED, path)
    if not all(isinstance(label, str) and label for label in labels):
        raise DataError(f"video {vid}: labels must be non-empty names", EXPECTED, path)
    segments = []
    for ann in annotations:
        if not isinstance(ann, dict) or not isinstance(ann.get("label"), str) or not ann["label"]:
            raise DataError(f"video {vid}: an annotation without a label", EXPECTED, path)
        labels.append(ann["label"])
        if "segment" not in ann:  # a video-level label
            continue
        start, end = checked_segment(vid, ann.get("segment"), path)
        segments.append({**ann, "segment": [start, end]})
    video["labels"], video["annotations"] = sorted(set(labels)), segments


def checked_segment(vid: str, segment: object, source: Path | str) -> tuple[float, float]:
    """A segment as two floats with 0 <= start <= end, or a one-line error naming the video."""
    try:
        start, end = (float(v) for v in segment)  # type: ignore[attr-defined]
    except (ValueError, TypeError) as exc:
        raise DataError(f"video {vid}: bad segment {segment!r}", "use [start_s, end_s]", source) from exc
    if not (math.isfinite(start) and math.isfinite(end) and 0 <= start <= end):
        raise DataError(f"video {vid}: segment [{start}, {end}] is not 0 <= start <= end", "fix the segment", source)
    return start, end


def is_labels_only(entry: dict) -> bool:
    """A video with labels and no segment: it can be trained on, not scored."""
    return bool(entry["labels"]) and not entry["annotations"]


def unscored_videos(database: dict, subset: str, skip_unannotated: bool, source: Path | str) -> list[str] | None:
    """The videos of ``subset`` an evaluation sets aside: those with labels but no segments, which only
    ``skip_unannotated`` allows ([] when every video can be scored); None when none has segments (nothing can
    be scored). A subset that mixes the two is otherwise a one-line error naming them."""
    videos = [vid for vid, entry in database.items() if entry.get("subset") == subset]
    unscored = [vid for vid in videos if is_labels_only(database[vid])]
    if len(unscored) == len(videos):
        return None
    if unscored and not skip_unannotated:
        shown = ", ".join(unscored[:5]) + (" ..." if len(unscored) > 5 else "")
        raise DataError(
            f"subset {subset!r}: {len(unscored)} video(s) have labels but no segments ({shown}): mAP cannot score them",
            "add their segments, or pass --skip-unannotated to leave them out",
            source,
        )
    return unscored


def class_index(classes: list[str]) -> dict[str, int]:
    """Class name -> its index in the model's output."""
    return {name: i for i, name in enumerate(classes)}


def segments_of(entry: dict, index: dict[str, int]) -> list[tuple[float, float, int]]:
    """An annotation entry's segments as (start_s, end_s, class index), for the classes in ``index``."""
    return [
        (ann["segment"][0], ann["segment"][1], index[ann["label"]])
        for ann in entry.get("annotations", [])
        if ann["label"] in index and "segment" in ann
    ]


def read_classes(layout: DataLayout, database: dict, annotations_path: Path) -> list[str]:
    """The class order: DATA_DIR/classes.txt, else the sorted labels of the annotations."""
    path = layout.classes
    if path.exists():
        classes = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        if len(set(classes)) != len(classes):
            raise DataError("duplicate class names", "list each class once", path)
        return classes
    labels = sorted({label for v in database.values() for label in v.get("labels", [])})
    if not labels:
        raise DataError("no labelled videos", "label at least one video", annotations_path)
    return labels
