"""Localizer units, `wtal localize` on a raw clip, plots, and the demo at reduced size."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from wtal_pipe.data.timing import VideoTiming
from wtal_pipe.inference.localize import VideoScores, dilate, localize, nms, normalize, outer_bounds, resample
from wtal_pipe.intervals import runs, tiou
from wtal_pipe.methods import get_method
from wtal_pipe.methods.settings import LocalizationSettings
from wtal_pipe.tools.demo import run_demo

TIMING = VideoTiming(rows=50, seconds_per_row=0.64, duration=32.0, frame_count=800, frames_per_step=16)


def test_runs_nms_and_dilation():
    assert runs(np.array([0, 1, 1, 0, 1], bool)) == [(1, 2), (4, 4)]
    segments = np.array([[0, 10], [1, 10], [20, 30]], float)
    assert list(nms(segments, np.array([0.9, 0.8, 0.7]), 0.5)[0]) == [0, 2]
    # "+1" overlap (the official NMS): segments 0.5 s apart overlap by 0.5 of a union of 5.5
    apart = np.array([[0, 2], [2.5, 4.5]], float)
    assert list(nms(apart, np.array([0.9, 0.8]), 0.05)[0]) == [0, 1]
    assert list(nms(apart, np.array([0.9, 0.8]), 0.05, plus_one=True)[0]) == [0]
    # a kept proposal survives while its tIoU stays strictly below the threshold
    assert list(nms(np.array([[0, 10], [5, 15]], float), np.array([1.0, 0.5]), 1 / 3)[0]) == [0]
    # soft-NMS (CASE): what NMS drops stays, after the survivors, its score decayed by its tIoU with the keeper
    segments = np.array([[0, 10], [0, 8], [20, 30], [1, 10]], float)
    kept, scores = nms(segments, np.array([0.9, 0.8, 0.7, 0.6]), 0.4, soft_alpha=0.35)
    assert list(kept) == [0, 2, 1, 3]
    assert scores == pytest.approx([0.9, 0.7, 0.8 * np.exp(-(0.8**2) / 0.35), 0.6 * np.exp(-(0.9**2) / 0.35)])
    mask = np.zeros((1, 40), bool)
    mask[0, 20] = True
    np.testing.assert_array_equal(np.flatnonzero(dilate(mask, 20)[0]), np.arange(10, 30))  # 10 before, 9 after


def test_normalizations():
    signal = np.array([[-1.0, 2.0], [1.0, 4.0], [3.0, 3.0]], np.float32)
    np.testing.assert_allclose(normalize(signal, "relu-minmax")[:, 0], [-1 / 3, 1 / 3, 1.0])  # min clipped at 0
    np.testing.assert_allclose(normalize(signal, "relu-minmax-clip")[:, 0], [0.0, 1 / 3, 1.0])
    np.testing.assert_allclose(normalize(signal, "minmax")[:, 1], [0.0, 1.0, 0.5])
    assert normalize(signal, "minmax").dtype == np.float32  # the official code normalizes float32 tensors
    flat = normalize(np.full((4, 1), -2.0, np.float32), "relu-minmax")
    np.testing.assert_allclose(flat[:, 0], -2.0)  # max and min clipped to 0: range 0 -> 1, values kept


def test_grid_geometries_and_times():
    rows = np.array([[0.0], [1.0], [3.0]], np.float32)
    timing = VideoTiming(rows=3, seconds_per_row=0.64, duration=1.92, frame_count=48, frames_per_step=16)
    grid, time = resample(rows, LocalizationSettings(resample="starts-extrapolated", upsample=2), timing)
    np.testing.assert_allclose(grid[:, 0], [0, 0.5, 1, 2, 3, 4])  # chunk starts, last point extrapolated
    assert time(np.array([2])) == pytest.approx(0.64)
    grid, time = resample(rows, LocalizationSettings(resample="starts-inclusive", upsample="frames"), timing)
    assert grid.shape == (33, 1) and grid[16, 0] == pytest.approx(1.0) and time(np.array([25])) == pytest.approx(1.0)
    grid, time = resample(rows, LocalizationSettings(resample="centres", upsample="frames"), timing)
    assert grid.shape == (48, 1) and grid[0, 0] == 0.0 and grid[-1, 0] == pytest.approx(3.0)  # edges held
    assert time(np.array([24])) == pytest.approx(0.96)
    # a test input resampled to 750 rows still maps to the video's own seconds
    _, time = resample(np.zeros((750, 1), np.float32), LocalizationSettings(), VideoTiming(100, 0.64, 64.0, 1600, 16))
    assert time(np.array([750 * 24])) == pytest.approx(64.0)


def test_outer_region_conventions_and_their_old_names():
    from wtal_pipe.methods import get_method

    old = {"training": {}, "network": {}, "localization": {"outer_region": "cmcs"}}  # a run of an earlier version
    assert get_method("cmcs").from_saved(old).localization.outer_region == "one-point-minimum"
    start, end = np.array([10]), np.array([17])  # 8 points, r * L = 2
    assert [int(v[0]) for v in outer_bounds(start, end, 100, 0.25, "through-reach")] == [8, 10, 18, 20]
    assert [int(v[0]) for v in outer_bounds(start, end, 100, 0.25, "before-reach")] == [8, 10, 18, 19]
    assert [int(v[0]) for v in outer_bounds(start, end, 100, 0.25, "one-point-minimum")] == [8, 10, 18, 20]
    # 5 points (r * L = 1.25): BaS-Net rounds the left side up and the right side down
    assert [int(v[0]) for v in outer_bounds(np.array([10]), np.array([14]), 100, 0.25, "through-reach")] == [
        8,
        10,
        15,
        16,
    ]
    # CMCS: a left region reaching past the start is empty (the official negative slice)
    left_lo, left_hi, _, _ = outer_bounds(np.array([1]), np.array([12]), 100, 0.25, "one-point-minimum")
    assert left_hi[0] - left_lo[0] == 0


def test_localize_finds_a_planted_bump_in_seconds():
    cas = np.zeros((50, 2), np.float32)
    cas[10:20, 1] = 1.0
    scores = VideoScores(np.array([0.05, 0.9]), cas, None)
    config = LocalizationSettings(upsample=4, nms_threshold=0.5)
    detections = localize(scores, config, TIMING)
    assert {d[0] for d in detections} == {1}  # class 0 is below the class threshold
    best = max(detections, key=lambda d: d[1])
    assert tiou(np.array(best[2:]), np.array([[6.4, 12.8]]))[0] > 0.9
    # class index 0 alone is localized too (the official `if pred.any()` dropped it)
    only_zero = localize(VideoScores(np.array([0.9, 0.0]), cas[:, ::-1].copy(), None), config, TIMING)
    assert only_zero and {d[0] for d in only_zero} == {0}
    # a proposal that starts at grid point 0 alone is kept (the official `any(position)` dropped it)
    at_start = np.zeros((50, 1), np.float32)
    at_start[0, 0] = 1.0
    found = localize(
        VideoScores(np.array([0.9]), at_start, None), LocalizationSettings(upsample=1, nms_threshold=None), TIMING
    )
    assert (0, pytest.approx(0.0), pytest.approx(0.64)) in [(d[0], d[2], d[3]) for d in found]


def test_each_method_localizes_with_its_official_defaults():
    """The defaults each method's config sets are the official post-processing choices."""
    basnet, um, cmcs, backtal = (get_method(n).localization_defaults for n in ("basnet", "um", "cmcs", "backtal"))
    assert basnet.binarize_class_score and basnet.nms_plus_one and basnet.nms_threshold == 0.7
    assert um.argmax_fallback and um.min_proposal_length == 2 and um.test_sampling == "uniform-if-longer"
    assert len(um.actionness_thresholds) == 9 and len(backtal.actionness_thresholds) == 7
    assert cmcs.nms_threshold is None and cmcs.mask_dilation == 20 and cmcs.thresholds_relative_to_mean
    assert backtal.resample == "centres" and backtal.upsample == "frames" and backtal.nms_threshold == 0.55
    assert (basnet.eval_tiou, um.eval_tiou, cmcs.eval_tiou) == ("0.1:0.9:0.1", "0.1:0.7:0.1", "0.1:0.5:0.1")
    case = get_method("case").localization_defaults  # inference_case.py, as its positional arguments land
    assert case.cas_normalization == "none" and not case.contrast_on_thresholded and case.argmax_fallback
    assert (case.outer_ratio, case.class_score_weight) == (0.15, 0.2)  # the config's gamma lands as the outer ratio
    assert (case.nms_threshold, case.soft_nms_alpha) == (0.4, 0.35)
    assert case.cas_thresholds == pytest.approx(np.arange(0.1, 1.0, 0.1)) and case.test_sampling == "uniform"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    lines = []
    result = run_demo(
        out, n_videos=16, seconds=12.0, iterations=300, seed=0, print_fn=lines.append, warn_fn=lines.append
    )
    return out, result, "\n".join(lines)


