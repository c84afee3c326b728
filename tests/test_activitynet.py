"""ActivityNet presets: every value transcribed from its source lands in the model's settings, BackTAL's
ActivityNet branches compute what the official code computes, and a preset trains and tests on the
benchmark's subsets."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from wtal_pipe.cli.train import preset_table_markdown
from wtal_pipe.data.sampling import interpolate
from wtal_pipe.data.timing import VideoTiming
from wtal_pipe.inference.localize import localize
from wtal_pipe.inference.pipeline import infer
from wtal_pipe.methods import get_method
from wtal_pipe.methods.presets import PRESET_NAMES, preset_settings, preset_values
from wtal_pipe.methods.settings import steps
from wtal_pipe.tools.shaped import narrowed
from wtal_pipe.training.train import Trainer, with_epochs

from . import official
from .test_parity import C, D, batch, close, same_detections

ROOT = Path(__file__).resolve().parents[1]

#: transcribed by hand from the sources (BackTAL experiments/ActivityNet1.2.yaml and post_process/functions.py;
#: CMCS configs/anet12-local-I3D.json, anet13-local-I3D.json; UM's paper), independently of the code under test
ACTIVITYNET_12 = {
    "backtal": {
        "num_segments": 100, "batch_size": 128, "lr": 2e-4, "epochs": 25, "topk_ratio": 0.6,
        "separation_topk_ratio": 0.2, "separation_weight": 0.1, "class_threshold": 0.1,
        "cas_thresholds": (0.0, 0.025, 0.05, 0.075, 0.1, 0.125), "actionness_thresholds": (), "outer_ratio": 20.0,
        "class_score_weight": 0.6, "proposal_shrink": 0.02, "whole_video_score": 0.6, "nms_threshold": 0.7,
    },
    "cmcs": {
        "accumulate": 32, "lr": 1e-3, "weight_decay": 1e-4, "iterations": 20000, "lr_decay_at": 10002,
        "embed_dim": 256, "branch_dim": 128, "attention_dim": 128, "cas_thresholds": (1e-7,),
    },
    "um": {"num_segments": 50},
    "basnet": {},
}  # fmt: skip
ACTIVITYNET_13 = ACTIVITYNET_12 | {"cmcs": ACTIVITYNET_12["cmcs"] | {"iterations": 30000, "lr_decay_at": 15002}}


@pytest.mark.parametrize("preset", ["activitynet1.2", "activitynet1.3"])
@pytest.mark.parametrize("method", ["backtal", "cmcs", "um", "basnet"])
def test_a_preset_holds_every_published_value_and_the_model_gets_each(method, preset):
    expected = (ACTIVITYNET_12 if preset == "activitynet1.2" else ACTIVITYNET_13)[method] | {
        "eval_tiou": "0.5:0.95:0.05"
    }
    cls = get_method(method)
    given = {name: sourced.value for name, sourced in preset_values(cls, preset).items()}
    assert_same(given, expected)  # nothing dropped, nothing added
    assert all(s.source for s in preset_values(cls, preset).values())
    config = cls.configure(preset_settings(cls, preset, {})).values()
    assert_same({name: config[name] for name in expected}, expected)


def assert_same(found: dict, expected: dict) -> None:
    assert found.keys() == expected.keys()
    for name, value in expected.items():
        assert found[name] == (value if isinstance(value, str) else pytest.approx(value)), name


def test_thumos14_is_the_official_default_and_user_settings_win():
    for method in ("basnet", "um", "cmcs", "backtal"):
        cls = get_method(method)
        assert preset_settings(cls, "thumos14", {}) == {}
    backtal = get_method("backtal")
    mine = preset_settings(backtal, "activitynet1.2", {"lr": 1e-3, "iterations": 7})
    assert mine["lr"] == 1e-3 and mine["iterations"] == 7 and mine["epochs"] is None  # a step count beats epochs
    case = get_method("case")  # ... also a method's own epochs
    assert case.configure(preset_settings(case, "thumos14", {"iterations": 7})).training.epochs is None
    assert PRESET_NAMES == ("thumos14", "activitynet1.2", "activitynet1.3", "cpu-small")


def test_the_documented_table_is_the_one_the_code_prints():
    page = (ROOT / "docs" / "activitynet.md").read_text()
    table = re.search(r"<!-- presets:begin -->\n(.*?)<!-- presets:end -->", page, re.S)
    assert table is not None and table.group(1) == preset_table_markdown()


def test_epochs_count_batches_as_the_dataloader_and_the_learning_rate_drops_once():
    backtal = get_method("backtal")
    config = backtal.configure(preset_settings(backtal, "activitynet1.2", {}))
    assert with_epochs(config, 4819).training.iterations == 25 * 38  # ceil(4819 / 128) batches per epoch
    cmcs = get_method("cmcs")
    model = cmcs(8, 3, cmcs.configure({"lr": 1e-2, "lr_decay_at": 2, "accumulate": 1}))
    trainer = Trainer(model, torch.device("cpu"))
    x = torch.randn(1, 20, 8)
    rates = []
    for _ in range(4):
        rates.append(trainer.lr)
        trainer.step([batch_of(x)])
    assert rates == pytest.approx([1e-2, 1e-2, 1e-3, 1e-3])  # MultiStepLR([2]): steps 3 and 4 at a tenth


def batch_of(x: torch.Tensor):
    from wtal_pipe.methods.base import Batch

    labels = torch.zeros(1, 3)
    labels[0, 1] = 1
    return Batch(x, labels, torch.zeros(1, dtype=torch.bool), torch.zeros(1, x.shape[1]), torch.ones(1))


def test_backtal_activitynet_branches_match_the_transcription():
    state = official.seeded_state(official.layout("backtal", D, C, hidden=48), 3, C)
    settings = {k: v for k, v in ACTIVITYNET_12["backtal"].items() if k not in ("batch_size", "lr", "epochs")}
    model = get_method("backtal").from_official([state], **settings)
    videos = [official.planted_features(b, 60 + 90 * b, D, C) for b in range(3)]
    x = torch.from_numpy(np.stack([interpolate(rows, 100) for rows in videos]))
    labels, clicks = [[1], [2, 5], [7]], [[3, 40, 41, 99], [10], []]
    torch.manual_seed(4)
    expected = official.backtal_forward(state, x, train=True, topk_ratio=0.6)
    torch.manual_seed(4)
    out = model.train()(x)
    terms = model.loss(out, batch(x, labels, clicks))
    reference = official.backtal_loss(expected, batch(x, labels).labels, clicks, activitynet=True, topk_ratio=0.6)
    for name, value in reference.items():
        assert close(value.item(), terms[name].item()), name
    model.eval()
    found_whole = 0
    for rows, fps in ((40, 30.0), (100, 25.0), (330, 29.97)):
        feat = official.planted_features(rows, rows, D, C)
        frame_num = round(rows * 0.64 * fps)
        with torch.no_grad():
            ref = official.backtal_forward(state, torch.from_numpy(interpolate(feat, 100))[None], topk_ratio=0.6)
        scores = infer(model, feat)
        timing = VideoTiming(rows, 0.64, frame_num / fps, frame_num, 16)
        expected_dets = official.backtal_detections(ref, frame_num, frame_num / fps, activitynet=True)
        ours = localize(scores, model.config.localization, timing)
        assert expected_dets and same_detections(expected_dets, ours), rows
        found_whole += sum(1 for d in ours if d[2] == 0.0 and d[3] == pytest.approx(frame_num / fps))
    assert found_whole  # the whole-video proposal of the official ActivityNet branch survives NMS somewhere


def test_backtal_thumos_topk_is_unchanged_by_the_ratio():
    """The ratio 0.125 takes the same rows as the former ``T // 8`` at every length."""
    backtal = get_method("backtal")
    assert all(backtal.top_k(t, 0.125) == max(1, t // 8) for t in range(1, 3000))
    assert steps(0.0, 0.15, 0.025) == pytest.approx(ACTIVITYNET_12["backtal"]["cas_thresholds"])


@pytest.mark.slow
@pytest.mark.parametrize("method", ["basnet", "um", "cmcs", "backtal"])
def test_a_preset_trains_on_training_and_tests_on_validation_at_activitynet_tious(method, tmp_path, run_cli):
    """An ActivityNet 1.2-shaped set (real videos, durations and classes from the annotation file, rows drawn
    by tools/shaped.py): the preset's settings reach the run, training reads "training", testing reads
    "validation" and reports tIoU 0.5:0.95."""
    from wtal_pipe.tools.shaped import ShapedFeatures, write_shaped_dataset

    data, run = tmp_path / "data", tmp_path / "run"
    count = write_shaped_dataset(
        ROOT / "tests/fixtures/activitynet12.min.json", None, data, ShapedFeatures(dim=32), 0, VIDEO_SUBSETS, 24
    )
    assert count == 24
    width = narrowed(get_method(method), 16)
    extra = ["--set", f"hidden_dim={width['hidden_dim']}"] if width else []
    clicks = ["--simulate-clicks"] if method == "backtal" else []
    code, _, err = run_cli(
        "train", "--method", method, "--data", data, "--out", run, "--preset", "activitynet1.2",
        "--iters", "2", "--device", "cpu", *extra, *clicks,
    )  # fmt: skip
    assert code == 0, err
    record = json.loads((run / "config.json").read_text())
    assert record["preset"] == "activitynet1.2" and record["subset"] == "training"
    settings = {k: v for group in record["config"].values() for k, v in group.items()}
    expected = {k: v for k, v in ACTIVITYNET_12[method].items() if k not in ("epochs", "iterations", "lr_decay_at")}
    assert_same({k: settings[k] for k in expected}, expected)
    assert settings["iterations"] == 2  # the user's step count beats the preset's epochs
    code, out, err = run_cli("test", "--run", run, "--data", data, "--out", tmp_path / "dets.json")
    assert code == 0, err
    validation = {v for v, e in json.loads((data / "annotations.json").read_text())["database"].items()
                  if e["subset"] == "validation"}  # fmt: skip
    assert f"{method} on validation ({len(validation)} videos with ground truth" in out
    assert re.search(r"tIoU\s+0\.50\s+0\.55.*0\.95\s+avg", out)
    assert set(json.loads((tmp_path / "dets.json").read_text())["results"]) == validation


VIDEO_SUBSETS = ("training", "validation")
