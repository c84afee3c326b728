"""Numbers a reviewer can trust: a held-out validation split (stratified, seeded, never trained on), scores
during training, the best step's checkpoint, the test-set protocol labelled wherever it shows, several seeds
resumed, TensorBoard scalars, and a report whose mean and sd are the runs' own."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from wtal_pipe.data.annotations import load_annotations
from wtal_pipe.evaluation.evaluate import evaluate, read_detections
from wtal_pipe.intervals import parse_tiou
from wtal_pipe.training.monitor import choose_held_out

from .planted import write_planted_dataset
from .test_bad_input import one_line_error

QUICK = ["--lr", "1e-3", "--num-segments", "32", "--set", "hidden_dim=16", "--device", "cpu"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("honest") / "data"
    write_planted_dataset(root, num_classes=3, feature_dim=16, n_train=20, n_test=6, rows=(30, 60), seed=2)
    return root


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_validation_split_is_stratified_seeded_and_disjoint(data):
    database = load_annotations(data / "annotations.json")
    held = choose_held_out(database, "train", "0.25", test_subset="test", select_on_test=False, seed=0)
    assert held is not None and held.selected_on == "validation" and held.subset == "train"
    again = choose_held_out(database, "train", "0.25", test_subset="test", select_on_test=False, seed=0)
    other = choose_held_out(database, "train", "0.25", test_subset="test", select_on_test=False, seed=1)
    assert again is not None and other is not None and again.videos == held.videos != other.videos
    train = [vid for vid, e in database.items() if e["subset"] == "train"]
    first = {vid: database[vid]["labels"][0] for vid in train}
    for label in set(first.values()):  # about a quarter of each label's videos
        mine = [vid for vid in train if first[vid] == label]
        assert abs(sum(vid in held.videos for vid in mine) - round(0.25 * len(mine))) == 0


def test_training_holds_out_scores_and_keeps_the_best_step(data, tmp_path, run_cli):
    run = tmp_path / "run"
    code, out, err = run_cli(
        "train", "--method", "um", "--data", data, "--out", run, "--iters", "24", "--val", "0.25", "--eval-every", "6",
        "--seed", "1", *QUICK,
    )  # fmt: skip
    assert code == 0, err
    assert "| validation avg mAP" in out and "(best " in out
    meta = json.loads((run / "config.json").read_text())
    held = meta["held_out"]["videos"]
    assert meta["videos"] == 20 - len(held) and len(held) == 5  # never trained on
    metrics = _lines(run / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [6, 12, 18, 24] and all(m["held_out"] == "validation" for m in metrics)
    assert all(0 <= m["average_mAP"] <= 1 and "loss_cls" in m for m in metrics)
    best = max(metrics, key=lambda m: m["average_mAP"])
    assert meta["best"] == {"step": best["step"], "average_mAP": best["average_mAP"]}
    # the best checkpoint is that step's weights: a run stopped there, same seed, ends with the same ones
    stopped = tmp_path / "stopped"
    code, _, err = run_cli(
        "train", "--method", "um", "--data", data, "--out", stopped, "--iters", str(best["step"]), "--val", "0.25",
        "--eval-every", "1000", "--seed", "1", *QUICK,
    )  # fmt: skip
    assert code == 0, err
    saved = torch.load(run / "best.pt", weights_only=True)
    ended = torch.load(stopped / "checkpoint.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(saved["state_dict"][k], ended[k]) for k in ended)
    assert (
        saved["checkpoint"] == f"best on validation (step {best['step']}, average mAP {100 * best['average_mAP']:.2f})"
    )
    code, out, _ = run_cli("test", "--run", run, "--data", data, "--out", tmp_path / "d.json")
    assert code == 0 and f"best on validation (step {best['step']}" in out  # the default with a validation split
    code, out, _ = run_cli("test", "--run", run, "--data", data, "--out", tmp_path / "d.json", "--checkpoint", "final")
    assert code == 0 and "final step (no selection)" in out


def test_selecting_on_test_is_said_in_every_output_and_keeps_the_best_step_on_test(data, tmp_path, run_cli):
    run = tmp_path / "run"
    code, out, _ = run_cli(
        "train", "--method", "um", "--data", data, "--out", run, "--iters", "12", "--select-on", "test", "--eval-every",
        "3", *QUICK,
    )  # fmt: skip
    assert code == 0 and "| selected on test avg mAP" in out
    meta = json.loads((run / "config.json").read_text())
    assert meta["held_out"]["selected_on"] == "test"
    metrics = _lines(run / "metrics.jsonl")
    best = max(metrics, key=lambda m: m["average_mAP"])  # the first of equals, as the monitor keeps it
    assert meta["best"] == {"step": best["step"], "average_mAP": best["average_mAP"]}
    code, out, _ = run_cli("test", "--run", run, "--data", data, "--out", tmp_path / "d.json", "--checkpoint", "best")
    assert code == 0 and out.count("selected on test") >= 2
    assert "selected on test" in json.loads((tmp_path / "d.json").read_text())["external_data"]["checkpoint"]
    truth = load_annotations(data / "annotations.json")
    dets = json.loads((tmp_path / "d.json").read_text())
    scored = evaluate(truth, read_detections(dets, truth), "test", parse_tiou("0.1:0.7:0.1"))
    assert scored.average_map == pytest.approx(best["average_mAP"], abs=1e-6)  # best.pt is the step that scored it
    code, out, _ = run_cli("report", run, "--data", data, "--checkpoint", "best")
    assert code == 0 and "| selected on test |" in out and "**selected on test**" in out


def test_held_out_videos_need_segments(data, tmp_path, run_cli):
    database = json.loads((data / "annotations.json").read_text())["database"]
    labels_only = {
        vid: (
            {"subset": e["subset"], "labels": sorted({a["label"] for a in e["annotations"]})}
            if e["subset"] == "test"
            else e
        )
        for vid, e in database.items()
    }
    other = tmp_path / "data"
    other.mkdir()
    (other / "annotations.json").write_text(json.dumps({"database": labels_only}))
    (other / "features").symlink_to(data / "features")
    code, _, err = run_cli(
        "train", "--method", "um", "--data", other, "--out", tmp_path / "r", "--select-on", "test", *QUICK
    )
    assert code == 2 and one_line_error(err, "have labels but no segments: they cannot be scored")
    code, _, err = run_cli(
        "train", "--method", "um", "--data", data, "--out", tmp_path / "r", "--eval-every", "5", *QUICK
    )
    assert code == 2 and one_line_error(err, "--eval-every scores held-out videos, and none are held out")


def test_seeds_are_runs_of_their_own_and_a_rerun_skips_the_finished(data, tmp_path, run_cli):
    out = tmp_path / "seeds"
    args = ["train", "--method", "basnet", "--data", data, "--out", out, "--iters", "3", "--seeds", "0-1", *QUICK]
    code, text, err = run_cli(*args)
    assert code == 0 and "seed 0: training" in text and "seed 1: training" in text, err
    first = (out / "seed-0" / "checkpoint.pt").stat().st_mtime_ns
    code, text, _ = run_cli(*args[: -len(QUICK) - 2], "--seeds", "0,1,2", *QUICK)
    assert code == 0 and "seed 0: finished" in text and "seed 1: finished" in text and "seed 2: training" in text
    assert (out / "seed-0" / "checkpoint.pt").stat().st_mtime_ns == first
    seeds = [json.loads((out / f"seed-{k}" / "config.json").read_text())["seed"] for k in range(3)]
    assert seeds == [0, 1, 2]


def test_the_report_is_the_mean_and_sd_of_the_runs_own_scores(data, tmp_path, run_cli):
    out = tmp_path / "seeds"
    code, _, err = run_cli(
        "train", "--method", "um", "--data", data, "--out", out, "--iters", "5", "--seeds", "0-2", *QUICK
    )
    assert code == 0, err
    faster = [*QUICK[2:], "--lr", "3e-3"]  # the same settings but the learning rate
    code, _, err = run_cli(
        "train", "--method", "um", "--data", data, "--out", tmp_path / "lr", "--iters", "5", "--seeds", "0-1", *faster
    )
    assert code == 0, err
    code, text, err = run_cli(
        "report", out, tmp_path / "lr", "--data", data, "--json", tmp_path / "r.json", "--out", tmp_path / "r.md",
        "--plot", tmp_path / "curves.png",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    group = next(g for g in report["groups"] if g["n"] == 3)
    truth = load_annotations(data / "annotations.json")
    scores = []
    for k in range(3):  # by hand: each run's detections (wtal test), evaluated, then mean and sd
        assert run_cli("test", "--run", out / f"seed-{k}", "--data", data, "--out", tmp_path / f"d{k}.json")[0] == 0
        dets = json.loads((tmp_path / f"d{k}.json").read_text())
        result = evaluate(truth, read_detections(dets, truth), "test", parse_tiou("0.1:0.7:0.1"))
        scores.append([*result.map_per_threshold, result.average_map])
    scores_pct = np.array(scores) * 100
    np.testing.assert_allclose(group["mean"], scores_pct.mean(0), atol=1e-9)
    np.testing.assert_allclose(group["sd"], scores_pct.std(0, ddof=1), atol=1e-9)
    assert "| 3 |" in text and "| 2 |" in text and "`lr` 0.001 / 0.003" in text and "final step" in text
    assert (tmp_path / "curves.png").stat().st_size > 10_000 and (tmp_path / "r.md").read_text() in text + "\n"


def test_tensorboard_event_files_parse_with_tensorboards_reader(data, tmp_path, run_cli):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    code, _, err = run_cli(
        "train", "--method", "um", "--data", data, "--out", tmp_path / "r", "--iters", "6", "--val", "0.25",
        "--eval-every", "3", "--tensorboard", tmp_path / "tb", *QUICK,
    )  # fmt: skip
    assert code == 0, err
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"train/loss", "train/cls", "train/lr", "validation/average_mAP"} <= set(tags)
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 7))
    assert [e.step for e in events.Scalars("validation/average_mAP")] == [3, 6]


def test_without_tensorboard_the_extra_is_named(data, tmp_path, run_cli, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    args = ["--out", tmp_path / "r", "--iters", "2", "--tensorboard", tmp_path / "tb", *QUICK]
    code, _, err = run_cli("train", "--method", "um", "--data", data, *args)
    assert code == 2 and one_line_error(err, "pip install 'wtal-pipe[tb]'")


@pytest.mark.parametrize(
    ("val", "message"),
    [
        ("test", "--val test is the subset runs are tested on: a checkpoint chosen there is chosen on test"),
        ("0.99", "--val 0.99 holds out all 20 videos of 'train', leaving none to train on"),
        ("nosuch", "--val nosuch: no videos in subset 'nosuch' (subsets present: test, train)"),
    ],
)
def test_a_held_out_set_that_would_mislead_or_empty_training_is_refused(data, tmp_path, run_cli, val, message):
    code, _, err = run_cli("train", "--method", "um", "--data", data, "--out", tmp_path / "r", "--val", val, *QUICK)
    assert code == 2 and one_line_error(err, message) and not (tmp_path / "r").exists()
