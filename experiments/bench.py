"""BENCHMARKS.md: the shipping ``wtal bench`` (its default sections: decode, flow, I3D, end to end, recipes, memory,
training, localize) on this machine, its report rendered from the results file.

    python experiments/bench.py [--device cuda] [--scale]

Run it on a quiet machine: every figure is a rate or a peak, and anything else running moves it. ``--scale`` adds
the ActivityNet-scale section (about 21 GB of features, 35 min on 2 cores). Writes experiments/results/bench.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, commit, machine_line, record, save

NAME = "bench"
GT = ROOT / "tests" / "fixtures" / "thumos14_gt_fps_duration.json"  # real THUMOS14 durations for "localize"


def _measures(section: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    return [m for m in section["measures"] if m["what"].startswith(prefix)]


def summary(values: dict[str, Any]) -> str:
    """What the report says, in a few lines (docs/benchmarks.md), each figure beside what it measured."""
    sections = {s["title"]: s for s in values["sections"]}
    lines = []
    if "End to end" in sections:
        e2e = sections["End to end"]
        (minute,) = _measures(e2e, "seconds per video-minute")
        lines.append(
            f"- **End to end** ({e2e['setup']}): {minute['value']:,.0f} s per video-minute against "
            f"{minute['naive']:,.0f} s for the naive script, **{minute['naive'] / minute['value']:.2f}x**."
        )
    if "Optical flow" in sections:
        flow = sections["Optical flow"]
        best = max(_measures(flow, "tvl1,"), key=lambda m: m["value"])
        lines.append(
            f"- **Flow** ({flow['setup']}): TV-L1 {best['what'].split(', ')[1]} {best['value']:.3g} pairs/s against "
            f"{best['naive']:.3g} for one OpenCV process with its own threads."
        )
    if "Memory" in sections:
        memory = sections["Memory"]
        peaks = ", ".join(f"{m['value']:,.0f} MiB for a {m['what']}" for m in memory["measures"])
        lines.append(f"- **Memory** ({memory['setup']}): peak RSS {peaks}.")
    if "Localize and evaluate" in sections:
        local = sections["Localize and evaluate"]
        spans = {
            kind: [m["value"] for m in local["measures"] if f": {kind}" in m["what"]]
            for kind in ("localize", "evaluate")
        }
        localize, evaluate = (f"{min(spans[k]):.2g}-{max(spans[k]):.2g} s" for k in ("localize", "evaluate"))
        lines.append(
            f"- **Localize + evaluate** ({local['setup']}): {localize} to localize and {evaluate} to evaluate, "
            "per method."
        )
    if "Training" in sections:
        steps = [
            m for m in _measures(sections["Training"], "") if "THUMOS size" in m["what"] and m["unit"] == "steps/s"
        ]
        slow, fast = min(steps, key=lambda m: m["value"]), max(steps, key=lambda m: m["value"])
        lines.append(
            f"- **Training at THUMOS size** (T 750, D 2048, hidden 2048, the official batch): {slow['value']:.2g} "
            f"({slow['what'].split(',')[0]}) to {fast['value']:.2g} ({fast['what'].split(',')[0]}) optimizer steps/s."
        )
    return "\n".join(lines)


def render(result: dict[str, Any]) -> dict[str, str]:
    """The report ``wtal bench --out`` writes, less its title, and the record's commit and command (BENCHMARKS.md);
    its summary (docs/benchmarks.md)."""
    from wtal_pipe.tools.bench_report import Measure, Section, markdown

    v = result["values"]
    sections = [
        Section(**{**s, "measures": [Measure(**m) for m in s["measures"]]}) for s in v["sections"]
    ]  # fmt: skip
    report = markdown(v["machine"], sections, v["command"]).split("\n", 2)[2]  # the title is the document's own
    recorded = f"Recorded as experiments/results/{NAME}.json: {machine_line(result)}."
    return {"bench": f"{report}\n{recorded}", "bench-summary": f"{summary(v)}\n\n{recorded}"}


def main() -> None:
    from wtal_pipe.tools.bench import run_benchmarks
    from wtal_pipe.tools.bench_sections import DEFAULT_SECTIONS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--scale", action="store_true", help="also the ActivityNet-scale section")
    args = parser.parse_args()
    sections = [*DEFAULT_SECTIONS, *(["scale"] if args.scale else [])]
    measured = commit()  # the code that runs; later edits to the tree do not change what this run measured
    command = f"wtal bench {' '.join(sections)} --device {args.device} --gt {GT.relative_to(ROOT)}"
    results = run_benchmarks(None, device=args.device, gt=GT, only=sections)
    print(f"wrote {save(record(NAME, {'command': command, **results}, measured))}")


if __name__ == "__main__":
    main()
