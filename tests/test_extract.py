"""`wtal extract` end to end on generated clips: row counts, provenance, cache, failures, kills."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from wtal_pipe.features.i3d import InceptionI3d

from .conftest import slow_extract_command

SMALL = ["--short-side", "64", "--crop", "64", "--flow", "dis", "--workers", "1", "--device", "cpu"]


def _rows(n_source: int, fps: float) -> int:
    frames_25 = int(np.ceil(n_source / fps * 25 - 1e-6))
    return frames_25 // 16


def test_rows_and_provenance(make_clip, run_cli, tmp_path):
    make_clip("a30.mp4", seconds=3.0, fps=30.0)
    make_clip("b2997.mp4", seconds=2.6, fps=30000 / 1001, codec="libx264")
    make_clip("c50.mkv", seconds=1.4, fps=50.0, codec="ffv1", size=(81, 145))
    code, out, err = run_cli("extract", tmp_path, "--data", tmp_path / "data", *SMALL)
    assert code == 0, err
    assert "RANDOM" in err and "[flow dis, 1 worker(s), I3D on cpu fp32]" in out  # not eaten as markup
    expected = {"a30": _rows(90, 30.0), "b2997": _rows(78, 30000 / 1001), "c50": _rows(70, 50.0)}
    assert expected == {"a30": 4, "b2997": 4, "c50": 2}
    for stem, rows in expected.items():
        features = np.load(tmp_path / "data" / "features" / f"{stem}.npy")
        assert features.shape == (rows, 2048) and features.dtype == np.float32
        assert np.isfinite(features).all() and features[:, :1024].std() > 0 and features[:, 1024:].std() > 0
        meta = json.loads((tmp_path / "data" / "features" / f"{stem}.json").read_text())
        extraction = meta["extraction"]
        assert meta["shape"] == [rows, 2048] and extraction["decode"]["fps"] == 25.0
        assert extraction["features"]["chunk"] == 16 and meta["seconds_per_row"] == pytest.approx(0.64)
        assert extraction["features"]["rgb_weights"] is None and meta["weights"]["rgb"] == {"random_seed": 0}
        assert extraction["flow"]["preset"] == "dis" and extraction["decode"]["crop"] == 64
        assert meta["n_frames"] // 16 == rows and {"torch", "av", "opencv"} <= set(meta["versions"])
    assert json.loads((tmp_path / "data/features/c50.json").read_text())["source"]["width"] == 81


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir() if not p.name.startswith(".")}


def test_cache_hits_and_targeted_invalidation(make_clip, run_cli, tmp_path):
    make_clip("v.mp4", seconds=2.0, fps=25.0)
    data = tmp_path / "data"
    assert run_cli("extract", tmp_path / "v.mp4", "--data", data, *SMALL)[0] == 0
    cache = data / "cache" / "v"
    first = _mtimes(cache)
    features_mtime = (data / "features/v.npy").stat().st_mtime_ns
    original = np.load(data / "features/v.npy")

    code, out, _ = run_cli("extract", tmp_path / "v.mp4", "--data", data, *SMALL)
    assert code == 0 and "cached v.mp4" in out and "1 ok (1 cached)" in out
    assert (data / "features/v.npy").stat().st_mtime_ns == features_mtime and _mtimes(cache) == first

    # new weights: features recomputed, decoded frames and flow reused untouched
    torch.manual_seed(123)
    ckpt = tmp_path / "rgb.pt"
    torch.save(InceptionI3d(3).state_dict(), ckpt)
    code, out, _ = run_cli("extract", tmp_path / "v.mp4", "--data", data, *SMALL, "--rgb-weights", ckpt)
    assert code == 0 and "done v.mp4" in out
    assert _mtimes(cache) == first
    changed = np.load(data / "features/v.npy")
    assert not np.allclose(changed[:, :1024], original[:, :1024])
    np.testing.assert_allclose(changed[:, 1024:], original[:, 1024:], rtol=1e-5, atol=1e-6)
    meta = json.loads((data / "features/v.json").read_text())
    assert meta["weights"]["rgb"]["path"] == str(ckpt) and len(meta["weights"]["rgb"]["sha256"]) == 64

    # new flow preset: frames reused, a second flow cache appears
    code, _, _ = run_cli(
        "extract",
        tmp_path / "v.mp4",
        "--data",
        data,
        *SMALL[:4],
        "--flow",
        "tvl1-fast",
        "--workers",
        "2",
        "--device",
        "cpu",
    )
    assert code == 0
    after = _mtimes(cache)
    assert {k: v for k, v in after.items() if k.startswith("frames")} == {
        k: v for k, v in first.items() if k.startswith("frames")
    }
    assert len([k for k in after if k.startswith("flow-") and k.endswith(".npy")]) == 2


def test_batch_size_does_not_change_features(make_clip, run_cli, tmp_path):
    make_clip("v.mp4", seconds=2.0, fps=25.0)
    for batch in (1, 3):
        assert (
            run_cli(
                "extract",
                tmp_path / "v.mp4",
                "--data",
                tmp_path / f"d{batch}",
                *SMALL,
                "--batch-size",
                batch,
                "--precision",
                "fp32",
            )[0]
            == 0
        )
    np.testing.assert_allclose(
        np.load(tmp_path / "d1/features/v.npy"), np.load(tmp_path / "d3/features/v.npy"), rtol=1e-4, atol=1e-5
    )


def test_bad_videos_are_reported_and_the_rest_finish(make_clip, run_cli, tmp_path):
    videos = tmp_path / "videos"
    make_clip("videos/good.mp4", seconds=1.4, fps=25.0)
    (videos / "text.mp4").write_text("hello, not a video\n" * 50)
    truncated = make_clip("videos/cut.mp4", seconds=3.0, fps=25.0)
    truncated.write_bytes(truncated.read_bytes()[:800])
    (videos / "empty.avi").write_bytes(b"")
    code, out, err = run_cli("extract", videos, "--data", tmp_path / "data", *SMALL)
    assert code == 1
    failures = [line for line in err.splitlines() if line.startswith("FAILED")]
    assert len(failures) == 3, err
    for name in ("text.mp4", "cut.mp4", "empty.avi"):
        assert sum(name in line for line in failures) == 1
    assert "1 ok (0 cached), 3 failed" in out
    assert np.load(tmp_path / "data/features/good.npy").shape == (2, 2048)
    assert sorted(p.name for p in (tmp_path / "data/features").iterdir()) == ["good.json", "good.npy"]


def test_user_errors_are_one_line(make_clip, run_cli, tmp_path):
    code, _, err = run_cli("extract", tmp_path, "--data", tmp_path / "d")
    assert code == 2 and "no videos found" in err
    make_clip("v.mp4", seconds=1.0)
    code, _, err = run_cli("extract", tmp_path / "missing_dir", "--data", tmp_path / "d")
    assert code == 2 and err.count("\n") == 1 and "error:" in err
    code, _, err = run_cli("extract", tmp_path, "--flow", "raft")
    assert (
        code == 2
        and "unknown flow preset 'raft' (choose one of tvl1, tvl1-torch, dis, tvl1-fast)" in err
        and err.count("\n") == 1
    )
    code, _, err = run_cli("extract", tmp_path, "--rgb-weights", tmp_path / "nope.pt")
    assert code == 2 and "nope.pt: checkpoint file not found" in err


@pytest.mark.slow
def test_killed_run_leaves_no_trusted_partial_file(make_clip, tmp_path):
    clip = make_clip("slow.mp4", seconds=6.0, fps=25.0, size=(160, 120))
    data = tmp_path / "data"
    cmd = slow_extract_command(clip, data, workers=1)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    cache = data / "cache" / "slow"
    deadline = time.time() + 120
    while time.time() < deadline and not list(cache.glob(".flow-*.tmp-*")):
        time.sleep(0.05)
    assert list(cache.glob(".flow-*.tmp-*")), "flow never started"
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (data / "features").exists() or not list((data / "features").iterdir())
    assert not list(cache.glob("flow-*.npy"))  # only the temporary exists, under a name nobody trusts
    frames = list(cache.glob("frames-*.npy"))
    assert len(frames) == 1 and np.load(frames[0], mmap_mode="r").shape == (150, 112, 112, 3)

    resumed = subprocess.run(
        [*cmd[:-8], "--short-side", "128", "--crop", "112", "--flow", "dis", "--workers", "1", "--device", "cpu"],
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert np.load(data / "features/slow.npy").shape == (150 // 16, 2048)
    assert not list(cache.glob(".*.tmp-*"))  # the dead run's temporaries were swept
    assert [p.name for p in cache.glob("frames-*.npy")] == [frames[0].name]  # decode work was kept


def test_the_old_spellings_of_the_dataset_folder_are_gone(make_clip, run_cli, tmp_path):
    make_clip("v.mp4", seconds=1.0)
    code, _, err = run_cli("extract", tmp_path / "v.mp4", "--out", tmp_path / "data", *SMALL)
    assert code == 2 and "No such option: --out" in err and err.count("\n") == 1
    code, _, err = run_cli("negatives", tmp_path / "data")
    assert code == 2 and "unexpected extra argument" in err.lower()
