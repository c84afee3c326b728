"""CMCS hard negatives: the static mask, its rules, the pseudo videos and training with them."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from wtal_pipe.data.dataset import Dataset
from wtal_pipe.data.negatives import NegativesConfig, build_negatives, static_mask
from wtal_pipe.errors import DataError
from wtal_pipe.methods import get_method
from wtal_pipe.tools.shaped import narrowed
from wtal_pipe.tools.synthetic import textured_background, write_video
from wtal_pipe.training.train import TrainOptions, train

from .planted import write_planted_dataset

FPS = 25
STATIC = [(125, 200), (500, 575)]  # frames at which the scene stands still (positions repeat)


def _scrolling_frames(n=750, size=64, speed=2):
    texture = textured_background(size, size * 4, seed=4)
    offset = 0
    for i in range(n):
        if not any(a < i < b for a, b in STATIC):  # frames a..b-1 share one position
            offset += speed
        yield np.ascontiguousarray(np.roll(texture, -offset, axis=1)[:, :size])


def _expected_frame_mask(n=750):
    # flow i goes from frame i to i + 1: zero when both frames share a position
    mask = np.zeros(n, bool)
    for a, b in STATIC:
        mask[a : b - 1] = True
    return mask


def test_static_mask_rules_on_an_intensity_profile():
    intensity = np.full(750, 2.0) + np.random.default_rng(0).normal(0, 0.05, 750)
    expected = _expected_frame_mask()
    intensity[expected] = 0.0
    intensity[300:310] = 0.001  # a short lull (10 frames < 2 s): removed by the median filter / run rule
    # ratio 0.21 ranks exactly the 148 static + 10 lull frames lowest (158 / 750)
    np.testing.assert_array_equal(static_mask(intensity, ratio=0.21, fps=FPS), expected)
    # a larger ratio also takes the slowest moving frames: isolated ones are filtered out again
    assert static_mask(intensity, ratio=0.3, fps=FPS)[expected].all()
    # a static run shorter than 2 * fps frames does not survive; frames tied with the percentile are not
    # below it (strictly below, as the official tool)
    short = np.full(750, 2.0)
    short[100:140] = 0.0
    short[400:600] = 0.0
    mask = static_mask(short, ratio=0.33, fps=FPS)  # 240 / 750 = 0.32 of the frames are still
    assert not mask[100:140].any() and mask[400:600].all()
    assert not static_mask(short, ratio=0.3, fps=FPS).any()  # the 30th percentile is 0 itself: nothing below it


def test_a_final_static_run_is_measured_one_frame_short():
    """The official remove_short_clips measures a run that reaches the last frame to that frame's index."""
    intensity = np.full(300, 2.0)
    intensity[-50:] = 0.0  # 50 frames = 2 * fps, but measured as 49: cleared except its last frame
    mask = static_mask(intensity, ratio=0.2, fps=FPS)
    assert not mask[:-1].any() and mask[-1]
    intensity[-51:] = 0.0
    assert static_mask(intensity, ratio=0.2, fps=FPS)[-51:].all()


@pytest.mark.slow
def test_end_to_end_negatives_from_the_flow_cache(tmp_path, run_cli):
    clip = write_video(
        tmp_path / "videos" / "scroll.mp4", _scrolling_frames(), fps=FPS, codec="libx264rgb", options={"crf": "0"}
    )
    data = tmp_path / "data"
    code, _, err = run_cli(
        "extract",
        clip,
        "--data",
        data,
        "--short-side",
        "64",
        "--crop",
        "64",
        "--flow",
        "dis",
        "--workers",
        "1",
        "--device",
        "cpu",
    )
    assert code == 0, err
    (data / "annotations.json").write_text(
        json.dumps(
            {
                "database": {
                    "scroll": {
                        "subset": "train",
                        "duration": 30.0,
                        "annotations": [{"label": "a", "segment": [10.0, 15.0]}],
                    }
                }
            }
        )
    )
    # the 148 still frames share one intensity (their 8-bit flow is all 128); a percentile between it and
    # the slowest moving frame takes exactly them: position 0.1969 * 749 = 147.5
    code, out, err = run_cli("negatives", "--data", data, "--ratio", "0.1969")
    assert code == 0, err
    assert "written scroll (9 rows)" in out
    mask = np.load(data / "negatives" / "scroll_bg.mask.npy")
    np.testing.assert_array_equal(mask, _expected_frame_mask())
    meta = json.loads((data / "negatives" / "scroll_bg.json").read_text())
    # rows whose first frame (16 k) lies in [125, 199) or [500, 574), as the official loader's mask[::16]
    assert meta["source_rows"] == [8, 9, 10, 11, 12, 32, 33, 34, 35] and meta["labels"] == "background only"
    assert meta["static_share"] == pytest.approx(148 / 750)
    features = np.load(data / "features" / "scroll.npy")
    np.testing.assert_array_equal(np.load(data / "negatives" / "scroll_bg.npy"), features[meta["source_rows"]])
    # cached on a re-run; a new ratio or rule recomputes
    assert "cached scroll" in run_cli("negatives", "--data", data, "--ratio", "0.1969")[1]
    code, out, _ = run_cli(
        "negatives", "--data", data, "--ratio", "0.1969", "--whole-chunk"
    )  # rows whose 16 frames all are
    assert code == 0 and "written scroll (7 rows)" in out
    assert json.loads((data / "negatives" / "scroll_bg.json").read_text())["source_rows"] == [8, 9, 10, 11, 32, 33, 34]
    assert run_cli("negatives", "--data", data, "--ratio", "1.5")[0] == 2
    run_cli("negatives", "--data", data, "--ratio", "0.1969")

    dataset = Dataset(data, "train", negatives=True)
    negative = [v for v in dataset.videos if v.background_only]
    assert [v.vid for v in negative] == ["scroll_bg"] and negative[0].labels.sum() == 0


