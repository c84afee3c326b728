"""Extraction over a real Dask LocalCluster (worker processes on 127.0.0.1) and sharded runs."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from wtal_pipe.features.config import ExtractionConfig
from wtal_pipe.features.extract import ExtractJob, extract_all
from wtal_pipe.features.shards import Shard, shard_of
from wtal_pipe.features.two_stream import I3DPair
from wtal_pipe.video.decode import DecodeConfig
from wtal_pipe.video.flow_engines import FlowConfig

distributed = pytest.importorskip("distributed", reason="the cluster tests need wtal-pipe[dask]")

EXTRACTION = ExtractionConfig(DecodeConfig(short_side=64, crop=64), FlowConfig("tvl1"))
CLI = ["--short-side", "64", "--crop", "64", "--flow", "tvl1", "--device", "cpu"]


@pytest.fixture
def client():
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as connected,
    ):
        yield connected


@pytest.fixture
def clips(make_clip):
    return [make_clip(f"c{i}.mp4", seconds=1.4 + 0.8 * i, size=(96, 64), seed=i) for i in range(3)]


def single_process(clips: list[Path], data: Path) -> dict[str, np.ndarray]:
    outcomes = extract_all(clips, ExtractJob.of(data, EXTRACTION, workers=1), I3DPair.load(EXTRACTION.features, "cpu"))
    assert all(o.status == "done" for o in outcomes)
    return {clip.stem: np.load(data / "features" / f"{clip.stem}.npy") for clip in clips}


def job(client, data: Path, split_frames: int = 15000):
    from wtal_pipe.features.cluster import ClusterJob

    return ClusterJob.probe(client, ExtractJob.of(data, EXTRACTION), device="cpu", split_frames=split_frames)


def test_cluster_features_are_byte_identical_and_a_rerun_skips_them(client, clips, tmp_path):
    from wtal_pipe.features.cluster import extract_on_cluster

    expected = single_process(clips, tmp_path / "single")
    data = tmp_path / "dask"
    # split_frames 20: the 55- and 75-frame clips' flow runs as 3 and 4 ranges on both workers
    outcomes = extract_on_cluster(client, clips, job(client, data, split_frames=20))
    assert [o.status for o in outcomes] == ["done"] * 3 and [o.video for o in outcomes] == clips
    for clip in clips:
        assert np.load(data / "features" / f"{clip.stem}.npy").tobytes() == expected[clip.stem].tobytes()
    single_flow = sorted((tmp_path / "single" / "cache").rglob("flow-*.npy"))
    cluster_flow = sorted((data / "cache").rglob("flow-*.npy"))
    assert [p.name for p in cluster_flow] == [p.name for p in single_flow]  # the parts were joined and removed
    assert all(np.array_equal(np.load(a), np.load(b)) for a, b in zip(single_flow, cluster_flow, strict=True))
    again = extract_on_cluster(client, clips, job(client, data, split_frames=20))
    assert [o.status for o in again] == ["cached"] * 3


def test_a_worker_killed_mid_task_costs_only_its_task(client, make_clip, tmp_path):
    from wtal_pipe.features.cluster import extract_on_cluster

    clips = [make_clip(f"long{i}.mp4", seconds=4.0, size=(160, 120), seed=i) for i in range(2)]
    expected = single_process(clips, tmp_path / "single")
    result: dict[str, list] = {}
    runner = threading.Thread(
        target=lambda: result.setdefault(
            "outcomes", extract_on_cluster(client, clips, job(client, tmp_path / "dask", 40))
        )
    )
    with distributed.get_task_stream(client) as stream:
        runner.start()
        pids = client.run(os.getpid)
        busy, task = _a_running_flow_task(client)
        stem, start = task.split("-")[1], int(task.rsplit("-", 1)[1])
        unfinished = not list((tmp_path / "dask" / "cache" / stem).glob(f"flow-*.{start}-*.npy"))
        os.kill(pids[busy], signal.SIGKILL)  # its part was not written yet: the kill is mid-task
        runner.join(timeout=240)
    assert not runner.is_alive()
    assert unfinished, f"{task} had finished before the kill; the test did not test a kill mid-task"
    assert pids[busy] not in client.run(os.getpid).values()  # the worker really died (the nanny restarted it)
    assert [o.status for o in result["outcomes"]] == ["done", "done"]
    finished_on = {record["key"]: record["worker"] for record in stream.data if "key" in record}
    assert finished_on.get(task) not in (None, busy)  # the killed task ran again, elsewhere
    for clip in clips:
        assert np.array_equal(np.load(tmp_path / "dask" / "features" / f"{clip.stem}.npy"), expected[clip.stem])


def _a_running_flow_task(client) -> tuple[str, str]:
    """A worker and the flow task it is processing, waited for on the scheduler's own state."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for worker, keys in client.processing().items():
            running = [key for key in keys if key.startswith("flow-")]
            if running:
                return worker, running[0]
        time.sleep(0.05)  # polling the scheduler; nothing is asserted about the time
    raise AssertionError("no flow task started within a minute")


