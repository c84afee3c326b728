"""What ``wtal bench`` reports and how it writes it, importable with the standard library alone (the
experiments render BENCHMARKS.md from a results file with it, where the pipeline's dependencies may be absent)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Measure:
    """One number; ``naive`` is the same quantity for the naive baseline, measured in the same run."""

    what: str
    value: float
    unit: str
    naive: float | None = None
    higher_is_better: bool = True

    @property
    def speedup(self) -> float | None:
        if self.naive is None or not self.value or not self.naive:
            return None
        return self.value / self.naive if self.higher_is_better else self.naive / self.value


@dataclass
class Section:
    title: str
    setup: str
    measures: list[Measure] = field(default_factory=list)
    seconds: float = 0.0  # how long measuring the section took


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def markdown(info: dict[str, Any], sections: list[Section], command: str) -> str:
    gpu = info["gpu"] or "none"
    lines = [
        "# Benchmarks",
        "",
        f"Measured {info['date']} with `{command}` on {info['cpu']} ({info['cores']} cores, "
        f"{info['memory_gib']} GiB), GPU: {gpu}.",
        f"Python {info['python']}, wtal-pipe {info['wtal_pipe']}, torch {info['torch']} "
        f"({info['torch_threads']} threads), OpenCV {info['opencv']}, PyAV {info['av']}, NumPy {info['numpy']}.",
        "",
        "The naive baseline is measured in the same run: decode the whole video into memory, OpenCV TV-L1 pair "
        "after pair in one process (OpenCV's default threads), I3D fp32 one chunk at a time.",
    ]
    for section in sections:
        lines += [
            "",
            f"## {section.title}",
            "",
            f"{section.setup} (measured in {section.seconds:.0f} s)",
            "",
            "| what | value | naive | speed-up |",
            "|---|---|---|---|",
        ]
        for m in section.measures:
            naive = f"{_number(m.naive)} {m.unit}" if m.naive is not None else ""
            speedup = f"{m.speedup:.2f}x" if m.speedup is not None else ""
            lines.append(f"| {m.what} | {_number(m.value)} {m.unit} | {naive} | {speedup} |")
    return "\n".join(lines) + "\n"
