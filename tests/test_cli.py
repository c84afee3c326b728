"""The command line itself: start-up cost, --version, and the commands not covered elsewhere."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from wtal_pipe import __version__
from wtal_pipe.methods import list_methods

FIXTURES = Path(__file__).parent / "fixtures"


def test_help_does_not_import_torch():
    code = "import sys; import wtal_pipe.cli; print(sorted({'torch', 'cv2', 'av'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_version(run_cli):
    code, out, _ = run_cli("--version")
    assert code == 0 and out.strip() == f"wtal-pipe {__version__}"


def test_make_sample_writes_a_clip_with_its_planted_actions(tmp_path, run_cli):
    from wtal_pipe.video.decode import iter_frames

    code, out, _ = run_cli("make-sample", tmp_path / "s.mp4", "--seconds", "2", "--fps", "25")
    assert code == 0 and "red_square_horizontal 1.5-3.5 s" in out
    assert sum(1 for _ in iter_frames(tmp_path / "s.mp4")) == 50


def test_import_bas_thumos_through_the_cli(tmp_path, run_cli):
    gt = json.loads((FIXTURES / "thumos14_gt.json").read_text())["database"]
    vid = next(v for v in gt if gt[v]["subset"] == "test")
    source = tmp_path / "bas"
    for stream, value in (("rgb", 1.0), ("flow", 2.0)):
        (source / "features" / "test" / stream).mkdir(parents=True)
        np.save(source / "features" / "test" / stream / f"{vid}.npy", np.full((7, 1024), value, np.float32))
    (source / "gt.json").write_text(json.dumps({"database": {vid: gt[vid]}}))
    shutil.copy(FIXTURES / "thumos14_gt_fps_duration.json", tmp_path / "durations.json")
    code, out, err = run_cli(
        "import", "bas-thumos", source, "--data", tmp_path / "data", "--durations", tmp_path / "durations.json"
    )
    assert code == 0 and "imported 1 videos" in out, err
    entry = json.loads((tmp_path / "data" / "annotations.json").read_text())["database"][vid]
    assert entry["duration"] > 0 and entry["fps"] > 0
    assert np.load(tmp_path / "data" / "features" / f"{vid}.npy")[0, 1024] == 2.0


def test_bench_quick_measures_every_section_next_to_its_baseline(tmp_path, run_cli):
    """CI's smoke test of `wtal bench`: every section at toy sizes, Markdown and JSON with the machine."""
    code, _, _ = run_cli(
        "bench", "--quick", "--out", tmp_path / "B.md", "--json", tmp_path / "b.json", "--device", "cpu"
    )
    results = json.loads((tmp_path / "b.json").read_text())
    sections = {s["title"]: s for s in results["sections"]}
    report = (tmp_path / "B.md").read_text()
    assert code == 0 and results["machine"]["cores"] >= 1 and results["machine"]["date"] in report
    assert list(sections) == [
        "Decode",
        "Optical flow",
        "I3D features",
        "End to end",
        "Extraction recipes",
        "Memory",
        "Training",
        "Localize and evaluate",
        "ActivityNet scale",
    ]
    assert all(m["value"] > 0 for s in sections.values() for m in s["measures"])
    flow = {m["what"]: m for m in sections["Optical flow"]["measures"]}
    assert flow["tvl1, 1 worker(s)"]["naive"] > 0 and any(w.startswith("tvl1-torch on cpu") for w in flow)
    assert "identical to the naive script" in sections["End to end"]["setup"]
    methods = len(list_methods())
    assert len(sections["Memory"]["measures"]) == 2 and len(sections["Training"]["measures"]) == 2 * methods
    evaluation_shares = [m for m in sections["Training"]["measures"] if m["unit"] == "%"]
    assert len(evaluation_shares) == methods and all(m["value"] > 0 for m in evaluation_shares)
    detections = [m for m in sections["Localize and evaluate"]["measures"] if "localize (" in m["what"]]
    assert len(detections) == methods and all(" 0 detections" not in m["what"] for m in detections)
    assert "## End to end" in report and "| speed-up |" in report
    recipes = [m["what"] for m in sections["Extraction recipes"]["measures"]]  # 1 s at 30 fps, each recipe's rows
    assert [w.rsplit(", ", 1)[1] for w in recipes] == [
        "bas-um-thumos14 (1 row)",
        "cmcs-actionformer-thumos14 (4 rows)",
        "wtalc (1 row)",
        "anet13-100-rows (100 rows)",
    ]
    scale = {m["what"]: m["value"] for m in sections["ActivityNet scale"]["measures"]}
    assert len(scale) == 8 and all(scale[f"{n} videos: wtal train peak RSS"] > 100 for n in (30, 300))


def test_bench_refuses_an_unknown_section(run_cli):
    code, out, err = run_cli("bench", "decoding", "--quick")
    assert code != 0 and "no benchmark section 'decoding'" in out + err
