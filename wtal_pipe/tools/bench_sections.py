"""The sections ``wtal bench`` measures, importable without NumPy (the CLI lists them in its help)."""

from typing import Literal, get_args

BenchSection = Literal["decode", "flow", "i3d", "end-to-end", "recipes", "memory", "train", "localize", "scale"]
BENCH_SECTIONS: tuple[str, ...] = get_args(BenchSection)
#: what ``wtal bench`` measures unless sections are named: "scale" writes ~21 GB of features, so it runs when asked
DEFAULT_SECTIONS: tuple[str, ...] = tuple(s for s in BENCH_SECTIONS if s != "scale")
