"""Features made elsewhere (another extractor, a colleague's folder): one ``<video>.npy`` (T, D) per video,
copied into DATA_DIR/features with their timing declared once in ``features/timing.json``
(``data/timing.py``), so every row lands at the right seconds."""

from __future__ import annotations

import shutil
from pathlib import Path

from ..cache import atomic_path, atomic_write_json, read_json
from ..errors import DataError
from ..layout import DataLayout, safe_name
from .dataset import first_nonfinite_row, read_feature_rows
from .timing import FeatureTiming


def import_features(source: Path, data_dir: Path, timing: FeatureTiming, force: bool = False) -> int:
    """Every ``SOURCE/*.npy`` checked (a finite (T, D) array, one D for all, a name that can be a file in
    DATA_DIR), then copied, and the timing declared; nothing is written when one is refused. Returns
    how many were imported."""
    source, layout = Path(source), DataLayout(Path(data_dir))
    files = sorted(source.glob("*.npy")) if source.is_dir() else []
    if not files:
        raise DataError("no .npy feature files", "pass the folder holding one <video>.npy (T, D) per video", source)
    declaration = layout.timing_declaration
    previous = read_json(declaration)
    if previous is not None and previous != timing.to_dict() and not force:
        raise DataError(f"declares another timing {previous}", "pass --force to replace it", declaration)
    dims: dict[int, Path] = {}
    for path in files:
        safe_name(path.stem, "video name", path)
        rows = read_feature_rows(path, "pass intact feature files")
        bad = first_nonfinite_row(rows)
        if bad is not None:
            raise DataError(f"row {bad} holds NaN or inf values", "repair or drop this video", path)
        dims.setdefault(rows.shape[1], path)
    if len(dims) > 1:
        (d1, p1), (d2, p2) = list(dims.items())[:2]
        raise DataError(f"{d2}-d features where {p1.name} has {d1}-d", "every video needs the same extractor", p2)
    for path in files:
        with atomic_path(layout.features(path.stem)) as tmp:
            shutil.copyfile(path, tmp)
        layout.provenance(path.stem).unlink(missing_ok=True)  # the record of a file this one replaced
    atomic_write_json(declaration, timing.to_dict())
    return len(files)