#: mAP@0.5 of the reduced demo (16 videos, 12 s, 300 steps, seed 0) measured here, and how far it moved when
#: every feature was perturbed by a relative 1e-6, as another CPU's float rounding does (0.875 in 2 of 2 trials)
DEMO_MAP_AT_05, DEMO_SPREAD = 0.917, 0.1


@pytest.mark.slow
def test_demo_reaches_its_stated_map_and_leaves_every_artifact(demo):
    out, result, log = demo
    at_05 = result.map_per_threshold[list(np.round(result.thresholds, 2)).index(0.5)]
    print(f"reduced demo mAP@0.5 = {at_05:.3f}")
    assert at_05 >= DEMO_MAP_AT_05 - DEMO_SPREAD
    assert "RANDOM weights" in log and "DIS flow" in log
    for path in (
        "run/checkpoint.pt",
        "run/train_log.jsonl",
        "dets_test.json",
        "dets_test.cas.npz",
        "localize_clip.json",
        "localize_clip.png",
        "data/annotations.json",
    ):
        assert (out / path).stat().st_size > 0, path
    assert len(list((out / "negatives").glob("*"))) == 0 and list((out / "data" / "negatives").glob("*_bg.npy"))
    assert len(list((out / "plots").glob("*.png"))) == 4


