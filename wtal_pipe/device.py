"""Which device and precision to run on (extraction, training and inference share the choice). torch is
imported where it is used, so the CLI can offer ``DeviceName`` without loading it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

from .errors import WtalError

if TYPE_CHECKING:
    import torch

DeviceName = Literal["auto", "cpu", "cuda"]  # --device


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when a GPU is visible, else the CPU; asking for CUDA without one is an error."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise WtalError("--device cuda was asked for but no CUDA GPU is visible", "use --device auto or cpu")
    return torch.device(name)


def cpu_has_native_bf16() -> bool:
    """True on CPUs with AVX512-BF16 or AMX, where bf16 autocast is faster than fp32."""
    import torch

    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_precision(precision: str) -> str:
    """``auto`` -> fp32 on every device. Features must not depend on the machine that extracted them: bf16
    autocast moves random-weight I3D features by up to 6e-2 (an AVX512-BF16 CPU against fp32), and no
    measurement shows bf16 faster on a GPU. ``bf16`` stays an explicit choice."""
    return "fp32" if precision == "auto" else precision


@contextlib.contextmanager
def fixed_threads(count: int) -> Iterator[None]:
    """Run torch's CPU kernels on exactly ``count`` threads inside the block: a sum split over another
    number of threads rounds differently, so results then do not depend on the machine's cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
