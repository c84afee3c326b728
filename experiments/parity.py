"""Parity over whole training runs: the authors' training code and ``wtal train``, the same settings and seeds, on
the THUMOS-shaped benchmark at 256-d, each final step scored by the same test code (the authors' weights through
``wtal import checkpoint``, whose detections equal their test code's: tests/test_parity.py).

    python experiments/parity.py --method um --official ~/src/WTAL-Uncertainty-Modeling [--work DIR]

The protocol is fixed here before any run: seeds 1-5 a side, the settings of ``PROTOCOL``, average mAP over tIoU
0.1:0.7, and the difference (ours - authors') reported with its 95% Welch interval. ``--official`` is the user's
own clone of the repository ``experiments/official/authors.py`` names for the method, at its commit; the driver
copies it to a temporary folder and patches only what it lists. Writes results/parity_<method>.json.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "official"))

from common import commit, machine_line, mean_sd, record, save, test_average_map, thumos_shaped

SEEDS = (1, 2, 3, 4, 5)  # fixed before running: 5 a side for every method
METHODS = ("um", "cmcs", "basnet", "backtal", "case")
#: per method: wtal's settings (the official ones but for these) and, in words, what both sides ran
PROTOCOL: dict[str, dict[str, Any]] = {
    "um": {
        "ours": {"hidden_dim": 512, "iterations": 1000, "lr": 1e-3},
        "words": "hidden 512, 1000 steps, lr 1e-3, batch 16; margin 50 (theirs given 50, ours scaled from 100 by "
        "sqrt(512/2048))",
    },
    "cmcs": {
        "ours": {"iterations": 800, "lr": 1e-3},
        "words": "800 steps, lr 1e-3, 24 videos per step, late fusion, no hard negatives (none in this data)",
    },
    "basnet": {
        "ours": {"hidden_dim": 128, "iterations": 600, "lr": 1e-3},
        "words": "hidden 128, 600 steps, lr 1e-3, batch 16",
    },
    "backtal": {
        "ours": {"hidden_dim": 128, "epochs": 20, "lr": 1e-3},
        "words": "hidden 128, 20 epochs (260 steps), lr 1e-3, batch 16, the same simulated clicks",
    },
    "case": {  # the official widths; lr from a validation pilot (seed 0, --val 0.2: lr 1e-4 held out 3.0 after 500
        # steps, lr 1e-3 13-15 from step 150 on), epochs cut to what fits the CPU
        "ours": {"epochs": 25, "lr": 1e-3},
        "words": "official widths (512, 16 clusters), 25 epochs (300 steps, batch 16, the short batch dropped), "
        "lr 1e-3",
    },
}
FEATURE_DIM, FEATURE_SEED, CLICK_SEED = 256, 0, 0
#: the README's methods table: each method's paper and what it trains on (no number: those are measured below)
PAPERS = {
    "basnet": ("BaS-Net, AAAI 2020", "video labels"),
    "um": ("UM, AAAI 2021", "video labels"),
    "cmcs": ("CMCS, CVPR 2019", "video labels, hard negatives"),
    "backtal": ("BackTAL, 2021", "video labels, background clicks"),
    "case": ("CASE, ICCV 2023", "video labels"),
}


def name(method: str) -> str:
    return f"parity_{method}"


NAMES = tuple(name(m) for m in METHODS)


def welch(a: list[float], b: list[float]) -> dict[str, float]:
    """mean(b) - mean(a) with its 95% Welch interval (sample sds), and the t statistic."""
    from scipy import stats

    ma, mb = sum(a) / len(a), sum(b) / len(b)
    va = sum((x - ma) ** 2 for x in a) / (len(a) - 1)
    vb = sum((x - mb) ** 2 for x in b) / (len(b) - 1)
    se = math.sqrt(va / len(a) + vb / len(b))
    df = se**4 / ((va / len(a)) ** 2 / (len(a) - 1) + (vb / len(b)) ** 2 / (len(b) - 1)) if se else float("inf")
    half = float(stats.t.ppf(0.975, df)) * se
    return {"difference": mb - ma, "low": mb - ma - half, "high": mb - ma + half, "t": (mb - ma) / se if se else 0.0}


def _stats(values: list[float]) -> str:
    return f"{mean_sd(values)} ({', '.join(f'{v:.2f}' for v in values)})"


def render(results: dict[str, dict[str, Any]]) -> dict[str, str]:
    lines = [
        "| method (settings, both sides) | authors' code | `wtal train` | difference, 95% interval (Welch) |",
        "|---|---|---|---|",
    ]
    notes = []
    for method in METHODS:
        result = results.get(name(method))
        if result is None:
            continue
        v = result["values"]
        authors, ours = [v["official"][str(s)] for s in SEEDS], [v["ours"][str(s)] for s in SEEDS]
        w = welch(authors, ours)
        lines.append(
            f"| {method} ({PROTOCOL[method]['words']}) | {_stats(authors)} | {_stats(ours)} | "
            f"{w['difference']:+.2f} [{w['low']:+.2f}, {w['high']:+.2f}] |"
        )
        notes.append(f"{method}: {v['official_repository']}@{v['official_commit'][:7]}; {machine_line(result)}")
    parts = []
    if notes:
        parts.append(
            "\n".join(lines) + "\n\nAverage mAP 0.1:0.7 in %, seeds 1-5 a side, final step. " + "; ".join(notes) + "."
        )
    missing = [m for m in METHODS if name(m) not in results]
    if missing:
        parts.append(f"Not measured by this script yet: {', '.join(missing)} (no results file).")
    return {"parity": "\n\n".join(parts), "methods": _methods_table(results)}


def _methods_table(results: dict[str, dict[str, Any]]) -> str:
    """The README's methods table: per method its paper, supervision and the parity row's difference."""
    lines = [
        "| `--method` | paper | trains on | `wtal train` - authors' code, 5 seeds a side (95% interval) |",
        "|---|---|---|---|",
    ]
    for method in sorted(PAPERS, key=lambda m: METHODS.index(m)):
        result = results.get(name(method))
        if result is None:
            measured = "not measured yet"
        else:
            v = result["values"]
            w = welch([v["official"][str(s)] for s in SEEDS], [v["ours"][str(s)] for s in SEEDS])
            measured = f"{w['difference']:+.2f} [{w['low']:+.2f}, {w['high']:+.2f}]"
        paper, supervision = PAPERS[method]
        lines.append(f"| `{method}` | {paper} | {supervision} | {measured} |")
    return "\n".join(lines) + (
        "\n\nAverage mAP 0.1:0.7 in points on the THUMOS-shaped benchmark (256-d), final steps; the settings, runs and "
        "machines are in [docs/methods.md](docs/methods.md)."
    )


def _data(work: Path, method: str) -> Path:
    """The THUMOS-shaped benchmark at 256-d (its features seed fixed), with simulated clicks for BackTAL."""
    import json

    import numpy as np

    from wtal_pipe.data.clicks import simulate_clicks

    data = work / "data"
    if not (data / "annotations.json").exists():
        thumos_shaped(data, FEATURE_DIM, FEATURE_SEED)
    if method == "backtal" and not (data / "clicks.json").exists():
        database = json.loads((data / "annotations.json").read_text())["database"]
        rng = np.random.default_rng(CLICK_SEED)
        clicks = {}
        for vid, video in sorted(database.items()):
            if video["subset"] == "train":
                segments = [(a["segment"][0], a["segment"][1], 0) for a in video["annotations"]]
                clicks[vid] = simulate_clicks(segments, video["duration"], 25.0, rng).tolist()
        (data / "clicks.json").write_text(json.dumps(clicks))
    return data


def main() -> None:
    import importlib

    from authors import OFFICIAL, checked_commit

    from wtal_pipe.run import import_checkpoint
    from wtal_pipe.training.train import TrainOptions, train

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=METHODS, required=True)
    parser.add_argument("--official", type=Path, required=True, help="your clone of the authors' repository")
    parser.add_argument("--work", type=Path, default=Path("parity_work"), help="data and runs (reused)")
    args = parser.parse_args()
    method, work = args.method, args.work.resolve()
    measured = commit()  # the code that runs; later edits to the tree do not change what this run measured
    data = _data(work, method)
    driver = importlib.import_module({"um": "pilhyeon", "basnet": "pilhyeon"}.get(method, method))
    values: dict[str, Any] = {
        "protocol": PROTOCOL[method]["ours"],
        "official_repository": OFFICIAL[method].repository,
        "official_commit": checked_commit(args.official.resolve(), method),
        "official": {},
        "ours": {},
    }
    for seed in SEEDS:
        files = driver.train_for_parity(
            method, args.official.resolve(), data, work / "official" / method, seed, PROTOCOL[method]["ours"]
        )
        run = work / "runs" / f"official_{method}_{seed}"
        import_checkpoint(files, method, data, run, force=True)
        values["official"][str(seed)] = test_average_map(run, data)
        ours = work / "runs" / f"ours_{method}_{seed}"
        options = TrainOptions(method, data, ours, seed=seed, preset="thumos14", device="cpu",
                               overrides=PROTOCOL[method]["ours"])  # fmt: skip
        train(options)
        values["ours"][str(seed)] = test_average_map(ours, data)
        print(
            f"{method} seed {seed}: authors' {values['official'][str(seed)]:.2f}, ours {values['ours'][str(seed)]:.2f}"
        )
    print(f"wrote {save(record(name(method), values, measured))}")


if __name__ == "__main__":
    main()
