"""Other published layouts -> DATA_DIR: BaS-Net/UM THUMOS14 features and BackTAL click files (the authors'
checkpoints become a RUN_DIR: ``run.import_checkpoint``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..cache import atomic_save_npy, atomic_write_json, read_json
from ..errors import DataError
from ..layout import DataLayout, inside
from .annotations import load_annotations
from .csv_rows import csv_rows
from .dataset import read_feature_rows
from .releases import refuse_existing_dataset, refuse_replacing
from .timing import I3D_TIMING


def import_bas_thumos(
    source: str | Path, data_dir: str | Path, durations: str | Path | None = None, force: bool = False
) -> int:
    """``SOURCE/features/{train,test}/{rgb,flow}/<vid>.npy`` + ``SOURCE/gt.json`` -> DATA_DIR.

    Rows become ``concat(rgb, flow)`` (RGB first, as our extractor writes them). ``durations``
    optionally names an annotation file with ``duration`` per video (e.g. BackTAL's THUMOS14 file).
    An existing dataset's annotations and feature files are replaced only with ``force``.
    Returns the number of videos imported.
    """
    source, layout = Path(source), DataLayout(Path(data_dir))
    gt = source / "gt.json"
    database = load_annotations(gt)
    extra = load_annotations(durations) if durations else {}
    pairs = {vid: _bas_pair(source, gt, vid, entry) for vid, entry in database.items()}  # all checked first
    refuse_existing_dataset(layout, force)
    refuse_replacing([layout.features(vid) for vid in pairs], force)
    for vid, (rgb_path, flow_path) in pairs.items():
        rows = np.concatenate([np.load(rgb_path), np.load(flow_path)], axis=1).astype(np.float32)
        atomic_save_npy(layout.features(vid, source=gt), rows)
        atomic_write_json(
            layout.provenance(vid, source=gt),
            {
                "imported_from": str(source.resolve()),
                "shape": list(rows.shape),
                "timing": I3D_TIMING.to_dict(),
                "layout": "BaS-Net/UM THUMOS14 I3D features: columns [0:D/2] RGB, [D/2:D] flow",
            },
        )
        for key in ("duration", "fps"):  # the video's length, and its frame rate (BackTAL's frame grid)
            if extra.get(vid, {}).get(key):
                database[vid][key] = float(extra[vid][key])
    atomic_write_json(layout.annotations, {"database": database})
    return len(pairs)


def _bas_pair(source: Path, gt: Path, vid: str, entry: dict) -> tuple[Path, Path]:
    """The RGB and flow files of one video of the BaS-Net/UM layout, checked to exist and pair up (before
    anything is written, so a refused import leaves DATA_DIR as it was)."""
    DataLayout.check_id(vid, gt)
    subset = inside(source / "features", entry.get("subset"), what="subset", source=gt)
    paths = inside(subset / "rgb", vid, ".npy", source=gt), inside(subset / "flow", vid, ".npy", source=gt)
    shapes = []
    for path in paths:
        if not path.exists():
            raise DataError(
                "features file missing", "the BaS-Net/UM layout is features/{train,test}/{rgb,flow}/<vid>.npy", path
            )
        shapes.append(read_feature_rows(path, "re-download the features").shape)
    if shapes[0][0] != shapes[1][0]:
        raise DataError(f"rgb {shapes[0]} and flow {shapes[1]} do not pair up", "re-download the features", paths[1])
    return paths


def read_click_csv(path: str | Path) -> dict[str, list[float]]:
    """BackTAL's human click files: ``URLID,URL,TagID,Tag,Start,End,Time,State`` (UTF-8 with BOM), one
    background click per row, in seconds."""
    path = Path(path)
    if not path.exists():
        raise DataError("click file not found", "pass one of BackTAL's THUMOS14_Background-Click files", path)
    clicks: dict[str, list[float]] = {}
    _, rows = csv_rows(path, ("URLID", "Start"), "expected header URLID,URL,TagID,Tag,Start,End,Time,State")
    for line, row in rows:
        try:
            start = float(row["Start"])
        except ValueError as exc:
            raise DataError(f"line {line}: bad Start {row['Start']!r}", "times are seconds", path) from exc
        clicks.setdefault(row["URLID"], []).append(start)
    return {vid: sorted(times) for vid, times in clicks.items()}


def import_clicks(csv_path: str | Path, data_dir: str | Path, force: bool = False) -> int:
    """Write DATA_DIR/clicks.json from a click CSV (another click file there is replaced only with ``force``:
    it may hold hours of clicking in ``wtal annotate``); returns the number of videos with clicks."""
    clicks = read_click_csv(csv_path)
    target = DataLayout(Path(data_dir)).clicks()
    if target.exists() and read_json(target) != clicks and not force:
        raise DataError("already holds other clicks", "pass --force to replace them, or another --data", target)
    atomic_write_json(target, clicks)
    return len(clicks)
