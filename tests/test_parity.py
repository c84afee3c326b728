"""The four methods against the official code: our models built from weights in the official key
layout must compute what a plain transcription of the official forward, loss and test code computes
(tests/official.py), at lengths below and above 750; and both must match the numbers the official code
itself produced on the same seeded inputs (tests/fixtures/official_parity.json)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from wtal_pipe.data.sampling import inference_input, interpolate
from wtal_pipe.data.timing import VideoTiming
from wtal_pipe.inference.localize import localization_signals, localize, selected_classes
from wtal_pipe.inference.pipeline import infer
from wtal_pipe.methods import get_method
from wtal_pipe.methods.base import Batch

from . import official

GOLDEN = json.loads((Path(__file__).parent / "fixtures" / "official_parity.json").read_text())
D, C = 32, 20
#: the inputs the authors' code was given for GOLDEN (experiments/official/golden.py gives them the same)
WEIGHT_SEEDS = {"basnet": 0, "um": 1, "backtal": 2, "cmcs": 3, "case": 4}  # CMCS: its rgb network; flow: the next
CASE_TABLE_SEED = 6  # CASE's cls_gt (cluster_table) for both the loss and the test videos
TRAIN_FEATURES, TEST_FEATURES, TORCH_SEED = 100, 200, 7  # planted_features seeds: + batch row / + video index
CMCS_TRAIN_ROWS, CMCS_TRAIN_LABEL, CMCS_TRAIN_WEIGHT = 400, 5, 0.5  # one copy of a video labelled 5 and 11


def close(a, b, rtol=1e-5) -> bool:
    """Equal up to float32 rounding, relative to the larger magnitude of the two."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return a.shape == b.shape and float(np.abs(a - b).max(initial=0.0)) <= rtol * max(
        1.0, float(np.abs(a).max(initial=0.0))
    )


def same_detections(expected, found, seconds=0.01, score=1e-4) -> bool:
    """Every expected (class, score, start, end) has its own counterpart in ``found``."""
    left = [tuple(d) for d in found]
    for c, s, a, b in sorted(expected, key=lambda d: -d[1]):
        match = [
            i
            for i, d in enumerate(left)
            if d[0] == c and abs(d[1] - s) <= score and abs(d[2] - a) <= seconds and abs(d[3] - b) <= seconds
        ]
        if not match:
            return False
        left.pop(min(match, key=lambda i: abs(left[i][1] - s)))
    return not left


def batch(
    x: torch.Tensor, labels: list[list[int]], clicks: list[list[int]] | None = None, weights: list[float] | None = None
) -> Batch:
    y = torch.zeros(len(labels), C)
    for b, labs in enumerate(labels):
        y[b, labs] = 1
    click = torch.zeros(x.shape[:2])
    for b, rows in enumerate(clicks or []):
        click[b, rows] = 1
    return Batch(x, y, torch.zeros(len(labels), dtype=torch.bool), click, torch.tensor(weights or [1.0] * len(labels)))


def ours(method: str, states: list[dict]) -> torch.nn.Module:
    return get_method(method).from_official(states)


# ---------------------------------------------------------------------------------------------------
# against our transcription, small widths, many lengths


@pytest.mark.parametrize("seed", [0, 1])
def test_basnet_matches_the_transcription(seed):
    state = official.seeded_state(official.layout("basnet", D, C, hidden=64), seed, C)
    model = ours("basnet", [state])
    x = torch.from_numpy(np.stack([official.planted_features(seed * 10 + b, 750, D, C) for b in range(3)]))
    labels = [[1], [4, 7], [19]]
    torch.manual_seed(seed)
    expected = official.basnet_forward(state, x, train=True)
    torch.manual_seed(seed)
    out = model.train()(x)
    assert close(expected["score_supp"].detach(), out.internals["score_supp"].detach())
    terms = model.loss(out, batch(x, labels))
    for name, value in official.basnet_loss(expected, batch(x, labels).labels).items():
        assert close(value.item(), terms[name].item()), name
    model.eval()
    for rows in (90, 750, 1400):
        feat = official.planted_features(seed + rows, rows, D, C)
        with torch.no_grad():
            ref = official.basnet_forward(state, torch.from_numpy(inference_input(feat, "uniform", 750))[None])
        scores = infer(model, feat)
        assert close(ref["score_supp"][0, :-1], scores.video_scores)
        expected_dets = official.basnet_detections(ref["score_supp"][0].numpy(), ref["cas_supp"][0].numpy(), rows)
        timing = VideoTiming(rows, 0.64, rows * 0.64, 0, 16)
        assert same_detections(expected_dets, localize(scores, model.config.localization, timing)), rows


