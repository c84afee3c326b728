"""Hostile or unlucky input, one case per kind: each ends in a one-line error that names the file (exit 2),
or a reported per-video failure (exit 1), and nothing outside the folders given changes."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from wtal_pipe.tools.synthetic import ACTION_STYLES, PlantedAction, render_frames, write_video

from .conftest import slow_extract_command
from .planted import write_planted_dataset

SMALL = ["--short-side", "64", "--crop", "64", "--flow", "dis", "--workers", "1", "--device", "cpu"]
QUICK = ["--iters", "2", "--lr", "1e-3", "--num-segments", "16", "--set", "hidden_dim=8", "--device", "cpu"]


def snapshot(root: Path, *inside: Path) -> dict[str, int]:
    """Every file under ``root`` except those under ``inside``, with its modification time."""
    skip = [p.resolve() for p in inside]
    return {
        str(p): p.stat().st_mtime_ns
        for p in root.rglob("*")
        if p.is_file() and not any(p.resolve().is_relative_to(s) for s in skip)
    }


def one_line_error(err: str, *names: str) -> bool:
    """Exactly one error line (warnings may precede it), no traceback, naming every one of ``names``."""
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    return len(errors) == 1 and "Traceback" not in err and all(name in errors[0] for name in names)


@pytest.fixture
def planted(tmp_path):
    data = tmp_path / "nest" / "data"
    write_planted_dataset(data, num_classes=2, feature_dim=8, n_train=3, n_test=2, rows=(30, 40))
    return data


def edit_annotations(data: Path, change) -> None:
    path = data / "annotations.json"
    database = json.loads(path.read_text())["database"]
    change(database)
    path.write_text(json.dumps({"database": database}))


# 1. ids that would leave their folder ---------------------------------------------------------------


@pytest.mark.parametrize("evil", ["../../x", "..", "a/b", "..\\x"])
def test_negatives_refuse_ids_that_leave_data_dir(planted, tmp_path, run_cli, evil):
    edit_annotations(planted, lambda db: db.update({evil: {**db["train_0000"], "subset": "train"}}))
    before = snapshot(tmp_path, planted)
    code, _, err = run_cli("negatives", "--data", planted, "--from-features")
    assert code == 2 and one_line_error(err, repr(evil), "annotations.json")
    assert snapshot(tmp_path, planted) == before and not (planted / "negatives").exists()


def test_bas_thumos_import_refuses_ids_and_subsets_that_leave(tmp_path, run_cli):
    source = tmp_path / "src"
    for vid, subset in (("ok", "train"), ("../../escaped", "train")):
        for stream in ("rgb", "flow"):
            folder = source / "features" / subset / stream
            folder.mkdir(parents=True, exist_ok=True)
            np.save(folder / f"{Path(vid).name}.npy", np.ones((4, 8), np.float32))
    gt = {
        "database": {
            "ok": {"subset": "train", "annotations": []},
            "../../escaped": {"subset": "train", "annotations": []},
        }
    }
    (source / "gt.json").write_text(json.dumps(gt))
    before = snapshot(tmp_path, tmp_path / "out")
    code, _, err = run_cli("import", "bas-thumos", source, "--data", tmp_path / "out" / "data")
    assert code == 2 and one_line_error(err, "'../../escaped'", "gt.json")
    assert snapshot(tmp_path, tmp_path / "out") == before
    gt["database"] = {"ok": {"subset": "../..", "annotations": []}}
    (source / "gt.json").write_text(json.dumps(gt))
    code, _, err = run_cli("import", "bas-thumos", source, "--data", tmp_path / "out" / "data")
    assert code == 2 and one_line_error(err, "subset '../..'")


def test_test_and_plots_refuse_ids_that_leave(planted, tmp_path, run_cli):
    assert run_cli("train", "--method", "basnet", "--data", planted, "--out", tmp_path / "run", *QUICK)[0] == 0
    edit_annotations(planted, lambda db: db.update({"../escaped": {**db["test_0003"]}}))
    before = snapshot(tmp_path, planted, tmp_path / "run", tmp_path / "plots")
    code, _, err = run_cli(
        "test",
        "--run",
        tmp_path / "run",
        "--data",
        planted,
        "--out",
        tmp_path / "run" / "d.json",
        "--plot-dir",
        tmp_path / "plots",
    )
    assert code == 2 and one_line_error(err, "'../escaped'")
    assert snapshot(tmp_path, planted, tmp_path / "run", tmp_path / "plots") == before


# 2. two videos, one stem --------------------------------------------------------------------------


def test_same_stem_from_another_file_is_refused_across_calls(make_clip, tmp_path, run_cli):
    make_clip("a.mp4", seconds=1.0)
    make_clip("other/a.mkv", seconds=1.0, seed=3, codec="ffv1")
    data = tmp_path / "data"
    assert run_cli("extract", tmp_path / "a.mp4", "--data", data, *SMALL)[0] == 0
    first = np.load(data / "features" / "a.npy")
    code, _, err = run_cli("extract", tmp_path / "other" / "a.mkv", "--data", data, *SMALL)
    assert code == 1 and "FAILED" in err and "a.mkv" in err and "a.mp4" in err and "--force" in err
    np.testing.assert_array_equal(np.load(data / "features" / "a.npy"), first)
    assert run_cli("extract", tmp_path / "other" / "a.mkv", "--data", data, *SMALL, "--force")[0] == 0
    assert json.loads((data / "features" / "a.json").read_text())["video"].endswith("a.mkv")


# 3. truncated or corrupt videos, and videos shorter than a chunk ------------------------------------


def _four_seconds(tmp_path: Path, name: str, **kwargs) -> Path:
    frames = render_frames(4.0, 25.0, 96, 64, [PlantedAction(ACTION_STYLES[0], 0.0, 4.0)])
    return write_video(tmp_path / "videos" / name, frames, fps=25.0, **kwargs)


@pytest.mark.slow
def test_truncated_and_corrupt_videos_are_failures_unless_allowed(tmp_path, run_cli):
    cut = _four_seconds(tmp_path, "cut.mp4", container_options={"movflags": "+faststart"})
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])  # moov in front, data cut: decodes 22 of 100
    garbled = _four_seconds(tmp_path, "garbled.mkv")
    data = bytearray(garbled.read_bytes())
    third = len(data) // 3
    data[third : third + len(data) // 4] = np.random.default_rng(0).integers(0, 256, len(data) // 4, np.uint8).tobytes()
    garbled.write_bytes(bytes(data))
    _four_seconds(tmp_path, "good.mp4")
    code, out, err = run_cli("extract", tmp_path / "videos", "--data", tmp_path / "data", *SMALL)
    failures = [line for line in err.splitlines() if line.startswith("FAILED")]
    assert code == 1 and len(failures) == 2 and "1 ok" in out
    assert all("decoded only" in line and "--allow-partial" in line for line in failures)
    assert sorted(p.name for p in (tmp_path / "data" / "features").glob("*.npy")) == ["good.npy"]
    code, out, _ = run_cli("extract", tmp_path / "videos", "--data", tmp_path / "data", *SMALL, "--allow-partial")
    assert code == 0
    coverage = json.loads((tmp_path / "data" / "features" / "cut.json").read_text())["coverage"]
    assert coverage["partial"] and coverage["decoded_seconds"] < 2 and coverage["declared_seconds"] == 4.0


def test_videos_shorter_than_one_chunk_fail_at_extraction(make_clip, tmp_path, run_cli):
    make_clip("videos/one.mp4", seconds=0.04)  # one frame
    make_clip("videos/short.mp4", seconds=0.4)  # 10 frames < 16
    code, _, err = run_cli("extract", tmp_path / "videos", "--data", tmp_path / "data", *SMALL)
    failures = [line for line in err.splitlines() if line.startswith("FAILED")]
    assert code == 1 and len(failures) == 2 and all("fewer than one 16-frame feature row" in f for f in failures)
    assert not list((tmp_path / "data" / "features").glob("*.npy"))


# 4. rotation ----------------------------------------------------------------------------------------


def test_display_rotation_is_applied_and_recorded(tmp_path, run_cli):
    image = np.zeros((32, 64, 3), np.uint8)
    image[:, :32] = 255  # the left half white, as stored
    write_video(
        tmp_path / "portrait.mp4", [image] * 20, fps=25.0, codec="libx264rgb", options={"crf": "0"}, rotation=-90
    )  # shown turned 90 degrees clockwise, as a phone held upright records
    from wtal_pipe.video.decode import DecodeConfig, iter_frames

    frame = next(iter_frames(tmp_path / "portrait.mp4", DecodeConfig(short_side=32, crop=32))).rgb
    assert frame[:8].mean() > 250 and frame[-8:].mean() < 5  # the white half is now on top
    assert (
        run_cli(
            "extract",
            tmp_path / "portrait.mp4",
            "--data",
            tmp_path / "data",
            *SMALL[:4],
            "--flow",
            "dis",
            "--workers",
            "1",
            "--device",
            "cpu",
        )[0]
        == 0
    )
    assert json.loads((tmp_path / "data" / "features" / "portrait.json").read_text())["rotation"] == -90


# 5. damaged caches, outputs and checkpoints ---------------------------------------------------------


@pytest.mark.parametrize("victim", ["frames-*.npy", "flow-*.npy", "features"])
@pytest.mark.parametrize("damage", ["bytes", "truncate"])
def test_damaged_cache_or_output_is_recomputed(make_clip, tmp_path, run_cli, victim, damage):
    make_clip("v.mp4", seconds=1.4)
    data = tmp_path / "data"
    assert run_cli("extract", tmp_path / "v.mp4", "--data", data, *SMALL)[0] == 0
    expected = np.load(data / "features" / "v.npy")
    features = data / "features" / "v.npy"
    path = features if victim == "features" else next((data / "cache" / "v").glob(victim))
    raw = bytearray(path.read_bytes())
    if damage == "bytes":
        raw[-200:-100] = bytes(100)
        path.write_bytes(bytes(raw))
    else:
        path.write_bytes(bytes(raw[: len(raw) // 3]))
    if victim != "features":
        features.unlink()  # the cache is read again only when features are recomputed from it
    others = {p: p.stat().st_mtime_ns for p in (data / "cache" / "v").glob("*.npy") if p != path}
    code, out, err = run_cli("extract", tmp_path / "v.mp4", "--data", data, *SMALL)
    assert code == 0 and "done v.mp4" in out, err
    np.testing.assert_allclose(np.load(features), expected, rtol=1e-5, atol=1e-6)
    if victim != "features":  # only the damaged entry was recomputed (flow after frames: both, for frames)
        assert all(p.stat().st_mtime_ns == t for p, t in others.items() if victim != "frames-*.npy")


def test_force_recomputes_every_stage(make_clip, tmp_path, run_cli):
    make_clip("v.mp4", seconds=1.4)
    data = tmp_path / "data"
    assert run_cli("extract", tmp_path / "v.mp4", "--data", data, *SMALL)[0] == 0
    stamps = {p.name: p.stat().st_mtime_ns for p in (data / "cache" / "v").iterdir()}
    assert run_cli("extract", tmp_path / "v.mp4", "--data", data, *SMALL, "--force")[0] == 0
    assert all(p.stat().st_mtime_ns != stamps[p.name] for p in (data / "cache" / "v").iterdir())


@pytest.mark.slow
def test_damaged_checkpoints_never_load_changed_weights(planted, tmp_path, run_cli):
    """A damaged byte is refused in one line, or it carried no weights (zip padding, a serialization id)
    and the very same tensors load."""
    from wtal_pipe.run import load_run

    assert (
        run_cli(
            "train",
            "--method",
            "um",
            "--data",
            planted,
            "--out",
            tmp_path / "run",
            *QUICK[:-4],
            "--set",
            "hidden_dim=64",
            "--device",
            "cpu",
        )[0]
        == 0
    )
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    original = checkpoint.read_bytes()
    weights = load_run(tmp_path / "run")[0].state_dict()
    rng = np.random.default_rng(0)
    refused = 0
    for _ in range(40):
        damaged = bytearray(original)
        damaged[int(rng.integers(0, len(damaged)))] ^= 0xFF
        checkpoint.write_bytes(bytes(damaged))
        code, _, err = run_cli("test", "--run", tmp_path / "run", "--data", planted, "--out", tmp_path / "d.json")
        if code == 2:
            assert one_line_error(err, "checkpoint.pt")
            refused += 1
        else:
            loaded = load_run(tmp_path / "run")[0].state_dict()
            assert all(torch.equal(loaded[k], weights[k]) for k in weights)
    assert refused >= 30  # most bytes of a checkpoint are weights


# 6. NaN and inf in features --------------------------------------------------------------------------


def test_nonfinite_features_are_named_with_their_row(planted, tmp_path, run_cli):
    path = planted / "features" / "train_0001.npy"
    rows = np.load(path)
    rows[7, 3] = np.inf
    rows[9, 0] = np.nan
    np.save(path, rows)
    code, _, err = run_cli("train", "--method", "basnet", "--data", planted, "--out", tmp_path / "run", *QUICK)
    assert code == 2 and one_line_error(err, "train_0001.npy", "row 7")
    assert not (tmp_path / "run").exists()


# 7. values that cannot be right ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--iters", "0"], "--iters"),
        (["--iters", "-5"], "--iters"),
        (["--batch-size", "0"], "--batch-size"),
        (["--num-segments", "0"], "--num-segments"),
        (["--lr", "-1"], "lr"),
        (["--lr", "nan"], "lr"),
        (["--set", "batch_size=abc"], "batch_size='abc'"),
        (["--set", "nms_threshold=2"], "nms_threshold"),
        (["--set", "fusion=middle"], "fusion"),
        (["--set", "no_such=1"], "no_such"),
    ],
)
def test_training_values_are_validated(planted, tmp_path, run_cli, args, expected):
    code, _, err = run_cli(
        "train",
        "--method",
        "cmcs" if "fusion" in str(args) else "basnet",
        "--data",
        planted,
        "--out",
        tmp_path / "run",
        "--device",
        "cpu",
        *args,
    )
    assert code == 2 and one_line_error(err, expected) and not (tmp_path / "run").exists()


def test_clicks_out_of_range_are_refused_and_for_unknown_videos_warned_about(planted, tmp_path, run_cli):
    duration = json.loads((planted / "annotations.json").read_text())["database"]["train_0000"]["duration"]
    (planted / "clicks.json").write_text(json.dumps({"train_0000": [1.0, -2.0, duration + 5]}))
    code, _, err = run_cli("train", "--method", "backtal", "--data", planted, "--out", tmp_path / "run", *QUICK)
    assert code == 2 and one_line_error(err, "train_0000", "-2", f"{duration + 5:g}", "outside the video")
    (planted / "clicks.json").write_text(json.dumps({"train_0000": [1.0, float("nan")]}))
    code, _, err = run_cli("train", "--method", "backtal", "--data", planted, "--out", tmp_path / "run", *QUICK)
    assert code == 2 and one_line_error(err, "train_0000", "nan is not a finite number")
    (planted / "clicks.json").write_text(json.dumps({"train_0000": [1.0], "nowhere": [1.0]}))
    code, _, err = run_cli("train", "--method", "backtal", "--data", planted, "--out", tmp_path / "run", *QUICK)
    assert code == 0 and "not in annotations.json" in err and "nowhere" in err


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda db: db["train_0000"]["annotations"][0].update(segment=[5.0, 2.0]), "segment [5.0, 2.0]"),
        (lambda db: db["train_0000"]["annotations"][0].pop("label"), "without a label"),
        (lambda db: db["train_0000"]["annotations"][0].update(segment=[1.0]), "bad segment"),
        (lambda db: db["train_0000"]["annotations"][0].update(segment=None), "use [start_s, end_s]"),
    ],
)
def test_malformed_annotations_are_one_line_errors(planted, tmp_path, run_cli, edit, expected):
    edit_annotations(planted, edit)
    code, _, err = run_cli("train", "--method", "basnet", "--data", planted, "--out", tmp_path / "run", *QUICK)
    assert code == 2 and one_line_error(err, "annotations.json", expected)


def test_a_list_as_database_is_a_one_line_error(planted, tmp_path, run_cli):
    (planted / "annotations.json").write_text(json.dumps({"database": [1, 2]}))
    code, _, err = run_cli("negatives", "--data", planted)
    assert code == 2 and one_line_error(err, "annotations.json", '"database" is a list')


GT = {"database": {"v": {"subset": "test", "annotations": [{"label": "a", "segment": [1.0, 4.0]}]}}}


@pytest.mark.parametrize(
    "detections, expected",
    [
        ([], "a list at the top level"),
        ({"results": {"v": [{"label": "a", "segment": [1, 2]}]}}, "malformed detection"),
        ({"results": {"v": [{"label": "a", "score": 0.5, "segment": [1]}]}}, "malformed detection"),
        ({"results": {"v": [{"label": "a", "score": 0.5, "segment": "1-2"}]}}, "malformed detection"),
        ({"results": {"v": [{"label": "a", "score": 0.5, "segment": [3, 2]}]}}, "start <= end"),
        ({"results": {"v": [{"label": "a", "score": float("nan"), "segment": [1, 2]}]}}, "finite"),
        ({"results": {"v": {"label": "a"}}}, "not a list"),
    ],
)
def test_malformed_detections_are_one_line_errors(tmp_path, run_cli, detections, expected):
    (tmp_path / "gt.json").write_text(json.dumps(GT))
    (tmp_path / "d.json").write_text(json.dumps(detections))
    code, _, err = run_cli("evaluate", tmp_path / "d.json", "--gt", tmp_path / "gt.json")
    assert code == 2 and one_line_error(err, "d.json", expected)


@pytest.mark.parametrize("tiou", ["nan", "0.1:0.7:0", "0.1:0.7:1e-9", "0:0.5:0.1", "0.5,2", "x"])
def test_bad_tiou_is_a_one_line_error(tmp_path, run_cli, tiou):
    (tmp_path / "gt.json").write_text(json.dumps(GT))
    (tmp_path / "d.json").write_text(json.dumps({"results": {}}))
    code, _, err = run_cli("evaluate", tmp_path / "d.json", "--gt", tmp_path / "gt.json", "--tiou", tiou)
    assert code == 2 and one_line_error(err, "--tiou")


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--crop", "0"], "crop"),
        (["--short-side", "0", "--crop", "0"], "short"),
        (["--fps", "nan"], "fps"),
        (["--batch-size", "0"], "batch"),
    ],
)
def test_extraction_values_are_validated(make_clip, tmp_path, run_cli, args, expected):
    make_clip("v.mp4", seconds=1.0)
    code, _, err = run_cli("extract", tmp_path / "v.mp4", "--data", tmp_path / "data", "--device", "cpu", *args)
    assert code == 2 and one_line_error(err, expected)


# 8. a crashing retrain leaves the run as it was -----------------------------------------------------


def test_a_crashed_retrain_leaves_the_previous_run_whole(planted, tmp_path, run_cli, monkeypatch):
    run = tmp_path / "run"
    assert run_cli("train", "--method", "basnet", "--data", planted, "--out", run, *QUICK)[0] == 0
    (run / "localize").mkdir()  # a clip cache of the old run's: a new run inherits nothing of it
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    from wtal_pipe.methods.cmcs import CMCS

    def crash(self, outputs, batch):
        raise RuntimeError("boom")

    monkeypatch.setattr(CMCS, "loss", crash)
    code, _, err = run_cli("train", "--method", "cmcs", "--data", planted, "--out", run, *QUICK[:2], "--device", "cpu")
    assert code == 3 and "boom" in err
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run")]  # no staging folder left
    monkeypatch.undo()
    assert run_cli("train", "--method", "um", "--data", planted, "--out", run, *QUICK)[0] == 0
    assert json.loads((run / "config.json").read_text())["method"] == "um" and not (run / "localize").exists()


# 9. a predicted class without ground truth in the subset (also tests/test_evaluate.py) ---------------


def test_test_counts_only_classes_with_ground_truth(planted, tmp_path, run_cli):
    edit_annotations(
        planted,
        lambda db: [a.update(label="action_0") for v in db.values() if v["subset"] == "test" for a in v["annotations"]],
    )
    assert (
        run_cli(
            "train",
            "--method",
            "cmcs",
            "--data",
            planted,
            "--out",
            tmp_path / "run",
            "--iters",
            "2",
            "--device",
            "cpu",
            "--set",
            "class_threshold=0",
        )[0]
        == 0
    )
    code, out, err = run_cli(
        "test", "--run", tmp_path / "run", "--data", planted, "--out", tmp_path / "d.json", "--set", "class_threshold=0"
    )
    assert code == 0, err
    assert "not counted" in out and "action_1" in out


# 10-12. crashes that must be reports or one-line errors ---------------------------------------------


def test_unreadable_video_is_reported_and_the_others_finish(make_clip, tmp_path, run_cli, monkeypatch):
    make_clip("videos/a.mp4", seconds=1.0)
    make_clip("videos/b.mp4", seconds=1.0)
    from wtal_pipe.features import plan

    real = plan.file_identity

    def identity(path):
        if Path(path).name == "a.mp4":
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(plan, "file_identity", identity)
    code, out, err = run_cli("extract", tmp_path / "videos", "--data", tmp_path / "data", *SMALL)
    assert code == 1 and "a.mp4: cannot be read (Permission denied)" in err and "done b.mp4" in out


def test_a_full_disk_is_a_one_line_error(make_clip, tmp_path, run_cli, monkeypatch):
    make_clip("v.mp4", seconds=1.0)
    from wtal_pipe.video import flow

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "data" / "cache"))

    monkeypatch.setattr(flow, "reserve_disk", full)
    code, _, err = run_cli("extract", tmp_path / "v.mp4", "--data", tmp_path / "data", *SMALL)
    assert code == 2 and one_line_error(err, "No space left on device", "free disk space")


def test_checkpoints_that_are_not_state_dicts(tmp_path, run_cli, make_clip):
    make_clip("v.mp4", seconds=1.0)
    (tmp_path / "text.pt").write_text("not a checkpoint at all \xff")
    torch.save([1, 2], tmp_path / "list.pt")
    torch.save({"weights": "none"}, tmp_path / "dict.pt")
    for name in ("text.pt", "list.pt", "dict.pt"):
        code, _, err = run_cli(
            "extract", tmp_path / "v.mp4", "--data", tmp_path / "d", "--rgb-weights", tmp_path / name, "--device", "cpu"
        )
        assert code == 2 and one_line_error(err, name), err
        code, _, err = run_cli(
            "import", "checkpoint", tmp_path / name, "--method", "um", "--data", tmp_path, "--out", tmp_path / "r"
        )
        assert code == 2 and one_line_error(err, name), err


def test_negatives_on_missing_or_empty_features(planted, run_cli):
    np.save(planted / "features" / "train_0001.npy", np.zeros((0, 8), np.float32))
    code, _, err = run_cli("negatives", "--data", planted, "--from-features")
    assert code == 2 and one_line_error(err, "train_0001.npy", "non-empty")
    (planted / "features" / "train_0001.npy").unlink()
    code, _, err = run_cli("negatives", "--data", planted, "--from-features")
    assert code == 2 and one_line_error(err, "train_0001.npy", "missing")


@pytest.mark.slow
def test_localize_reports_a_short_clip_and_writes_the_others(planted, tmp_path, run_cli, make_clip):
    from wtal_pipe.training.train import TrainOptions, train

    write_planted_dataset(tmp_path / "d2048", num_classes=2, feature_dim=2048, n_train=2, n_test=1, rows=(20, 24))
    train(
        TrainOptions(
            "basnet",
            tmp_path / "d2048",
            tmp_path / "run",
            device="cpu",
            overrides={"iterations": 1, "hidden_dim": 8, "num_segments": 16},
        )
    )
    make_clip("clips/short.mp4", seconds=0.3)
    make_clip("clips/good.mp4", seconds=1.4)
    code, out, err = run_cli(
        "localize",
        tmp_path / "clips",
        "--run",
        tmp_path / "run",
        "--out",
        tmp_path / "d.json",
        "--device",
        "cpu",
        "--flow",
        "dis",
    )
    assert code == 1 and "short.mp4" in err and "fewer than one 16-frame feature row" in err
    assert list(json.loads((tmp_path / "d.json").read_text())["results"]) == ["good"]


# 13. messages keep their brackets ---------------------------------------------------------------------


def test_error_hints_keep_their_brackets(planted, tmp_path, run_cli):
    edit_annotations(planted, lambda db: db["train_0000"]["annotations"][0].update(segment=None))
    _, _, err = run_cli("negatives", "--data", planted)
    assert "(use [start_s, end_s])" in err
    (planted / "clicks.json").write_text("[")
    edit_annotations(planted, lambda db: db["train_0000"]["annotations"][0].update(segment=[1, 2]))
    _, _, err = run_cli("train", "--method", "backtal", "--data", planted, "--out", tmp_path / "r", *QUICK)
    assert '{"video_id": [seconds, ...]}' in err


# 14. workers go with their parent ----------------------------------------------------------------------


def _children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            child = int(stat.parent.name)
            found |= {child} | _children(child)
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find the worker processes")
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
@pytest.mark.slow
def test_flow_workers_exit_with_their_parent(make_clip, tmp_path, how):
    clip = make_clip("slow.mp4", seconds=6.0, fps=25.0, size=(160, 120))
    cmd = slow_extract_command(clip, tmp_path / "data", workers=2)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def command(pid: int) -> str:
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="ignore")
        except OSError:
            return ""

    deadline = time.time() + 120
    workers: set[int] = set()
    while time.time() < deadline and len(workers) < 2:
        time.sleep(0.1)
        workers = {p for p in _children(proc.pid) if "LokyProcess" in command(p)}
    assert len(workers) >= 2, "the flow workers never started"
    helpers = _children(proc.pid) - workers  # loky's and multiprocessing's resource trackers
    os.kill(proc.pid, how)
    proc.wait()

    def running(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    deadline = time.time() + 15
    while time.time() < deadline and any(running(p) for p in workers | helpers):
        time.sleep(0.2)
    assert not [p for p in workers | helpers if running(p)], f"processes left 15 s after the parent got {how!r}"
