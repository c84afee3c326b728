"""The sections ``wtal bench`` measures, importable without NumPy (the CLI lists them in its help)."""

from typing import Literal, get_args

BenchSection = Literal["decode", "flow", "i3d", "end-to-end", "memory", "train", "localize"]
BENCH_SECTIONS: tuple[str, ...] = get_args(BenchSection)
