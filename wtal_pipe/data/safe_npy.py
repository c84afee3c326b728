"""Reading ``.npy`` files that strangers made, object arrays included, without running their code.

Feature releases in the W-TALC layout store lists and strings as numpy object arrays, which numpy writes as
a pickle; ``np.load(..., allow_pickle=True)`` would run whatever a crafted pickle asks for. Here the pickle
may name only numpy's array and scalar constructors and their dtype, and what comes out must be arrays,
strings, bytes, numbers and lists of those; anything else is a one-line refusal naming the file.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError

#: the only callables a release's pickle may name (numpy 1 and numpy 2 spellings)
_ALLOWED = {
    (module, name)
    for module in ("numpy.core.multiarray", "numpy._core.multiarray")
    for name in ("_reconstruct", "scalar")
} | {("numpy", "ndarray"), ("numpy", "dtype")}
_SCALARS = (str, bytes, int, float, bool, np.number, np.bool_, np.str_, np.bytes_)


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"it asks to run {module}.{name}")
        if module == "numpy.core.multiarray":  # numpy 1 pickles under numpy 2
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def load_npy(path: Path) -> np.ndarray:
    """An ``.npy`` array; an object array is unpickled with :class:`_ArraysOnly` and checked to hold only
    arrays, strings, bytes, numbers and lists (Python 2 pickles read as latin-1, as numpy does)."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            dtype = header(fh)[2]
            if not dtype.hasobject:
                return np.load(path, allow_pickle=False)
            value = _ArraysOnly(fh, encoding="latin1").load()
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"not a readable .npy file ({exc.__class__.__name__})", "replace the file", path) from exc
    except (pickle.UnpicklingError, AttributeError, TypeError, IndexError) as exc:
        raise DataError(
            f"refused: its pickled contents are not plain arrays, strings and numbers ({exc})",
            "use the release's original file",
            path,
        ) from exc
    if not isinstance(value, np.ndarray) or not _plain(value):
        raise DataError(
            "refused: its pickled contents are not plain arrays, strings and numbers",
            "use the release's original file",
            path,
        )
    return value


#: at most this many objects in one file's pickled contents (a W-TALC release has a few per video)
MAX_ITEMS = 5_000_000


def _plain(value: Any, limit: int = MAX_ITEMS) -> bool:
    """Only arrays, strings, bytes, numbers and lists of them, nested a few levels at most. Each object is
    visited once (pickle memo references can share one list a million times over) and at most ``limit``
    items are looked at, so a small crafted file cannot keep the check busy."""
    seen: set[int] = set()
    stack: list[tuple[Any, int]] = [(value, 0)]
    looked = 0
    while stack:
        item, depth = stack.pop()
        looked += 1
        if looked > limit or depth > 8:
            return False
        if isinstance(item, _SCALARS):
            continue
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, np.ndarray):
            if item.dtype.hasobject:
                stack.extend((child, depth + 1) for child in item.ravel())
        elif isinstance(item, (list, tuple)):
            stack.extend((child, depth + 1) for child in item)
        else:
            return False
    return True


def as_text(value: Any, what: str = "name", source: Path | str | None = None) -> str:
    """A name from a release: bytes (Python 2 strings) decoded as UTF-8, numpy strings as str; anything else
    (a list, a number) is a one-line error naming ``what`` and the file."""
    if isinstance(value, (bytes, np.bytes_)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"a {what} is not UTF-8 text", "use the release's original file", source) from exc
    if isinstance(value, (str, np.str_)):
        return str(value)
    raise DataError(f"a {what} is a {type(value).__name__}, not text", "use the release's original file", source)
