"""Annotation files from what users have: a CSV of ``video,label[,subset][,start,end]`` rows, or a folder of
videos with one sub-folder per class. Video-level labels are enough (weak supervision); segments, where
given, let a subset be scored.

Both builders check the whole input before writing anything (a refused import leaves DATA_DIR as it
was), name the row or file of the first problem, and split videos without a subset into train and test
by a seeded split stratified by label, written into the annotations so it never changes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..cache import atomic_write_json, file_identity
from ..errors import DataError
from ..layout import DataLayout, safe_name
from .annotations import checked_segment, load_annotations
from .csv_rows import csv_rows


@dataclass(frozen=True)
class Built:
    """What an import wrote: the annotation file and its counts."""

    path: Path
    videos: int
    classes: list[str]
    subsets: dict[str, int]
    kept: int = 0  # videos the replaced file knew: their subsets are kept
    moved: list[str] = field(default_factory=list)  # known videos the input puts in another subset
    dropped: list[str] = field(default_factory=list)  # known videos no longer in the input
    unreadable: bool = False  # the replaced file did not parse, so no split could be kept

    def summary(self) -> str:
        counts = ", ".join(f"{n} {subset}" for subset, n in sorted(self.subsets.items()))
        lines = [f"wrote {self.path}: {self.videos} videos ({counts}), {len(self.classes)} classes"]
        if self.kept:
            lines.append(
                f"kept the subsets of the {self.kept} videos it held; split only the {self.videos - self.kept} new"
            )
        if self.moved:
            lines.append(
                f"note: the input moves {len(self.moved)} known video(s) to another subset: {_few(self.moved)}"
            )
        if self.unreadable:
            lines.append("note: the replaced file did not parse: every video was split anew")
        if self.dropped:
            lines.append(
                f"note: {len(self.dropped)} video(s) of the old file are no longer listed: {_few(self.dropped)}"
            )
        return "\n".join(lines)


def _few(names: list[str]) -> str:
    return ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")


def stratified_split(labels: dict[str, list[str]], test_fraction: float, seed: int) -> dict[str, str]:
    """Video -> "train" or "test": per label (a video's first), a seeded ``test_fraction`` of its videos
    (rounded; a label with one video keeps it for training)."""
    if not 0 <= test_fraction < 1:
        raise DataError(f"--test-fraction {test_fraction} must lie in [0, 1)", "e.g. --test-fraction 0.2")
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[str]] = {}
    for vid in sorted(labels):
        by_label.setdefault(labels[vid][0], []).append(vid)
    subsets: dict[str, str] = {}
    for label in sorted(by_label):
        videos = list(rng.permutation(by_label[label]))
        n_test = round(test_fraction * len(videos)) if len(videos) > 1 else 0
        subsets |= {str(vid): "test" if i < n_test else "train" for i, vid in enumerate(videos)}
    return subsets


@dataclass(frozen=True)
class Split:
    """How videos without a subset are split: this share of each label's new videos to test, seeded."""

    test_fraction: float
    seed: int


def _write(
    layout: DataLayout,
    labels: dict[str, set[str]],
    given: dict[str, str],
    segments: dict[str, list[dict]],
    split: Split,
    force: bool,
) -> Built:
    """annotations.json from each video's labels, the subsets the input ``given`` and its segments. Over an
    existing file (``force``) every video it knows keeps its subset unless the input names another (runs
    trained on the old split stay uncontaminated); only new videos are split; the summary names what moved."""
    path = layout.annotations
    known: dict[str, str] = {}
    unreadable = False
    if path.exists():
        if not force:
            raise DataError("already exists", "pass --force to replace it", path)
        try:
            known = {vid: str(entry.get("subset")) for vid, entry in load_annotations(path).items()}
        except DataError:
            unreadable = True  # nothing to keep: it is replaced as asked
    new = {vid: sorted(v) for vid, v in labels.items() if vid not in given and vid not in known}
    subsets = known | stratified_split(new, split.test_fraction, split.seed) | given
    database = {vid: _entry(subsets[vid], labels[vid], segments.get(vid, [])) for vid in sorted(labels)}
    atomic_write_json(path, {"database": database})
    return Built(
        path,
        len(database),
        sorted({label for entry in database.values() for label in entry["labels"]}),
        dict(Counter(entry["subset"] for entry in database.values())),
        kept=len(set(labels) & set(known)),
        moved=sorted(vid for vid in set(given) & set(known) if given[vid] != known[vid]),
        dropped=sorted(set(known) - set(labels)),
        unreadable=unreadable,
    )


def _entry(subset: str, labels: set[str], segments: list[dict]) -> dict:
    entry: dict = {"subset": subset, "labels": sorted(labels)}
    if segments:
        entry["annotations"] = segments
    return entry


def import_labels_csv(
    csv_path: Path, data_dir: Path, *, test_fraction: float = 0.2, seed: int = 0, force: bool = False
) -> Built:
    """``video,label[,subset][,start,end]`` rows (a header, UTF-8 with or without a BOM; several rows for
    several labels or segments) -> DATA_DIR/annotations.json."""
    csv_path = Path(csv_path)
    if not csv_path.exists():
        raise DataError("file not found", "pass a CSV with a header video,label[,subset][,start,end]", csv_path)
    labels: dict[str, set[str]] = {}
    subsets: dict[str, str] = {}
    segments: dict[str, list[dict]] = {}
    _, rows = csv_rows(csv_path, ("video", "label"), "the first row is video,label[,subset][,start,end]")
    for line, row in rows:
        where = f"{csv_path}:{line}"
        vid, label = row.get("video", ""), row.get("label", "")
        safe_name(vid, "video name", where)
        if not label:
            raise DataError(f"video {vid}: an empty label", "every row names a label", where)
        labels.setdefault(vid, set()).add(label)
        if row.get("subset"):
            if subsets.setdefault(vid, row["subset"]) != row["subset"]:
                raise DataError(
                    f"video {vid} is in subset {subsets[vid]!r} and in {row['subset']!r}",
                    "give it one subset",
                    where,
                )
            safe_name(row["subset"], "subset", where)
        if row.get("start") or row.get("end"):
            start, end = checked_segment(vid, (row.get("start"), row.get("end")), where)
            segments.setdefault(vid, []).append({"label": label, "segment": [start, end]})
    if not labels:
        raise DataError("no rows", "add one row per video and label", csv_path)
    return _write(DataLayout(Path(data_dir)), labels, subsets, segments, Split(test_fraction, seed), force)


def import_class_folders(
    videos_dir: Path, data_dir: Path, *, test_fraction: float = 0.2, seed: int = 0, force: bool = False
) -> Built:
    """``VIDEOS_DIR/<class>/<video>`` -> DATA_DIR/annotations.json: each video labelled with its folder's class
    (a video in several class folders, the same file, gets each label), split train/test by label."""
    from ..video.discover import find_videos

    videos_dir = Path(videos_dir)
    if not videos_dir.is_dir():
        raise DataError("no such folder", "pass the folder holding one sub-folder of videos per class", videos_dir)
    classes = sorted(p for p in videos_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError("holds no class folders", "put each class's videos in a sub-folder named after it", videos_dir)
    labels: dict[str, set[str]] = {}
    files: dict[str, Path] = {}
    for folder in classes:
        for video in find_videos([folder]):
            vid = safe_name(video.stem, "video name", video)
            seen = files.setdefault(vid, video)
            if seen != video and (folder.name in labels[vid] or file_identity(seen) != file_identity(video)):
                raise DataError(
                    f"another file is named {vid} too ({seen})", "rename one of them: a video's name is its id", video
                )
            labels.setdefault(vid, set()).add(folder.name)
    if not labels:
        raise DataError(
            "no videos in its class folders", "put the videos in sub-folders named after their class", videos_dir
        )
    return _write(DataLayout(Path(data_dir)), labels, {}, {}, Split(test_fraction, seed), force)
