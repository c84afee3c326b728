"""What matching a published feature set costs: ``wtal bench recipes`` (each extraction recipe end to end on one
generated clip, TV-L1 flow, random I3D weights) on this machine, rendered into docs/extraction.md.

    python experiments/recipes_cost.py [--device cuda]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_line, record, save

NAME = "recipes_cost"


def render(result: dict[str, Any]) -> dict[str, str]:
    v = result["values"]
    lines = [
        f"Each recipe end to end on a {v['clip_seconds']:g} s generated 30 fps clip ({machine_line(result)}):",
        "",
        "| recipe | rows from the clip | seconds per video-minute | x the default |",
        "|---|---|---|---|",
    ]
    default = v["recipes"][0]["seconds_per_minute"]
    for entry in v["recipes"]:
        lines.append(
            f"| `{entry['recipe']}` | {entry['rows']} | {entry['seconds_per_minute']:,.0f} | "
            f"{entry['seconds_per_minute'] / default:.1f}x |"
        )
    return {"recipes-cost": "\n".join(lines)}


def main() -> None:
    import re

    from wtal_pipe.tools.bench import run_benchmarks

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    results = run_benchmarks(None, device=args.device, only=["recipes"])
    (section,) = results["sections"]
    recipes = []
    for measure in section["measures"]:
        found = re.fullmatch(r"seconds per video-minute, (\S+) \((\d+) rows?\)", measure["what"])
        assert found, measure["what"]
        recipes.append({"recipe": found[1], "rows": int(found[2]), "seconds_per_minute": round(measure["value"], 1)})
    values = {"clip_seconds": results["sizes"]["recipe_seconds"], "setup": section["setup"], "recipes": recipes}
    print(values)
    print(f"wrote {save(record(NAME, values))}")


if __name__ == "__main__":
    main()