def test_cli_cluster_reports_a_broken_clip_and_finishes_the_others(make_clip, run_cli, tmp_path):
    good = make_clip("videos/good.mp4", seconds=1.4)
    (tmp_path / "videos" / "broken.mp4").write_bytes(good.read_bytes()[:700])
    code, out, err = run_cli("extract", tmp_path / "videos", "--data", tmp_path / "d", "--scheduler", "local:2", *CLI)
    failures = [line for line in err.splitlines() if line.startswith("FAILED")]
    assert code == 1 and len(failures) == 1 and "broken.mp4" in failures[0]
    assert "1 ok (0 cached), 1 failed" in out
    assert np.load(tmp_path / "d" / "features" / "good.npy").shape == (2, 2048)


def test_scheduler_without_dask_says_how_to_install_it(monkeypatch, make_clip, run_cli, tmp_path):
    import sys

    make_clip("videos/a.mp4", seconds=1.0)
    monkeypatch.setitem(sys.modules, "distributed", None)
    code, _, err = run_cli("extract", tmp_path / "videos", "--data", tmp_path / "d", "--scheduler", "local:2", *CLI)
    assert code == 2 and "pip install 'wtal-pipe[dask]'" in err and err.count("\n") == 1


def test_every_video_is_in_exactly_one_shard_whatever_the_order(tmp_path):
    videos = [tmp_path / "set" / f"video_{i:04d}.mp4" for i in range(500)]
    shards = [Shard(i, 7) for i in range(7)]
    held = [[v for v in videos if s.holds(v)] for s in shards]
    assert sorted(v for part in held for v in part) == sorted(videos)
    assert min(map(len, held)) > 40  # and about evenly: 500 / 7 = 71
    shuffled = random.Random(0).sample(videos, len(videos))
    moved = [tmp_path / "elsewhere" / v.name for v in shuffled]
    assert [shard_of(v, 7) for v in shuffled] == [shard_of(v.parent / v.name, 7) for v in shuffled]
    assert {v.name: shard_of(v, 7) for v in moved} == {v.name: shard_of(v, 7) for v in videos}
    for bad in ("3/3", "-1/2", "a/b", "2"):
        with pytest.raises(Exception, match="is not i/N"):
            Shard.parse(bad)


def test_shards_then_merge_report(make_clip, run_cli, tmp_path):
    clips = [make_clip(f"videos/s{i}.mp4", seconds=1.0, seed=i) for i in range(4)]
    fast = ["--short-side", "64", "--crop", "64", "--flow", "dis", "--workers", "1", "--device", "cpu"]
    data = tmp_path / "d"
    for index in (0, 1):
        code, out, _ = run_cli("extract", tmp_path / "videos", "--data", data, "--shard", f"{index}/3", *fast)
        assert code == 0
    done = sorted(p.stem for p in (data / "features").glob("*.npy"))
    assert done == sorted(c.stem for c in clips if shard_of(c, 3) in (0, 1))
    code, out, _ = run_cli("extract", tmp_path / "videos", "--data", data, "--merge-report", "--shard", "0/3")
    missing = [c for c in clips if shard_of(c, 3) == 2]
    assert code == (1 if missing else 0) and f"{4 - len(missing)} of 4 video(s) have features" in out
    for clip in missing:
        assert f"missing {clip}  (shard 2/3)" in out
