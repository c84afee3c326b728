"""Other published layouts -> DATA_DIR or RUN_DIR: BaS-Net/UM THUMOS14 features, BackTAL click files,
the authors' own checkpoints of the four methods."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..cache import atomic_save_npy, atomic_write_json
from ..errors import DataError
from ..layout import DataLayout, inside
from ..provenance import DEFAULT_SECONDS_PER_ROW
from .dataset import load_annotations


def import_bas_thumos(source: str | Path, data_dir: str | Path, durations: str | Path | None = None) -> int:
    """``SOURCE/features/{train,test}/{rgb,flow}/<vid>.npy`` + ``SOURCE/gt.json`` -> DATA_DIR.

    Rows become ``concat(rgb, flow)`` (RGB first, as our extractor writes them). ``durations``
    optionally names an annotation file with ``duration`` per video (e.g. BackTAL's THUMOS14 file).
    Returns the number of videos imported.
    """
    source, layout = Path(source), DataLayout(Path(data_dir))
    gt = source / "gt.json"
    database = load_annotations(gt)
    extra = load_annotations(durations) if durations else {}
    count = 0
    for vid, entry in database.items():
        subset = inside(source / "features", entry.get("subset"), what="subset", source=gt)
        rgb_path = inside(subset / "rgb", vid, ".npy", source=gt)
        flow_path = inside(subset / "flow", vid, ".npy", source=gt)
        for path in (rgb_path, flow_path):
            if not path.exists():
                raise DataError(
                    "features file missing", "the BaS-Net/UM layout is features/{train,test}/{rgb,flow}/<vid>.npy", path
                )
        rgb, flow = np.load(rgb_path), np.load(flow_path)
        if rgb.ndim != 2 or flow.shape[0] != rgb.shape[0]:
            raise DataError(
                f"rgb {rgb.shape} and flow {flow.shape} do not pair up", "re-download the features", flow_path
            )
        rows = np.concatenate([rgb, flow], axis=1).astype(np.float32)
        atomic_save_npy(layout.features(vid, source=gt), rows)
        atomic_write_json(
            layout.provenance(vid, source=gt),
            {
                "imported_from": str(source.resolve()),
                "shape": list(rows.shape),
                "seconds_per_row": DEFAULT_SECONDS_PER_ROW,
                "layout": "BaS-Net/UM THUMOS14 I3D features: columns [0:D/2] RGB, [D/2:D] flow",
            },
        )
        for key in ("duration", "fps"):  # the video's length, and its frame rate (BackTAL's frame grid)
            if extra.get(vid, {}).get(key):
                entry[key] = float(extra[vid][key])
        count += 1
    atomic_write_json(layout.annotations, {"database": database})
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
            raise DataError(
                f"missing column(s) {sorted(missing)}", "expected header URLID,URL,TagID,Tag,Start,End,Time,State", path
            )
        for line, row in enumerate(reader, start=2):
            try:
                start = float(row["Start"])
            except (TypeError, ValueError) as exc:
                raise DataError(f"line {line}: bad Start {row['Start']!r}", "times are seconds", path) from exc
            clicks.setdefault(row["URLID"].strip(), []).append(start)
    return {vid: sorted(times) for vid, times in clicks.items()}


def import_clicks(csv_path: str | Path, data_dir: str | Path) -> int:
    """Write DATA_DIR/clicks.json from a click CSV; returns the number of videos with clicks."""
    clicks = read_click_csv(csv_path)
    atomic_write_json(DataLayout(Path(data_dir)).clicks(), clicks)
    return len(clicks)


def import_checkpoint(files: list[Path], method: str, data_dir: Path, run_dir: Path) -> Path:
    """The authors' checkpoint(s) of ``method`` -> a RUN_DIR that ``wtal test`` and ``wtal localize`` use
    like a trained run. Feature size and class count come from the tensors; class names from DATA_DIR
    (classes.txt, else the sorted labels of annotations.json). CMCS takes one file (early fusion) or
    two, RGB then flow (late fusion, the published I3D setting)."""
    from ..cache import atomic_dir, atomic_write_json, sha256_file
    from ..methods import get_method
    from ..run import Run, run_meta, save_checkpoint
    from ..state_files import load_trusted_types, unwrap_state_dict
    from .dataset import read_classes

    cls = get_method(method)
    fix = "pass the .pkl/.pth the official code saved"
    states = [unwrap_state_dict(load_trusted_types(Path(f), fix), Path(f)) for f in files]
    try:
        model = cls.from_official(states)
    except ValueError as exc:
        raise DataError(str(exc), f"pass a checkpoint written by the official {method} code", files[0]) from exc
    layout = DataLayout(Path(data_dir))
    classes = read_classes(layout, load_annotations(layout.annotations), layout.annotations)
    if len(classes) != model.num_classes:
        source = layout.classes if layout.classes.exists() else layout.annotations
        raise DataError(
            f"{files[0].name} scores {model.num_classes} classes, but the dataset has {len(classes)}",
            "list the model's classes, in its order, in DATA_DIR/classes.txt",
            source,
        )
    features = sorted(layout.features_dir.glob("*.npy"))
    if features:
        dim = int(np.load(features[0], mmap_mode="r").shape[-1])
        if dim != model.feature_dim:
            raise DataError(
                f"{files[0].name} takes {model.feature_dim}-d features, {features[0].name} has {dim}",
                "import it next to the features it was trained on",
                features[0],
            )
    meta = run_meta(
        method,
        model.config,
        classes=classes,
        feature_dim=model.feature_dim,
        data_dir=layout.root,
        features=features[0] if features else None,
        checkpoint="imported official weights",
        imported_from=[{"path": str(Path(f).resolve()), "sha256": sha256_file(f)} for f in files],
    )
    with atomic_dir(run_dir) as staging:
        save_checkpoint(Run(staging).checkpoint, meta, model)
        atomic_write_json(Run(staging).config, meta.to_dict())
    return Run(Path(run_dir)).checkpoint
