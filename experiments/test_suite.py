"""The README's test block on this machine: how many tests, how long they take (fast ones and all), and how big
the environment the block installs is. Run it on an idle machine, from the environment the block made.

    python experiments/test_suite.py
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, machine_line, record, save

NAME = "test_suite"


def pytest_run(*marks: str) -> dict[str, Any]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *marks],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    counts = {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|failed|skipped|errors?)", summary)}
    if done.returncode != 0 or counts.get("failed"):
        raise SystemExit(f"the tests failed: {summary}")
    return {"seconds": round(seconds, 1), **counts}


def environment_gib() -> float:
    done = subprocess.run(["du", "-sk", sys.prefix], capture_output=True, text=True)
    return round(int(done.stdout.split()[0]) / 2**20, 1)


def render(result: dict[str, Any]) -> dict[str, str]:
    v = result["values"]
    text = (
        f"Measured on an idle machine: {v['all']['passed']} tests in {v['all']['seconds'] / 60:.0f} minutes "
        f"({v['fast']['passed']} without the slow ones in {v['fast']['seconds'] / 60:.0f}); the environment the "
        f"block installs takes {v['environment_gib']:g} GiB ({machine_line(result)})."
    )
    return {"tests-measured": text}


def main() -> None:
    values = {"environment_gib": environment_gib(), "fast": pytest_run("-m", "not slow"), "all": pytest_run()}
    print(values)
    print(f"wrote {save(record(NAME, values))}")


if __name__ == "__main__":
    main()