@pytest.mark.slow
def test_localize_cli_on_a_raw_clip(demo, tmp_path, run_cli):
    out, _, _ = demo
    database = json.loads((out / "data" / "annotations.json").read_text())["database"]
    vid = next(v for v, e in database.items() if e["subset"] == "test")
    [clip] = (out / "videos").glob(f"{vid}.*")
    copy = tmp_path / f"my_clip{clip.suffix}"
    copy.write_bytes(clip.read_bytes())
    code, stdout, err = run_cli(
        "localize",
        copy,
        "--run",
        out / "run",
        "--out",
        tmp_path / "dets.json",
        "--plot",
        tmp_path / "dets.png",
        "--device",
        "cpu",
    )
    assert code == 0, err
    assert "RANDOM" in err and copy.name in stdout
    dets = json.loads((tmp_path / "dets.json").read_text())
    assert set(dets["results"]) == {"my_clip"}
    found = dets["results"]["my_clip"]
    assert all(set(d) == {"label", "score", "segment"} for d in found)
    assert (tmp_path / "dets.png").stat().st_size > 10_000
    # the planted action is found: the best detection of its class overlaps it
    truth = database[vid]["annotations"][0]
    best = max((d for d in found if d["label"] == truth["label"]), key=lambda d: d["score"])
    overlap = tiou(np.array(truth["segment"]), np.array([best["segment"]]))[0]
    print(f"tIoU of the best {truth['label']} detection with the truth: {overlap:.2f}")
    assert overlap >= 0.3
    # the extraction settings came from the run (64x64 frames, DIS), through the run's own cache
    meta = json.loads((out / "run" / "localize" / "features" / "my_clip.json").read_text())
    assert meta["extraction"]["decode"]["crop"] == 64 and meta["extraction"]["flow"]["preset"] == "dis"


@pytest.mark.slow
def test_localize_bad_inputs(demo, tmp_path, run_cli):
    out, _, _ = demo
    code, _, err = run_cli("localize", tmp_path / "missing.mp4", "--run", out / "run")
    assert code == 2 and "missing.mp4" in err and err.count("\n") == 1
    broken = tmp_path / "broken.mp4"
    broken.write_text("not a video")
    code, _, err = run_cli("localize", broken, "--run", out / "run", "--out", tmp_path / "d.json", "--device", "cpu")
    assert code == 1 and "FAILED" in err and "broken.mp4" in err
    code, _, err = run_cli("localize", broken, "--run", tmp_path)
    assert code == 2 and "no checkpoint" in err


def test_localize_refuses_a_run_on_other_features(tmp_path, run_cli, make_clip):
    from wtal_pipe.training.train import TrainOptions, train

    from .planted import write_planted_dataset

    write_planted_dataset(tmp_path / "d", feature_dim=16, n_train=4, n_test=1)
    train(TrainOptions("um", tmp_path / "d", tmp_path / "run", device="cpu", overrides={"iterations": 1}))
    clip = make_clip("c.mp4", seconds=1.0)
    code, _, err = run_cli("localize", clip, "--run", tmp_path / "run", "--out", tmp_path / "x.json")
    assert code == 2 and "trained on 16-d features" in err
    assert not (tmp_path / "x.json").exists()


