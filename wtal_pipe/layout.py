"""Where everything lives under a dataset folder (DATA_DIR), and the rule that keeps it there.

::

    DATA_DIR/annotations.json            {"database": {vid: {"subset", "duration", "annotations": [...]}}}
    DATA_DIR/classes.txt                 optional class order (else sorted labels)
    DATA_DIR/clicks.json                 optional background clicks {vid: [seconds, ...]} (BackTAL);
    DATA_DIR/clicks.<annotator>.json     one file per annotator when several click
    DATA_DIR/features/<vid>.npy          float32 (T, D) + <vid>.json provenance
    DATA_DIR/cache/<vid>/                decoded frames and flow, keyed by content and parameters (features/plan.py)
    DATA_DIR/negatives/<vid>_bg.*        CMCS hard negatives (pseudo videos, their masks and records)

Video ids, labels and annotator names come from files strangers write (annotations, ground truth,
click files); a name used as a path component must not leave its folder. :func:`safe_name` is the one
check, and every path built from such a name is built here or through it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import DataError


def safe_name(name: object, what: str = "video id", source: str | Path | None = None) -> str:
    """``name`` as a single path component, or a one-line error naming it (and the file it came from)."""
    text = str(name)
    separators = {"/", "\\", os.sep, os.altsep or "/"}
    if not text or text in (".", "..") or "\x00" in text or any(sep in text for sep in separators):
        raise DataError(
            f"{what} {text!r} cannot be a file name: it would leave its folder",
            f"rename the {what} (no '/', '\\\\', '..' or empty names)",
            source,
        )
    return text


def inside(
    folder: str | Path, name: object, suffix: str = "", what: str = "video id", source: str | Path | None = None
) -> Path:
    """``folder / (name + suffix)`` after checking that ``name`` stays inside ``folder``."""
    return Path(folder) / f"{safe_name(name, what, source)}{suffix}"


@dataclass(frozen=True)
class DataLayout:
    """Every path under one DATA_DIR."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def annotations(self) -> Path:
        return self.root / "annotations.json"

    @property
    def classes(self) -> Path:
        return self.root / "classes.txt"

    def clicks(self, annotator: str | None = None) -> Path:
        """The click file: ``clicks.json``, or ``clicks.<annotator>.json`` for one of several annotators."""
        if annotator is None:
            return self.root / "clicks.json"
        return self.root / f"clicks.{safe_name(annotator, 'annotator name')}.json"

    @property
    def features_dir(self) -> Path:
        return self.root / "features"

    @property
    def timing_declaration(self) -> Path:
        """How rows of features made elsewhere are timed (``data/timing.py``)."""
        return self.features_dir / "timing.json"

    @property
    def feature_checks(self) -> Path:
        """Which feature files were found finite and of which shape, by size and modification time
        (``data/dataset.py``: a command on 15,000 videos does not re-read every file)."""
        return self.root / ".feature-checks.json"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    @property
    def negatives_dir(self) -> Path:
        return self.root / "negatives"

    @staticmethod
    def check_id(vid: str, source: str | Path | None = None) -> str:
        """``vid`` when it can name files in a DATA_DIR, else the one-line error (check before writing)."""
        return safe_name(vid, source=source)

    def features(self, vid: str, source: str | Path | None = None) -> Path:
        return inside(self.features_dir, vid, ".npy", source=source)

    def provenance(self, vid: str, source: str | Path | None = None) -> Path:
        return inside(self.features_dir, vid, ".json", source=source)

    def cache(self, vid: str, source: str | Path | None = None) -> Path:
        return inside(self.cache_dir, vid, source=source)

    def negative(self, vid: str, source: str | Path | None = None) -> tuple[Path, Path, Path]:
        """A hard negative's features, record and static mask: ``<vid>_bg.npy``, ``.json``, ``.mask.npy``."""
        stem = f"{safe_name(vid, source=source)}_bg"
        return (
            self.negatives_dir / f"{stem}.npy",
            self.negatives_dir / f"{stem}.json",
            self.negatives_dir / f"{stem}.mask.npy",
        )
