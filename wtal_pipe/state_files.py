"""Reading tensor files that strangers may have written (I3D weights, the authors' checkpoints, runs):
``torch.load(weights_only=True)`` only, every failure a one-line error naming the file."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import DataError


def load_state_file(path: Path, fix: str) -> dict[str, torch.Tensor]:
    """The tensors an official file holds: a checkpoint's state dict, or (``.npy``, e.g. CASE's ``cls_gt.npy``)
    one array named after the file; NumPy's pickled object arrays are refused like pickled objects."""
    if path.suffix != ".npy":
        return unwrap_state_dict(load_trusted_types(path, fix), path)
    if not path.exists():
        raise DataError("file not found", fix, path)
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise DataError(f"not a plain NumPy array ({str(exc).splitlines()[0]})", fix, path) from exc
    if array.dtype.kind not in "fiu":
        raise DataError(f"holds {array.dtype} values, not numbers", fix, path)
    return {path.stem: torch.from_numpy(np.ascontiguousarray(array))}


def load_trusted_types(path: Path, fix: str) -> Any:
    """The object a ``.pt``/``.pth``/``.pkl`` file holds, unpickling nothing but tensors and plain values."""
    if not path.exists():
        raise DataError("file not found", fix, path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise DataError(
            f"refused to unpickle ({str(exc).splitlines()[0]})",
            "only plain state_dict checkpoints are loaded (weights_only=True)",
            path,
        ) from exc
    except Exception as exc:  # damaged or foreign files fail in many ways (EOFError, UnicodeDecodeError, ...)
        raise DataError(f"not a readable torch checkpoint ({exc.__class__.__name__})", fix, path) from exc


def unwrap_state_dict(raw: Any, path: Path) -> dict[str, torch.Tensor]:
    """A state dict of tensors from what training scripts save: plain, or wrapped as ``{"state_dict": ...}``,
    ``{"model": ...}``, ``{"model_state_dict": ...}``, with or without DataParallel's ``module.`` prefix."""
    for wrapper in ("state_dict", "model", "model_state_dict"):
        if isinstance(raw, dict) and isinstance(raw.get(wrapper), dict):
            raw = raw[wrapper]
    if not isinstance(raw, dict) or not raw or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise DataError("not a state dict of tensors", "pass the file a training script wrote with torch.save", path)
    return {str(k).removeprefix("module."): v for k, v in raw.items()}