@pytest.mark.parametrize("seed", [0, 1])
def test_um_matches_the_transcription(seed):
    state = official.seeded_state(official.layout("um", D, C, hidden=128), seed, C)
    model = ours("um", [state])
    x = torch.from_numpy(np.stack([official.planted_features(seed * 10 + b, 750, D, C) for b in range(3)]))
    labels = [[2], [3, 9], [0]]
    torch.manual_seed(seed)
    expected = official.um_forward(state, x, train=True)
    torch.manual_seed(seed)
    out = model.train()(x)  # same seed: the same random subset of segments is eligible
    assert close(expected["score_act"].detach(), out.internals["score_act"].detach())
    assert close(expected["feat_act"].detach(), out.internals["feat_act"].detach())
    terms = model.loss(out, batch(x, labels))
    margin = 100.0 * np.sqrt(128 / 2048)  # the margin scales with a hidden width other than 2048
    for name, value in official.um_loss(expected, batch(x, labels).labels, margin).items():
        assert close(value.item(), terms[name].item()), name
    model.eval()
    for rows in (40, 431, 750, 1333):
        feat = official.planted_features(seed + rows, rows, D, C)
        with torch.no_grad():
            ref = official.um_forward(state, torch.from_numpy(inference_input(feat, "uniform-if-longer", 750))[None])
        scores = infer(model, feat)
        assert close(ref["score_act"][0], scores.video_scores)
        timing = VideoTiming(rows, 0.64, rows * 0.64, 0, 16)
        assert same_detections(
            official.um_detections(ref, rows), localize(scores, model.config.localization, timing)
        ), rows


@pytest.mark.parametrize("operator", ["channel-thirds", "per-tap"])
def test_backtal_matches_the_transcription(operator):
    state = official.seeded_state(official.layout("backtal", D, C, hidden=48), 3, C)
    model = ours("backtal", [state])
    x = torch.from_numpy(
        np.stack([interpolate(official.planted_features(b, 300 + 500 * b, D, C), 750) for b in range(3)])
    )
    labels, clicks = [[1], [2, 5], [7]], [[3, 300, 301, 749], [100], []]
    torch.manual_seed(4)
    expected = official.backtal_forward(state, x, train=True)
    torch.manual_seed(4)
    out = model.train()(x)  # same seed, same layout: the same dropout masks
    assert close(expected["cas_base"].detach().transpose(1, 2), out.internals["cas_base"].detach())
    terms = model.loss(out, batch(x, labels, clicks))
    for name, value in official.backtal_loss(expected, batch(x, labels).labels, clicks).items():
        assert close(value.item(), terms[name].item()), name
    if operator == "per-tap":  # the paper's operator: each tap scaled by its own neighbour's similarity
        paper = get_method("backtal").from_official([state], affinity_operator=operator)
        with torch.no_grad():
            assert not torch.allclose(paper.eval()(x).cas, model.eval()(x).cas, atol=1e-3)
        return
    model.eval()
    for rows, fps in ((120, 30.0), (750, 25.0), (1900, 29.97)):
        feat = official.planted_features(rows, rows, D, C)
        frame_num = round(rows * 0.64 * fps)
        with torch.no_grad():
            ref = official.backtal_forward(state, torch.from_numpy(interpolate(feat, 750))[None])
        scores = infer(model, feat)
        timing = VideoTiming(rows, 0.64, frame_num / fps, frame_num, 16)
        expected_dets = official.backtal_detections(ref, frame_num, frame_num / fps)
        assert same_detections(expected_dets, localize(scores, model.config.localization, timing)), rows


