"""What choosing the checkpoint on test is worth: each method trained twice per seed on the THUMOS-shaped benchmark
at 64-d, once holding out a seeded fifth of its training videos (``--val 0.2``) and once watching the test subset
(``--select-on test``, the official protocol), then scored on test at the step each one kept and, for the second,
at its final step (all training videos, nothing selected).

    python experiments/trust.py

Settings are CPU-sized and fixed here before running (``SETTINGS``, seeds 1-3). Writes
experiments/results/trust.json; ``render.py`` puts the table in docs/protocol.md.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_line, mean_sd, measure_and_save, test_average_maps, thumos_shaped

NAME = "trust"
SEEDS = (1, 2, 3)  # fixed before running
FEATURE_DIM = 64
#: per method, on top of its THUMOS14 preset: CPU-sized runs, lr 1e-3 (the published 1e-4 needs full length)
SETTINGS: dict[str, dict[str, Any]] = {
    "um": {"iterations": 500, "lr": 1e-3, "hidden_dim": 64},
    "cmcs": {"iterations": 1500, "lr": 1e-3, "accumulate": 4},
    "basnet": {"iterations": 150, "lr": 1e-3, "hidden_dim": 64},
    "backtal": {"iterations": 52, "lr": 1e-3, "hidden_dim": 64},
}
#: the columns: (how the run was trained, which step is scored)
COLUMNS = {
    "final": ("testsel", "final"),
    "best_on_test": ("testsel", "best"),
    "best_on_validation": ("val", "best"),
}


def measure(root: Path) -> dict[str, Any]:
    from wtal_pipe.methods import get_method
    from wtal_pipe.training.train import TrainOptions, train

    data = thumos_shaped(root / "data", FEATURE_DIM)
    values: dict[str, Any] = {"seeds": list(SEEDS), "feature_dim": FEATURE_DIM, "settings": SETTINGS, "methods": {}}
    for method, settings in SETTINGS.items():
        runs: dict[str, list[Path]] = {"val": [], "testsel": []}
        for seed in SEEDS:
            for kind in runs:
                out = root / f"{method}-{kind}" / f"seed-{seed}"
                train(
                    TrainOptions(
                        method, data, out, seed=seed, preset="thumos14", device="cpu", overrides=settings,
                        simulate_clicks=get_method(method).uses_clicks, val="0.2" if kind == "val" else None,
                        select_on_test=kind == "testsel",
                    )
                )  # fmt: skip
                runs[kind].append(out)
        values["methods"][method] = {
            column: dict(zip(map(str, SEEDS), test_average_maps(runs[kind], data, step), strict=True))
            for column, (kind, step) in COLUMNS.items()
        }
        print(method, values["methods"][method])
    return values


def render(result: dict[str, Any]) -> dict[str, str]:
    v = result["values"]
    lines = [
        "| method (settings) | final step (all training videos) | best step on test, same runs (the papers' "
        "protocol) | test-selection optimism | best step on validation (4/5 of the training videos) |",
        "|---|---|---|---|---|",
    ]
    for method, columns in v["methods"].items():
        final, on_test, on_val = ([columns[c][str(s)] for s in v["seeds"]] for c in COLUMNS)
        optimism = statistics.mean(on_test) - statistics.mean(final)
        settings = ", ".join(f"{k} {x:g}" for k, x in v["settings"][method].items())
        lines.append(
            f"| {method} ({settings}) | {mean_sd(final)} | {mean_sd(on_test)} | {optimism:+.2f} | {mean_sd(on_val)} |"
        )
    text = (
        "\n".join(lines) + f"\n\nAverage mAP 0.1:0.7 on test, %, mean +- sample sd over seeds "
        f"{', '.join(map(str, v['seeds']))}; {v['feature_dim']}-d features; BackTAL with simulated clicks. "
        f"{machine_line(result)}."
    )
    return {"trust": text}


if __name__ == "__main__":
    measure_and_save(NAME, measure)