@pytest.mark.slow
def test_test_cli_plot_dir(demo, tmp_path, run_cli):
    out, _, _ = demo
    code, stdout, _ = run_cli(
        "test",
        "--run",
        out / "run",
        "--data",
        out / "data",
        "--out",
        tmp_path / "d.json",
        "--plot-dir",
        tmp_path / "plots",
    )
    assert code == 0 and "wrote 4 plots" in stdout
    assert all(p.stat().st_size > 10_000 for p in (tmp_path / "plots").glob("*.png"))


def test_um_adds_proposals_from_its_magnitudes():
    """A flat CAS gives no CAS proposals; UM's second set comes from thresholding the magnitudes."""
    config = get_method("um").localization_defaults.replace(upsample=4)
    actionness = np.zeros(50, np.float32)
    actionness[20:30] = 1.0
    scores = VideoScores(np.array([0.9]), np.full((50, 1), 0.5, np.float32), actionness)
    found = localize(scores, config, TIMING)
    assert found and all(d[1] == pytest.approx(0.2 * 0.9) for d in found)  # contrast 0 on the flat CAS
    best = max(found, key=lambda d: d[3] - d[2])
    assert tiou(np.array(best[2:]), np.array([[20 * 0.64, 30 * 0.64]]))[0] > 0.8


def test_without_nms_every_proposal_is_kept():
    cas = np.zeros((50, 1), np.float32)
    cas[10:20, 0] = np.linspace(0.3, 1.0, 10)  # a ramp: every threshold cuts a different proposal
    scores = VideoScores(np.array([0.9]), cas, None)
    with_nms = localize(scores, LocalizationSettings(upsample=1, nms_plus_one=False), TIMING)
    without = localize(scores, LocalizationSettings(upsample=1, nms_threshold=None), TIMING)
    assert len(without) == 10 and len(with_nms) < len(without)  # one proposal per threshold 0:0.025:0.225


@pytest.mark.slow
def test_case_trains_on_the_demo_data_then_tests_and_localizes_a_raw_clip(demo, tmp_path, run_cli):
    """CASE end to end on the demo's clips: wtal train, wtal test, and wtal localize on a raw clip, which extracts it
    again through the run's cache and must give the detections wtal test gave that video. (How well CASE localizes
    at this size is not the point: at 12 training clips its attention often settles on the camera's pans.)"""
    out, _, _ = demo
    data, run = out / "data", tmp_path / "case"
    code, _, err = run_cli(
        "train", "--method", "case", "--data", data, "--out", run, "--iters", "100", "--lr", "1e-3",
        "--batch-size", "4", "--set", "normalize_features=true", "--device", "cpu",
    )  # fmt: skip
    assert code == 0, err
    state = torch.load(run / "checkpoint.pt", weights_only=True)["state_dict"]
    table = state["cls_gt"]  # the cluster table inference needs, saved with the weights
    assert table.shape == (16, 2) and torch.allclose(table.sum(1), torch.ones(16), atol=1e-4)
    assert not torch.allclose(table, torch.full((16, 2), 1 / 16))  # training moved it from where it starts
    code, stdout, err = run_cli("test", "--run", run, "--data", data, "--out", tmp_path / "d.json")
    assert code == 0, err
    assert "0.70" in stdout and "0.80" not in stdout  # CASE reports tIoU 0.1:0.7
    tested = json.loads((tmp_path / "d.json").read_text())["results"]
    database = json.loads((data / "annotations.json").read_text())["database"]
    vid = next(v for v, e in database.items() if e["subset"] == "test")
    [clip] = (out / "videos").glob(f"{vid}.*")
    code, stdout, err = run_cli("localize", clip, "--run", run, "--out", tmp_path / "clip.json", "--device", "cpu")
    assert code == 0, err
    found = json.loads((tmp_path / "clip.json").read_text())["results"][vid]
    assert len(found) == len(tested[vid]) > 0
    key = lambda d: (d["label"], round(d["segment"][0], 2), round(d["segment"][1], 2))  # noqa: E731
    for mine, theirs in zip(sorted(found, key=key), sorted(tested[vid], key=key), strict=True):
        assert mine["label"] == theirs["label"] and abs(mine["score"] - theirs["score"]) <= 1e-4
        assert np.allclose(mine["segment"], theirs["segment"], atol=0.01)
        assert 0 <= mine["segment"][0] < mine["segment"][1] <= database[vid]["duration"] + 0.64
