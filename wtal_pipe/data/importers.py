"""Other published layouts -> DATA_DIR: BaS-Net/UM THUMOS14 features, BackTAL click files."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..cache import atomic_save_npy, atomic_write_json
from ..errors import DataError
from .dataset import DEFAULT_SECONDS_PER_ROW, load_annotations


def import_bas_thumos(source: str | Path, data_dir: str | Path, durations: str | Path | None = None) -> int:
    """``SOURCE/features/{train,test}/{rgb,flow}/<vid>.npy`` + ``SOURCE/gt.json`` -> DATA_DIR.

    Rows become ``concat(rgb, flow)`` (RGB first, as our extractor writes them). ``durations``
    optionally names an annotation file with ``duration`` per video (e.g. BackTAL's THUMOS14 file).
    Returns the number of videos imported.
    """
    source, data_dir = Path(source), Path(data_dir)
    database = load_annotations(source / "gt.json")
    extra = load_annotations(durations) if durations else {}
    count = 0
    for vid, entry in database.items():
        subset = entry.get("subset")
        rgb_path = source / "features" / str(subset) / "rgb" / f"{vid}.npy"
        flow_path = source / "features" / str(subset) / "flow" / f"{vid}.npy"
        for path in (rgb_path, flow_path):
            if not path.exists():
                raise DataError("features file missing", "the BaS-Net/UM layout is "
                                "features/{train,test}/{rgb,flow}/<vid>.npy", path)
        rgb, flow = np.load(rgb_path), np.load(flow_path)
        if rgb.ndim != 2 or flow.shape[0] != rgb.shape[0]:
            raise DataError(f"rgb {rgb.shape} and flow {flow.shape} do not pair up", "re-download the features",
                            flow_path)
        rows = np.concatenate([rgb, flow], axis=1).astype(np.float32)
        atomic_save_npy(data_dir / "features" / f"{vid}.npy", rows)
        atomic_write_json(data_dir / "features" / f"{vid}.json", {
            "imported_from": str(source.resolve()), "shape": list(rows.shape),
            "seconds_per_row": DEFAULT_SECONDS_PER_ROW,
            "layout": "BaS-Net/UM THUMOS14 I3D features: columns [0:D/2] RGB, [D/2:D] flow"})
        if vid in extra and extra[vid].get("duration"):
            entry["duration"] = float(extra[vid]["duration"])
        count += 1
    atomic_write_json(data_dir / "annotations.json", {"database": database})
    return count


def read_click_csv(path: str | Path) -> dict[str, list[float]]:
    """BackTAL's human click files: ``URLID,URL,TagID,Tag,Start,End,Time,State`` (UTF-8 with BOM), one
    background click per row, in seconds."""
    path = Path(path)
    if not path.exists():
        raise DataError("click file not found", "pass one of BackTAL's THUMOS14_Background-Click files", path)
    clicks: dict[str, list[float]] = {}
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = {"URLID", "Start"} - set(reader.fieldnames or [])
        if missing:
            raise DataError(f"missing column(s) {sorted(missing)}",
                            "expected header URLID,URL,TagID,Tag,Start,End,Time,State", path)
        for line, row in enumerate(reader, start=2):
            try:
                start = float(row["Start"])
            except (TypeError, ValueError):
                raise DataError(f"line {line}: bad Start {row['Start']!r}", "times are seconds", path)
            clicks.setdefault(row["URLID"].strip(), []).append(start)
    return {vid: sorted(times) for vid, times in clicks.items()}


def import_clicks(csv_path: str | Path, data_dir: str | Path) -> int:
    """Write DATA_DIR/clicks.json from a click CSV; returns the number of videos with clicks."""
    clicks = read_click_csv(csv_path)
    atomic_write_json(Path(data_dir) / "clicks.json", clicks)
    return len(clicks)
