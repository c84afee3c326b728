"""Beyond the papers: ``wtal refine`` (snippet-level self-training on a run's own pseudo labels) and the
class-agnostic actionness head any method can switch on."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from wtal_pipe.data.annotations import load_annotations
from wtal_pipe.errors import DataError, WtalError
from wtal_pipe.inference.localize import Detection
from wtal_pipe.methods import get_method
from wtal_pipe.methods.addons import pseudo_background_loss, pseudo_foreground_loss, ranked_targets
from wtal_pipe.methods.base import Batch
from wtal_pipe.run import load_run
from wtal_pipe.tools.shaped import narrowed
from wtal_pipe.training import refine as refine_module
from wtal_pipe.training.pseudo import PseudoLabels, PseudoLabelSettings, keep_confident, row_times, write_pseudo_labels

from .planted import write_planted_dataset
from .test_bad_input import one_line_error

QUICK = ["--lr", "1e-3", "--num-segments", "32", "--set", "hidden_dim=16", "--device", "cpu"]
METHODS = ("basnet", "um", "cmcs", "backtal")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("refine") / "data"
    write_planted_dataset(root, num_classes=3, feature_dim=16, n_train=16, n_test=5, rows=(30, 60), seed=4)
    return root


@pytest.fixture(scope="module")
def base_run(data, tmp_path_factory):
    """A UM run holding out a quarter of its training videos."""
    from typer.testing import CliRunner

    from wtal_pipe.cli import app

    run = tmp_path_factory.mktemp("base") / "run"
    args = ["train", "--method", "um", "--data", str(data), "--out", str(run), "--iters", "30", "--val", "0.25"]
    result = CliRunner().invoke(app, [*args, *QUICK])
    assert result.exit_code == 0, result.output
    return run


def test_pseudo_labels_come_from_training_videos_and_only_their_labelled_classes(data, base_run):
    model, meta = load_run(base_run, checkpoint="final")
    held = set(meta.held_out["videos"])
    settings = PseudoLabelSettings(keep_ratio=0.2)
    videos = refine_module.pseudo_labels(model, meta, data, held, settings)
    database = load_annotations(data / "annotations.json")
    training = {vid for vid, e in database.items() if e["subset"] == "train"} - held
    assert set(videos) == training and held and not held & set(videos)
    segments = 0
    for vid, rows in videos.items():
        labelled = {meta.classes.index(label) for label in database[vid]["labels"]}
        assert {int(row[0]) for row in rows} <= labelled
        segments += len(rows)
    assert segments > len(videos)  # several confident segments per video on average


def test_only_confident_detections_are_kept_per_class():
    detections = [(0, 0.9, 1.0, 2.0), (0, 0.5, 3.0, 4.0), (0, 0.3, 5.0, 6.0), (2, 0.2, 1.0, 3.0), (2, 0.1, 4.0, 4.0)]
    assert keep_confident([Detection(*d) for d in detections], 0.5) == [
        (0, 0.9, 1.0, 2.0),
        (0, 0.5, 3.0, 4.0),
        (2, 0.2, 1.0, 3.0),
    ]


def test_targets_are_gaussian_toward_segment_centres_for_their_class(tmp_path):
    path = tmp_path / "pseudo.json"
    write_pseudo_labels(path, ["a", "b"], {"v": [Detection(1, 0.8, 10.0, 20.0)]}, PseudoLabelSettings(), "x")
    labels = PseudoLabels.read(path, ["a", "b"])
    times = np.array([5.0, 10.0, 15.0, 17.5, 20.0, 25.0])
    targets = labels.targets("v", times, 2)
    assert targets[:, 0].tolist() == [0.0] * 6
    np.testing.assert_allclose(targets[:, 1], [0, np.exp(-0.5), 1, np.exp(-0.125), np.exp(-0.5), 0], rtol=1e-6)
    assert not labels.targets("other", times, 2).any()
    with pytest.raises(Exception, match="not pseudo labels for this run's classes"):
        PseudoLabels.read(path, ["a", "c"])


def test_overlapping_segments_of_a_class_take_the_larger_target_and_empty_ones_are_refused(tmp_path):
    path = tmp_path / "pseudo.json"
    segments = [Detection(0, 0.9, 0.0, 4.0), Detection(0, 0.6, 3.0, 5.0), Detection(1, 0.7, 3.0, 5.0)]
    write_pseudo_labels(path, ["a", "b"], {"v": segments}, PseudoLabelSettings(sigma=0.5), "x")
    targets = PseudoLabels.read(path, ["a", "b"]).targets("v", np.array([2.0, 3.5, 4.0, 6.0]), 2)
    first = np.exp(-0.5 * (np.array([0.0, 1.5, 2.0]) / 1.0) ** 2)  # centre 2, sigma x half-length = 1
    second = np.exp(-0.5 * (np.array([-0.5, 0.0]) / 0.5) ** 2)  # centre 4, sigma x half-length = 0.5
    np.testing.assert_allclose(
        targets[:, 0], [first[0], max(first[1], second[0]), max(first[2], second[1]), 0], rtol=1e-6
    )
    np.testing.assert_allclose(targets[:, 1], [0, second[0], second[1], 0], rtol=1e-6)
    write_pseudo_labels(path, ["a", "b"], {"v": [Detection(0, 0.9, 3.0, 3.0)]}, PseudoLabelSettings(), "x")
    with pytest.raises(DataError, match="ends before it starts"):
        PseudoLabels.read(path, ["a", "b"])


def test_row_times_follow_the_sampled_or_interpolated_rows():
    np.testing.assert_allclose(
        row_times(np.array([0, 3]), seconds_per_row=0.64, duration=9, num_segments=2), [0.32, 2.24]
    )
    np.testing.assert_allclose(
        row_times(None, seconds_per_row=0.64, duration=10, num_segments=4), [1.25, 3.75, 6.25, 8.75]
    )


def test_a_refined_run_records_its_rounds_and_tests_like_any_run(data, base_run, tmp_path, run_cli):
    out = tmp_path / "refined"
    code, printed, err = run_cli(
        "refine", "--run", base_run, "--data", data, "--out", out, "--rounds", "2", "--set", "iterations=6",
        "--set", "keep_ratio=0.3", "--device", "cpu",
    )  # fmt: skip
    assert code == 0, err
    assert "round 1:" in printed and "round 2:" in printed
    meta = json.loads((out / "config.json").read_text())
    assert meta["refinement"]["round"] == 2 and meta["refinement"]["rounds"] == 2
    assert meta["refinement"]["pseudo_labels"] == {"keep_ratio": 0.3, "sigma": 1.0}
    assert meta["held_out"] == json.loads((base_run / "config.json").read_text())["held_out"]  # the same split
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 6 and all(record["pseudo"] > 0 for record in log)
    round_one = json.loads((out / "rounds" / "round-1.pseudo.json").read_text())
    assert round_one["source"].startswith("sha256:") and round_one["videos"]
    code, printed, err = run_cli("test", "--run", out, "--data", data, "--out", tmp_path / "dets.json")
    assert code == 0, err
    assert "mAP" in printed
    refined, _ = load_run(out)
    base, _ = load_run(base_run, checkpoint="final")
    assert not torch.equal(refined.state_dict()["embed.weight"], base.state_dict()["embed.weight"])
    code, _, err = run_cli("refine", "--run", base_run, "--data", data, "--out", out, "--device", "cpu")
    assert code != 0 and one_line_error(err, "already holds a refined run")


def test_an_interrupted_round_reruns_to_the_same_bytes(data, base_run, tmp_path, monkeypatch):
    settings = {"iterations": 5, "keep_ratio": 0.3}

    def options(out: Path) -> refine_module.RefineOptions:
        return refine_module.RefineOptions(base_run, data, out, rounds=2, device="cpu", overrides=settings)

    whole = tmp_path / "whole"
    refine_module.refine(options(whole))
    real_train = refine_module.train

    def interrupted(train_options, on_log=None, report=None):
        if train_options.refinement["round"] == 2:

            def stop(record: dict) -> None:
                if record["step"] == 3:
                    raise KeyboardInterrupt

            return real_train(train_options, stop)
        return real_train(train_options, on_log)

    again = tmp_path / "again"
    monkeypatch.setattr(refine_module, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        refine_module.refine(options(again))
    assert (again / "rounds" / "round-1" / "checkpoint.pt").exists()
    assert not (again / "rounds" / "round-2").exists() and not (again / "checkpoint.pt").exists()
    monkeypatch.setattr(refine_module, "train", real_train)
    said: list[str] = []
    refine_module.refine(options(again), report=said.append)
    assert said[0].startswith("round 1: finished")
    for name in ("checkpoint.pt", "rounds/round-1.pseudo.json", "rounds/round-2.pseudo.json"):
        assert (again / name).read_bytes() == (whole / name).read_bytes(), name


def test_refine_refuses_bad_settings_before_any_work(data, base_run, tmp_path, run_cli):
    out = tmp_path / "bad"
    code, _, err = run_cli("refine", "--run", base_run, "--data", data, "--out", out, "--set", "keep_ratio=2")
    assert code != 0 and one_line_error(err, "keep_ratio") and not out.exists()
    code, _, err = run_cli("refine", "--run", base_run, "--data", data, "--out", out, "--set", "hidden_dim=32")
    assert code != 0 and one_line_error(err, "hidden_dim") and not out.exists()


@pytest.mark.parametrize("name", METHODS)
def test_the_actionness_head_is_off_by_default_and_when_on_scales_the_cas(name):
    method = get_method(name)
    narrow = narrowed(method, 8)
    torch.manual_seed(0)
    plain = method(6, 3, method.configure(narrow))
    assert not method.defaults().addons.actionness_head
    assert not any(key.startswith("actionness_head") for key in plain.state_dict())
    torch.manual_seed(0)
    model = method(6, 3, method.configure({**narrow, "actionness_head": True}))
    x = torch.randn(2, 40, 6)
    batch = Batch(
        x, torch.tensor([[1.0, 0, 0], [0, 0, 0]]), torch.tensor([False, True]), torch.zeros(2, 40), torch.ones(2)
    )
    model.eval()
    with torch.no_grad():
        out = model(x)
    head = torch.sigmoid(out.internals["actionness_head"]).unsqueeze(2)
    torch.testing.assert_close(out.cas, out.internals["own_cas"] * head)
    model.train()
    terms = model.objective(model(x), batch)
    assert "actionness_head" in terms and float(terms["actionness_head"].detach()) > 0 and "pseudo" not in terms
    terms["actionness_head"].backward()
    assert model.actionness_head is not None and model.actionness_head.conv1.weight.grad is not None


def test_the_head_learns_from_the_top_and_bottom_rows_of_the_labelled_classes():
    cas = torch.zeros(2, 8, 3)
    cas[0, :, 1] = torch.arange(8.0)  # labelled class: rows 7, 6 highest, 0, 1 lowest
    cas[0, :, 2] = -torch.arange(8.0) * 10  # an unlabelled class must not count
    labels = torch.tensor([[0.0, 1, 0], [0, 0, 0]])
    target, chosen = ranked_targets(cas, labels, 0.25)
    assert chosen[0].nonzero().flatten().tolist() == [0, 1, 6, 7]
    assert target[0].nonzero().flatten().tolist() == [6, 7]
    assert not chosen[1].any()  # a video without labels teaches the head nothing


TARGETS = [
    (name, target)
    for name in METHODS
    for target in ("cas", "cas-with-background", "foreground")
    if target == "cas"
    or (target == "foreground" and get_method(name).has_foreground)
    or (target == "cas-with-background" and get_method(name).has_background_class)
]


@pytest.mark.parametrize(("name", "target"), TARGETS)
def test_pseudo_labels_train_every_method_on_its_labelled_classes_only(name, target):
    method = get_method(name)
    torch.manual_seed(0)
    model = method(6, 3, method.configure(narrowed(method, 8) | {"pseudo_label_target": target})).train()
    x = torch.randn(2, 40, 6)
    labels = torch.tensor([[1.0, 0, 0], [0, 1, 0]])
    pseudo = torch.zeros(2, 40, 3)
    pseudo[0, 10:20, 0] = 1.0
    batch = Batch(x, labels, torch.tensor([False, False]), torch.zeros(2, 40), torch.ones(2), pseudo)
    term = model.objective(model(x), batch)["pseudo"]
    term.backward()
    assert term.item() > 0 and any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    unlabelled = pseudo.clone()
    unlabelled[:, :, 2] = 1.0  # a class no video is labelled with teaches nothing
    torch.manual_seed(1)
    again = model.objective(model(x), dataclasses.replace(batch, pseudo=unlabelled))["pseudo"]
    torch.manual_seed(1)
    same = model.objective(model(x), batch)["pseudo"]
    assert again.item() == pytest.approx(same.item())


def test_each_method_defaults_to_the_pseudo_label_target_that_helped_it_and_refuses_one_it_lacks():
    defaults = {name: get_method(name).defaults().addons.pseudo_label_target for name in METHODS}
    assert defaults == {
        "um": "cas",
        "basnet": "foreground",
        "cmcs": "cas-with-background",
        "backtal": "cas-with-background",
    }
    with pytest.raises(WtalError, match="um has no foreground"):
        get_method("um").configure({"pseudo_label_target": "foreground"})
    with pytest.raises(WtalError, match="um has no cas-with-background"):
        get_method("um").configure({"pseudo_label_target": "cas-with-background"})
    with pytest.raises(WtalError, match="cmcs has no foreground"):
        get_method("cmcs").configure({"pseudo_label_target": "foreground"})


def test_rows_outside_pseudo_segments_are_background_in_the_softmax_target():
    logits = torch.zeros(1, 2, 3, requires_grad=True)  # classes a, b and background; uniform: log 3 each row
    targets = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    loss = pseudo_background_loss(logits, targets, torch.tensor([[1.0, 0.0]]))
    assert loss.item() == pytest.approx(np.log(3))
    loss.backward()  # row 0 pulls class a up, row 1 background; class b down in both
    grad = logits.grad[0]
    assert grad[0, 0] < 0 and grad[1, 2] < 0 and (grad[:, 1] > 0).all()
    half = torch.tensor([[[0.5, 0.0], [0.0, 0.0]]])  # half a class, half background
    assert pseudo_background_loss(torch.zeros(1, 2, 3), half, torch.ones(1, 2)).item() == pytest.approx(np.log(3))
    assert pseudo_background_loss(torch.zeros(1, 2, 3), targets, torch.zeros(1, 2)).item() == 0.0


def test_the_foreground_term_weighs_the_few_action_rows_as_much_as_the_background():
    foreground = torch.tensor([[0.5, 0.5, 0.5, 0.9]])
    targets = torch.tensor([[[1.0], [0.0], [0.0], [0.0]]])
    loss = pseudo_foreground_loss(foreground, targets, torch.ones(1, 1))
    expected = -np.log(0.5) - (2 * np.log(0.5) + np.log(0.1)) / 3  # action mean + background mean
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert pseudo_foreground_loss(foreground, targets, torch.zeros(1, 1)).item() == 0.0