def test_skipping_rules(tmp_path):
    write_planted_dataset(tmp_path, feature_dim=8, n_train=1, n_test=1, rows=(100, 101))
    vid = "train_0000"
    features = np.load(tmp_path / "features" / f"{vid}.npy")
    moving = np.random.default_rng(0).uniform(4, 6, (100, 4))
    features[:, 4:] = moving
    features[10:70, 4:] = 0.0  # 60% static: outside [0.05, 0.30]
    np.save(tmp_path / "features" / f"{vid}.npy", features)
    [result] = build_negatives(tmp_path, config=NegativesConfig(ratio=0.7, from_features=True))
    assert result.status == "skipped" and re.search(r"static share 0\.6\d\d outside \[0.05, 0.3\]", result.reason)
    features[:, 4:] = moving
    features[40:60, 4:] = 0.0  # 20%
    np.save(tmp_path / "features" / f"{vid}.npy", features)
    [result] = build_negatives(tmp_path, config=NegativesConfig(ratio=0.2, from_features=True))
    assert result.status == "written" and result.rows == 20
    meta = json.loads((tmp_path / "negatives" / f"{vid}_bg.json").read_text())
    assert "approximation" in meta["source"]


def test_without_flow_cache_says_so(tmp_path, run_cli):
    write_planted_dataset(tmp_path, feature_dim=8, n_train=2, n_test=1)
    code, _, err = run_cli("negatives", "--data", tmp_path)
    assert code == 2 and "no flow cache for video train_0000" in err and "--from-features" in err


def test_training_with_and_without_negatives(tmp_path):
    write_planted_dataset(tmp_path, feature_dim=16, n_train=8, n_test=2)
    (tmp_path / "negatives").mkdir()
    for vid in ("train_0000", "train_0001"):
        np.save(
            tmp_path / "negatives" / f"{vid}_bg.npy", np.random.default_rng(0).normal(size=(12, 16)).astype(np.float32)
        )
    quick = {"iterations": 3, "lr": 1e-3, "num_segments": 16, "batch_size": 4}
    for method, negatives, expected in (
        ("cmcs", None, 2),
        ("cmcs", False, 0),
        ("basnet", True, 2),
        ("basnet", None, 0),
        ("backtal", True, 2),
    ):
        overrides = quick | narrowed(get_method(method), 16) | ({"batch_size": 1} if method == "cmcs" else {})
        options = TrainOptions(
            method,
            tmp_path,
            tmp_path / f"run_{method}_{negatives}",
            device="cpu",
            negatives=negatives,
            simulate_clicks=True,
            overrides=overrides,
        )
        train(options)
        config = json.loads((options.out_dir / "config.json").read_text())
        assert config["negatives"] == expected, (method, negatives)


def test_negatives_flag_without_negatives(tmp_path):
    write_planted_dataset(tmp_path, feature_dim=8, n_train=2, n_test=1)
    options = TrainOptions(
        "basnet", tmp_path, tmp_path / "r", device="cpu", negatives=True, overrides={"iterations": 1}
    )
    with pytest.raises(DataError, match="no hard negatives.*wtal negatives"):
        train(options)
