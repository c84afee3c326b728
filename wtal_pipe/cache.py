"""Stage cache: content-based keys, atomic writes and streaming ``.npy`` files.

Every stage output is written to a temporary name in the destination folder and renamed into
place only once complete, so a killed run never leaves a file that a later run would trust.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
from collections.abc import Iterator
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from numpy.typing import DTypeLike

from .errors import DataError

_TMP_MARK = ".tmp-"
# temporaries are named by host and pid: on a shared DATA_DIR (a cluster) only the machine that wrote
# one can tell whether its writer is still alive
_HOST = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname()) or "host"
_IDENTITY_BLOCK = 1 << 20  # bytes hashed from each end of a file


def file_identity(path: str | Path) -> str:
    """Content fingerprint of a file: its size plus sha256 of its first and last MiB.

    Cheap on multi-GB videos, yet survives renames and copies (unlike path + mtime).
    """
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as fh:
        digest.update(fh.read(_IDENTITY_BLOCK))
        if size > 2 * _IDENTITY_BLOCK:
            fh.seek(size - _IDENTITY_BLOCK)
            digest.update(fh.read(_IDENTITY_BLOCK))
        elif size > _IDENTITY_BLOCK:
            digest.update(fh.read())
    return digest.hexdigest()[:16]


def sha256_file(path: str | Path) -> str:
    """Full sha256 (for checkpoints, where every byte matters)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def file_digest(path: str | Path) -> dict:
    """Size and sha256 of a stage output, stored in its record so a later run can tell a damaged or
    truncated file from the one that was written."""
    return {"bytes": Path(path).stat().st_size, "sha256": sha256_file(path)}


def intact(path: str | Path, digest: dict | None) -> bool:
    """True when ``path`` is the file ``digest`` describes (size first: a truncated file costs no read)."""
    path = Path(path)
    if not isinstance(digest, dict) or not path.exists():
        return False
    return path.stat().st_size == digest.get("bytes") and sha256_file(path) == digest.get("sha256")


def reusable(path: str | Path, record_path: str | Path) -> dict | None:
    """The record of a cache entry whose file is intact, else None (recompute it).

    Records written before they carried a digest are trusted when their ``.npy`` loads, and get the
    digest now, so an upgrade keeps its (expensive) caches.
    """
    record = read_json(record_path)
    if not isinstance(record, dict):
        return None
    if "digest" in record:
        return record if intact(path, record["digest"]) else None
    try:
        np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return None
    record["digest"] = file_digest(path)
    atomic_write_json(record_path, record)
    return record


def stage_key(*parts: Any) -> str:
    """Short stable hash of stage parameters and upstream keys (dataclasses allowed)."""
    normalized = [asdict(p) if is_dataclass(p) and not isinstance(p, type) else p for p in parts]
    blob = json.dumps(normalized, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def _tmp_owner() -> str:
    return f"{_TMP_MARK}{_HOST}-{os.getpid()}"


def _tmp_name(final: Path, keep_suffix: bool) -> Path:
    if keep_suffix:  # writers that pick a format from the extension (PyAV, matplotlib)
        return final.with_name(f".{final.stem}{_tmp_owner()}{final.suffix}")
    return final.with_name(f".{final.name}{_tmp_owner()}")


@contextlib.contextmanager
def atomic_path(final: str | Path, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it into place only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(final, keep_suffix)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield an empty staging folder beside ``final``; when the block succeeds it replaces ``final`` whole
    (nothing of an old folder is carried over), when it fails it is removed, so readers see the old folder
    or the new one, whole. A symbolic link is followed: its target is replaced and the link stays."""
    final = Path(final).resolve() if Path(final).is_symlink() else Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.with_name(f".{final.name}{_tmp_owner()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
        if final.exists():
            retired = final.with_name(f".{final.name}.old{_tmp_owner()}")
            os.replace(final, retired)
            os.replace(staging, final)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def check_output_file(path: str | Path, option: str) -> Path:
    """``path`` as a file a command may write at its end, checked before the work: not a folder, its parent a
    folder that exists or can be made and that we may write to (else a one-line error naming ``option``)."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{option} {path} is a folder", f"give {option} a file name, e.g. {path / 'report.md'}", path)
    parent = next((p for p in (path.parent, *path.parent.parents) if p.exists()), Path("."))
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise DataError(f"{option} {path} cannot be written there", "pick a writable folder", parent)
    return path


def atomic_write_text(final: str | Path, text: str) -> None:
    with atomic_path(final) as tmp:
        tmp.write_text(text)


def atomic_write_json(final: str | Path, obj: Any) -> None:
    atomic_write_text(final, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_save_npy(final: str | Path, array: np.ndarray) -> None:
    with atomic_path(final) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array)


def read_json(path: str | Path) -> Any | None:
    """The JSON at ``path``, or None when it is missing or unreadable (treated as not cached)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def sweep_stale_tmp(folder: str | Path, prefix: str | None = None) -> int:
    """Delete temporaries left by killed runs (their writer process no longer exists): everywhere below
    ``folder``, or only its own entries named ``prefix...`` (a run directory's staging folders)."""
    removed = 0
    pattern = re.compile(re.escape(_TMP_MARK) + r"(?:([A-Za-z0-9]+)-)?(\d+)(\.\w+)?$")
    found = Path(folder).glob(f"{prefix}*{_TMP_MARK}*") if prefix else Path(folder).rglob(f"*{_TMP_MARK}*")
    for path in found:
        match = pattern.search(path.name)
        if not match or match.group(1) not in (None, _HOST) or _pid_alive(int(match.group(2))):
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed += 1
    return removed


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class NpyStreamWriter:
    """Append rows to a ``.npy`` file whose length is unknown until the end.

    Reserves a fixed-size header, streams rows after it, then rewrites the header with the final
    shape, so decoding a long video never holds more than one frame in memory.
    """

    HEADER_BYTES = 128  # magic(6) + version(2) + len(2) + dict; fits any realistic shape

    def __init__(self, fh: BinaryIO, row_shape: tuple[int, ...], dtype: DTypeLike):
        self._fh = fh
        self.row_shape = tuple(row_shape)
        self.dtype = np.dtype(dtype)
        self.rows = 0
        fh.write(b"\0" * self.HEADER_BYTES)

    def append(self, row: np.ndarray) -> None:
        if row.shape != self.row_shape:
            raise ValueError(f"row shape {row.shape} != {self.row_shape}")
        self._fh.write(np.ascontiguousarray(row, dtype=self.dtype).tobytes())
        self.rows += 1

    def extend(self, rows: np.ndarray) -> None:
        """Append a block of rows, shape (n, *row_shape)."""
        if rows.shape[1:] != self.row_shape:
            raise ValueError(f"row shape {rows.shape[1:]} != {self.row_shape}")
        self._fh.write(np.ascontiguousarray(rows, dtype=self.dtype).tobytes())
        self.rows += len(rows)

    def close(self) -> None:
        shape = (self.rows, *self.row_shape)
        header = repr({"descr": self.dtype.str, "fortran_order": False, "shape": shape})
        body_len = self.HEADER_BYTES - 10
        header = header.ljust(body_len - 1) + "\n"
        if len(header) != body_len:
            raise ValueError(f"npy header too long for shape {shape}")
        self._fh.seek(0)
        self._fh.write(b"\x93NUMPY\x01\x00" + body_len.to_bytes(2, "little") + header.encode("latin1"))
        self._fh.flush()