@pytest.mark.parametrize("fusion", ["late", "early"])
def test_cmcs_matches_the_transcription(fusion):
    halves = [D // 2, D // 2] if fusion == "late" else [D]
    states = [official.seeded_state(official.layout("cmcs", w, C), 5 + s, C) for s, w in enumerate(halves)]
    model = ours("cmcs", states)
    assert model.config.network.fusion == fusion
    x = torch.from_numpy(official.planted_features(11, 333, D, C))[None]
    torch.manual_seed(2)
    expected = [official.cmcs_forward(s, part, train=True) for s, part in zip(states, x.split(D // len(states), 2))]
    torch.manual_seed(2)
    out = model.train()(x)  # Dropout1d draws as the official Dropout2d: one value per (video, channel)
    terms = model.loss(out, batch(x, [[6]], weights=[0.5]))  # a one-label copy of a two-label video
    for name in ("cls", "diversity", "norm"):
        value = sum(official.cmcs_loss(branches, logits, 6, 0.5)[name] for _, logits, branches in expected)
        assert close(value.item(), terms[name].item()), name
    model.eval()
    for rows in (2, 90, 1100):
        feat = official.planted_features(rows, rows, D, C)
        with torch.no_grad():
            outs = [
                official.cmcs_forward(s, part)
                for s, part in zip(states, torch.from_numpy(feat)[None].split(D // len(states), 2))
            ]
        avg = torch.stack([o[0] for o in outs]).mean(0)[0].numpy()
        logits = torch.stack([o[1] for o in outs]).mean(0)[0].numpy()
        frame_cnt = 16 * rows + 7
        scores = infer(model, feat)
        timing = VideoTiming(rows, 0.64, frame_cnt / 25, frame_cnt, 16)
        expected_dets = official.cmcs_detections(avg, logits, frame_cnt, 25.0)
        assert same_detections(expected_dets, localize(scores, model.config.localization, timing)), rows


def test_the_thresholded_cas_is_the_official_one():
    """What the localizer thresholds (BaS-Net): the ReLU'd min-max of the raw logits, x24 at chunk starts."""
    state = official.seeded_state(official.layout("basnet", D, C, hidden=64), 0, C)
    model = ours("basnet", [state])
    feat = official.planted_features(3, 500, D, C)
    scores = infer(model, feat)
    classes = selected_classes(scores.video_scores, model.config.localization)
    assert classes.size
    cas, _, time = localization_signals(
        scores, model.config.localization, VideoTiming(500, 0.64, 320.0, 0, 16), classes
    )
    expected = official._upgrade(official._relu_minmax(scores.cas[:, classes]))
    np.testing.assert_array_equal(cas, expected)
    assert time(np.array([18000])) == pytest.approx(320.0)


# ---------------------------------------------------------------------------------------------------
# against the numbers the official code produced (full official widths)


def _golden_inputs(method: str):
    spec = GOLDEN[method]
    x = torch.from_numpy(np.stack([official.planted_features(TRAIN_FEATURES + b, 750, D, C) for b in range(2)]))
    return spec, x


@pytest.mark.parametrize("method", ["basnet", "um"])
@pytest.mark.slow
def test_basnet_and_um_reproduce_the_official_numbers(method):
    spec, x = _golden_inputs(method)
    state = official.seeded_state(official.layout(method, D, C), WEIGHT_SEEDS[method], C)
    model = ours(method, [state])
    torch.manual_seed(TORCH_SEED)
    terms = model.loss(model.train()(x), batch(x, spec["train_labels"]))
    for name, value in spec["loss"].items():
        assert close(value, terms[name].item()), name
    model.eval()
    for i, video in enumerate(spec["videos"]):
        feat = official.planted_features(TEST_FEATURES + i, video["rows"], D, C)
        scores = infer(model, feat)
        assert close(video["video_scores"], scores.video_scores)
        found = localize(
            scores, model.config.localization, VideoTiming(video["rows"], 0.64, video["rows"] * 0.64, 0, 16)
        )
        assert len(found) == len(video["detections"]) and same_detections(video["detections"], found)


@pytest.mark.slow
def test_backtal_reproduces_the_official_numbers():
    spec, x = _golden_inputs("backtal")
    state = official.seeded_state(official.layout("backtal", D, C), WEIGHT_SEEDS["backtal"], C)
    model = ours("backtal", [state])
    torch.manual_seed(TORCH_SEED)
    terms = model.loss(model.train()(x), batch(x, spec["train_labels"], spec["clicks"]))
    for name in ("base", "supp", "filter_l1"):
        assert close(spec["loss"][name], terms[name].item()), name
    assert close(spec["loss"]["total"], sum(v.item() for v in terms.values()))
    model.eval()
    for i, video in enumerate(spec["videos"]):
        scores = infer(model, official.planted_features(TEST_FEATURES + i, video["rows"], D, C))
        assert close(video["video_scores"], scores.video_scores)
        timing = VideoTiming(video["rows"], 0.64, video["duration"], video["frame_num"], 16)
        assert same_detections(video["detections"], localize(scores, model.config.localization, timing))


def test_cmcs_late_fusion_reproduces_the_official_numbers():
    spec = GOLDEN["cmcs"]
    states = [official.seeded_state(official.layout("cmcs", D // 2, C), WEIGHT_SEEDS["cmcs"] + s, C) for s in range(2)]
    model = ours("cmcs", states)
    x = torch.from_numpy(official.planted_features(100, 400, D, C))[None]
    torch.manual_seed(TORCH_SEED)
    terms = model.loss(model.train()(x), batch(x, [[5]], weights=[0.5]))
    for name, value in spec["loss"].items():
        assert close(value, terms[name].item()), name
    model.eval()
    for i, video in enumerate(spec["videos"]):
        scores = infer(model, official.planted_features(TEST_FEATURES + i, video["rows"], D, C))
        assert close(video["video_scores"], scores.video_scores)
        timing = VideoTiming(video["rows"], 0.64, video["frame_cnt"] / video["fps"], video["frame_cnt"], 16)
        assert same_detections(video["detections"], localize(scores, model.config.localization, timing))


def test_the_transcriptions_reproduce_the_official_numbers():
    """Pins tests/official.py to the real code: its post-processing gives the official detections."""
    spec = GOLDEN["cmcs"]
    states = [official.seeded_state(official.layout("cmcs", D // 2, C), WEIGHT_SEEDS["cmcs"] + s, C) for s in range(2)]
    for i, video in enumerate(spec["videos"]):
        feat = torch.from_numpy(official.planted_features(TEST_FEATURES + i, video["rows"], D, C))[None]
        outs = [official.cmcs_forward(s, part) for s, part in zip(states, feat.split(D // 2, 2))]
        avg = torch.stack([o[0] for o in outs]).mean(0)[0].detach().numpy()
        logits = torch.stack([o[1] for o in outs]).mean(0)[0].detach().numpy()
        assert same_detections(video["detections"], official.cmcs_detections(avg, logits, video["frame_cnt"], 25.0))
    spec = GOLDEN["um"]
    state = official.seeded_state(official.layout("um", D, C), 1, C)
    for i, video in enumerate(spec["videos"]):
        feat = official.planted_features(TEST_FEATURES + i, video["rows"], D, C)
        with torch.no_grad():
            ref = official.um_forward(state, torch.from_numpy(inference_input(feat, "uniform-if-longer", 750))[None])
        assert same_detections(video["detections"], official.um_detections(ref, video["rows"]))


# ---------------------------------------------------------------------------------------------------
# wtal import checkpoint: the authors' files -> a run that wtal test uses


@pytest.fixture(scope="module")
def planted_data(tmp_path_factory):
    from .planted import write_planted_dataset

    root = tmp_path_factory.mktemp("import")
    write_planted_dataset(root, num_classes=3, feature_dim=D, n_train=2, n_test=4, seed=3)
    return root


def test_imported_basnet_checkpoint_gives_the_official_detections(planted_data, tmp_path, run_cli):
    state = official.seeded_state(official.layout("basnet", D, 3, hidden=64), 4, 3)
    torch.save(state, tmp_path / "BaS_Net_model_seed_0.pkl")  # what the official main.py saves
    code, out, err = run_cli(
        "import",
        "checkpoint",
        tmp_path / "BaS_Net_model_seed_0.pkl",
        "--method",
        "basnet",
        "--data",
        planted_data,
        "--out",
        tmp_path / "run",
    )
    assert code == 0, err
    meta = json.loads((tmp_path / "run" / "config.json").read_text())
    assert meta["config"]["network"]["hidden_dim"] == 64 and meta["classes"] == ["action_0", "action_1", "action_2"]
    assert len(meta["imported_from"][0]["sha256"]) == 64
    code, out, err = run_cli("test", "--run", tmp_path / "run", "--data", planted_data, "--out", tmp_path / "d.json")
    assert code == 0, err
    assert "0.10   0.20" in out and "0.90" in out  # BaS-Net's published tIoU range is the default
    found = json.loads((tmp_path / "d.json").read_text())["results"]
    database = json.loads((planted_data / "annotations.json").read_text())["database"]
    compared = 0
    for vid, entry in database.items():
        if entry["subset"] != "test":
            continue
        feat = np.load(planted_data / "features" / f"{vid}.npy")
        with torch.no_grad():
            ref = official.basnet_forward(state, torch.from_numpy(inference_input(feat, "uniform", 750))[None])
        expected = official.basnet_detections(ref["score_supp"][0].numpy(), ref["cas_supp"][0].numpy(), feat.shape[0])
        names = ["action_0", "action_1", "action_2"]
        ours_dets = [(names.index(d["label"]), d["score"], *d["segment"]) for d in found[vid]]
        assert same_detections(expected, ours_dets, seconds=0.001, score=1e-5), vid
        compared += len(expected)
    assert compared > 0


def test_import_backtal_wrapped_and_cmcs_two_files(planted_data, tmp_path, run_cli):
    backtal = official.seeded_state(official.layout("backtal", D, 3, hidden=32), 1, 3)
    torch.save({"epoch": 12, "state_dict": backtal}, tmp_path / "THUMOS14.pth")  # BackTAL's save_best_model
    assert (
        run_cli(
            "import",
            "checkpoint",
            tmp_path / "THUMOS14.pth",
            "--method",
            "backtal",
            "--data",
            planted_data,
            "--out",
            tmp_path / "bt",
        )[0]
        == 0
    )
    for s, stream in enumerate(("rgb", "flow")):
        torch.save(official.seeded_state(official.layout("cmcs", D // 2, 3), s, 3), tmp_path / f"model-{stream}-15000")
    code, _, err = run_cli(
        "import",
        "checkpoint",
        tmp_path / "model-rgb-15000",
        tmp_path / "model-flow-15000",
        "--method",
        "cmcs",
        "--data",
        planted_data,
        "--out",
        tmp_path / "cm",
    )
    assert code == 0, err
    assert json.loads((tmp_path / "cm" / "config.json").read_text())["config"]["network"]["fusion"] == "late"
    code, out, _ = run_cli("test", "--run", tmp_path / "cm", "--data", planted_data, "--out", tmp_path / "c.json")
    assert code == 0 and "0.50" in out and "0.60" not in out  # CMCS reports 0.1:0.5


def test_import_refuses_what_does_not_fit(planted_data, tmp_path, run_cli):
    um = tmp_path / "um.pkl"
    torch.save(official.seeded_state(official.layout("um", D, 3, hidden=16), 0, 3), um)
    code, _, err = run_cli(
        "import", "checkpoint", um, "--method", "basnet", "--data", planted_data, "--out", tmp_path / "r"
    )
    assert code == 2 and "um.pkl" in err and "not an official basnet checkpoint" in err and err.count("\n") == 1
    wide = tmp_path / "bas20.pkl"
    torch.save(official.seeded_state(official.layout("basnet", D, 20, hidden=16), 0, 20), wide)
    code, _, err = run_cli(
        "import", "checkpoint", wide, "--method", "basnet", "--data", planted_data, "--out", tmp_path / "r"
    )
    assert code == 2 and "scores 20 classes, but the dataset has 3" in err and "classes.txt" in err
    torch.save([1, 2, 3], tmp_path / "list.pkl")
    code, _, err = run_cli(
        "import", "checkpoint", tmp_path / "list.pkl", "--method", "um", "--data", planted_data, "--out", tmp_path / "r"
    )
    assert code == 2 and "list.pkl: not a state dict" in err
    code, _, err = run_cli(
        "import", "checkpoint", um, um, um, "--method", "cmcs", "--data", planted_data, "--out", tmp_path / "r"
    )
    assert code == 2 and "cmcs takes 1 or 2 official checkpoint file(s), got 3" in err
    assert not (tmp_path / "r").exists()


def test_case_reproduces_the_official_numbers():
    """CASE: the loss terms and the cluster table (cls_gt) their training step computes from a seeded table, and
    the detections of their inference (with the table inference is given) on two held-out videos."""
    spec = GOLDEN["case"]
    state = official.seeded_state(official.layout("case", D, C), WEIGHT_SEEDS["case"], C)
    model = ours("case", official.official_files("case", state, CASE_TABLE_SEED))
    x = torch.from_numpy(np.stack([official.planted_features(TRAIN_FEATURES + b, 750, D, C) for b in range(2)]))
    terms = model.loss(model.train()(x), batch(x, spec["train_labels"]))
    for name, value in spec["loss"].items():
        assert close(value, terms[name].item()), name
    assert close(spec["cls_gt"], model.cls_gt)  # the table training leaves for inference
    model = ours("case", official.official_files("case", state, CASE_TABLE_SEED))
    for i, video in enumerate(spec["videos"]):
        scores = infer(model, official.planted_features(TEST_FEATURES + i, video["rows"], D, C))
        found = localize(
            scores, model.config.localization, VideoTiming(video["rows"], 0.64, video["rows"] * 0.64, 0, 16)
        )
        assert len(found) == len(video["detections"]) > 0 and same_detections(video["detections"], found)


def test_import_case_weights_and_cluster_table(planted_data, tmp_path, run_cli):
    """CASE's two files (best_model.pkl, cls_gt.npy, either order) -> a run whose detections are the official
    ones (the transcription-free check: the same model built from the same files); a pickled or missing table
    is refused in one line naming the file."""
    state = official.seeded_state(official.layout("case", D, 3), 5, 3)
    torch.save(state, tmp_path / "best_model.pkl")  # what their evaluate() saves, beside the table
    table = official.cluster_table(9)
    np.save(tmp_path / "cls_gt.npy", table.numpy())
    code, _, err = run_cli(
        "import", "checkpoint", tmp_path / "cls_gt.npy", tmp_path / "best_model.pkl", "--method", "case",
        "--data", planted_data, "--out", tmp_path / "run",
    )  # fmt: skip
    assert code == 0, err
    saved = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["state_dict"]
    assert torch.equal(saved["cls_gt"], table) and saved["rgb.cas.0.weight"].shape == (512, D // 2, 1)
    code, out, err = run_cli("test", "--run", tmp_path / "run", "--data", planted_data, "--out", tmp_path / "d.json")
    assert code == 0, err
    assert "0.70" in out and "0.80" not in out  # CASE reports tIoU 0.1:0.7
    found = json.loads((tmp_path / "d.json").read_text())["results"]
    assert sum(map(len, found.values())) > 0
    model = ours("case", [state, {"cls_gt": table}])
    for vid in found:
        feat = np.load(planted_data / "features" / f"{vid}.npy")
        scores = infer(model, feat)
        timing = VideoTiming(feat.shape[0], 0.64, feat.shape[0] * 0.64, 0, 16)
        names = ["action_0", "action_1", "action_2"]
        theirs = [(names.index(d["label"]), d["score"], *d["segment"]) for d in found[vid]]
        assert same_detections(localize(scores, model.config.localization, timing), theirs, seconds=0.001, score=1e-5)
    np.save(tmp_path / "pickled.npy", np.array([{"cls_gt": 1}], dtype=object), allow_pickle=True)
    for files, message in (
        ([tmp_path / "best_model.pkl"], "case takes 2 official checkpoint file(s), got 1"),
        ([tmp_path / "best_model.pkl", tmp_path / "pickled.npy"], "pickled.npy: not a plain NumPy array"),
    ):
        code, _, err = run_cli(
            "import", "checkpoint", *files, "--method", "case", "--data", planted_data, "--out", tmp_path / "r"
        )
        assert code == 2 and message in err and "cls_gt.npy" in err and err.count("\n") == 1, err
    assert not (tmp_path / "r").exists()
