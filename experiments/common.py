"""What every experiment shares: the results record (the command, the commit measured, the date, the machine,
every value), and the marked blocks of README.md, BENCHMARKS.md and docs/*.md it renders.

A results file is ``experiments/results/<name>.json``; a block is the text between ``<!-- NAME:begin -->`` and
``<!-- NAME:end -->`` in one of those files. Only ``render.py`` writes blocks, only from results files.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(1, str(ROOT))  # this checkout's wtal_pipe, installed or not (render.py needs no install)
RESULTS = ROOT / "experiments" / "results"
DOCUMENTS = (ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").glob("*.md")))
Renderer = Callable[[dict[str, Any]], dict[str, str]]  # a results record -> {block name: its Markdown}


def commit() -> str:
    """The commit measured, ``+dirty`` when the working tree differed from it."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    paths = ["wtal_pipe", "experiments", ":!experiments/results"]  # code, not the results being written
    dirty = subprocess.run(["git", "status", "--porcelain", "--", *paths], cwd=ROOT, capture_output=True, text=True)
    return (head or "unknown") + ("+dirty" if dirty.stdout.strip() else "")


def record(name: str, values: dict[str, Any], measured: str | None = None) -> dict[str, Any]:
    """The results record of experiment ``name`` as run now (by the command line that is running); ``measured``
    is the commit taken when a long experiment started (the code that ran), else the commit now."""
    from wtal_pipe.tools.bench import machine

    about = machine()
    script = Path(sys.argv[0]).resolve()
    shown = script.relative_to(ROOT).as_posix() if script.is_relative_to(ROOT) else sys.argv[0]
    return {
        "name": name,
        "command": " ".join(["python", shown, *sys.argv[1:]]),
        "commit": measured or commit(),
        "date": about.pop("date"),
        "machine": about,
        "values": values,
    }


def save(result: dict[str, Any]) -> Path:
    """Write ``experiments/results/<name>.json`` (whole, atomically)."""
    from wtal_pipe.cache import atomic_write_json

    path = RESULTS / f"{result['name']}.json"
    atomic_write_json(path, result)
    return path


def load(name: str) -> dict[str, Any]:
    return json.loads((RESULTS / f"{name}.json").read_text())


def block_pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- {re.escape(name)}:begin -->\n)(.*?)(<!-- {re.escape(name)}:end -->)", re.S)


def machine_line(result: dict[str, Any]) -> str:
    """Where and when a number was measured, in words (for the rendered blocks)."""
    m = result["machine"]
    gpu = f", {m['gpu']}" if m.get("gpu") else ", no GPU"
    where = f"{m['cpu']} ({m['vector_isa']}), {m['cores']} cores{gpu}"
    dirty = " with uncommitted changes" if result["commit"].endswith("+dirty") else ""
    return f"{where}; {result['date']}, commit {result['commit'][:10]}{dirty}; `{result['command']}`"


def measure_and_save(name: str, measure: Callable[[Path], dict[str, Any]]) -> None:
    """Run ``measure`` in a scratch folder and save its values as ``name``'s results, with the commit taken before
    it ran (later edits to the tree do not change what it measured)."""
    import tempfile

    measured = commit()
    with tempfile.TemporaryDirectory() as scratch:
        values = measure(Path(scratch))
    print(f"wrote {save(record(name, values, measured))}")


def mean_sd(values: list[float], digits: int = 2) -> str:
    """``mean +- sd`` with the sample sd, as every table here reports spread."""
    import statistics

    return f"{statistics.mean(values):.{digits}f} +- {statistics.stdev(values):.{digits}f}"


def thumos_shaped(folder: Path, dim: int, seed: int = 0) -> Path:
    """The THUMOS-shaped benchmark (real THUMOS14 timing, ``dim``-d planted features) written to ``folder``."""
    from wtal_pipe.tools.shaped import ShapedFeatures, write_shaped_dataset

    fixtures = ROOT / "tests" / "fixtures"
    write_shaped_dataset(
        fixtures / "thumos14_gt.json", fixtures / "thumos14_gt_fps_duration.json", folder, ShapedFeatures(dim=dim),
        seed=seed,
    )  # fmt: skip
    return folder


def test_average_maps(runs: list[Path], data: Path, checkpoint: str = "final") -> list[float]:
    """Average mAP 0.1:0.7 in % of each run (in ``runs``' order) on DATA_DIR's test subset, at ``checkpoint``."""
    from wtal_pipe.evaluation.report import score_runs

    groups, _ = score_runs(runs, data, "test", checkpoint, "0.1:0.7:0.1")  # type: ignore[arg-type]
    by_path = {run.path.resolve(): 100 * run.result.average_map for group in groups for run in group.runs}
    return [round(by_path[r.resolve()], 2) for r in runs]


def test_average_map(
    run: Path, data: Path, overrides: dict[str, Any] | None = None, checkpoint: str | None = None
) -> float:
    """Average mAP 0.1:0.7 in % of one run on DATA_DIR's test subset, with localization ``overrides`` (a run's
    re-tuned test settings) at ``checkpoint`` (``load_run``'s default when None)."""
    from wtal_pipe.data.annotations import load_annotations
    from wtal_pipe.evaluation.evaluate import THUMOS_TIOU, evaluate
    from wtal_pipe.inference.pipeline import localize_dataset
    from wtal_pipe.run import load_run

    model, meta = load_run(run, "cpu", overrides, checkpoint=checkpoint)  # type: ignore[arg-type]
    detections = localize_dataset(model, meta, data, "test")
    return 100 * evaluate(load_annotations(data / "annotations.json"), detections, "test", THUMOS_TIOU).average_map


def held_out_average_map(run: Path) -> float:
    """Average mAP in % on the run's held-out videos at its final step (the last line of its metrics; a refined
    run's are in its rounds' folders)."""
    from wtal_pipe.run import Run

    return round(100 * json.loads(Run(run).metrics.read_text().splitlines()[-1])["average_mAP"], 2)
