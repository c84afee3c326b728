"""Your own videos with video-level labels only: labels-only annotation files, the CSV and class-folder
builders (and what they refuse), feature timing declared rather than guessed, testing without ground truth,
and the whole path from class folders to a localized clip."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from wtal_pipe.data.annotations import load_annotations
from wtal_pipe.data.dataset import Dataset
from wtal_pipe.data.timing import FeatureTiming, VideoTiming
from wtal_pipe.inference.localize import VideoScores, localize
from wtal_pipe.methods import get_method
from wtal_pipe.tools.shaped import narrowed

from .planted import write_planted_dataset
from .test_bad_input import one_line_error

QUICK = ["--lr", "1e-3", "--num-segments", "32", "--device", "cpu"]


def _database(data: Path) -> dict:
    return json.loads((data / "annotations.json").read_text())["database"]


def _labels_only(database: dict, subset: str) -> dict:
    """The database with the segments of ``subset`` turned into video-level labels (both spellings)."""
    out = {}
    for i, (vid, entry) in enumerate(database.items()):
        if entry["subset"] != subset:
            out[vid] = entry
        elif i % 2:
            out[vid] = {"subset": subset, "labels": sorted({a["label"] for a in entry["annotations"]})}
        else:
            out[vid] = {"subset": subset, "annotations": [{"label": a["label"]} for a in entry["annotations"]]}
    return out


def test_labels_without_segments_load_and_train(tmp_path):
    data = tmp_path / "data"
    write_planted_dataset(data, num_classes=3, feature_dim=16, n_train=6, n_test=2, rows=(30, 50))
    database = _labels_only(_database(data), "train")
    (data / "annotations.json").write_text(json.dumps({"database": database}))
    loaded = load_annotations(data / "annotations.json")
    vid = next(v for v, e in database.items() if e["subset"] == "train" and "annotations" in e)
    assert loaded[vid]["annotations"] == [] and loaded[vid]["labels"] == sorted(
        {a["label"] for a in database[vid]["annotations"]}
    )
    train = Dataset(data, "train")
    assert all(v.segments == [] and v.labels.sum() >= 1 for v in train.videos)
    assert all(v.segments for v in Dataset(data, "test").videos)  # the mixed file: test keeps its segments


def test_labels_only_training_writes_the_same_checkpoint_as_with_segments(tmp_path, run_cli):
    import torch

    data = tmp_path / "data"
    write_planted_dataset(data, num_classes=3, feature_dim=16, n_train=6, n_test=2, rows=(30, 50))
    states = {}
    for name, database in (("segments", _database(data)), ("labels", _labels_only(_database(data), "train"))):
        (data / "annotations.json").write_text(json.dumps({"database": database}))
        for method in ("basnet", "um", "cmcs"):
            width = narrowed(get_method(method), 16)
            extra = ["--set", f"hidden_dim={width['hidden_dim']}"] if width else ["--batch-size", "1"]
            out = tmp_path / f"{name}_{method}"
            code, _, err = run_cli(
                "train", "--method", method, "--data", data, "--out", out, "--iters", "3", *QUICK, *extra
            )
            assert code == 0, err
            states[name, method] = torch.load(out / "checkpoint.pt", weights_only=True)["state_dict"]
    for method in ("basnet", "um", "cmcs"):
        a, b = states["segments", method], states["labels", method]
        assert all(torch.equal(a[k], b[k]) for k in a), method


def _trained_run(tmp_path, run_cli, data: Path) -> Path:
    run = tmp_path / "run"
    code, _, err = run_cli(
        "train", "--method", "um", "--data", data, "--out", run, "--iters", "30", "--set", "hidden_dim=16", *QUICK
    )
    assert code == 0, err
    return run


def test_testing_without_ground_truth_writes_detections_and_says_so(tmp_path, run_cli):
    data = tmp_path / "data"
    write_planted_dataset(data, num_classes=3, feature_dim=16, n_train=6, n_test=4, rows=(30, 50))
    run = _trained_run(tmp_path, run_cli, data)
    database = _database(data)
    (data / "annotations.json").write_text(json.dumps({"database": _labels_only(database, "test")}))
    code, out, err = run_cli("test", "--run", run, "--data", data, "--out", tmp_path / "d.json")
    assert code == 0 and "no ground truth for subset test (labels only, no segments): mAP not computed" in out
    assert len(json.loads((tmp_path / "d.json").read_text())["results"]) == 4
    mixed = dict(database)
    first_test = next(v for v, e in database.items() if e["subset"] == "test")
    mixed[first_test] = {"subset": "test", "labels": ["action_0"]}
    (data / "annotations.json").write_text(json.dumps({"database": mixed}))
    code, _, err = run_cli("test", "--run", run, "--data", data, "--out", tmp_path / "d.json")
    assert code == 2 and one_line_error(
        err, f"1 video(s) have labels but no segments ({first_test})", "--skip-unannotated"
    )
    code, out, _ = run_cli("test", "--run", run, "--data", data, "--out", tmp_path / "d.json", "--skip-unannotated")
    assert code == 0 and "left out of the mAP: 1 video(s)" in out and "avg" in out


# --- builders ---------------------------------------------------------------------------------------------


def test_csv_with_bom_several_rows_subsets_and_segments(tmp_path, run_cli):
    rows = (
        "video,label,subset,start,end\nv1,Diving,train,,\nv1,CliffDiving,train,,\nv2,Diving,test,1.5,4\n"
        "v3,Jump,,,\nv4,Jump,,,\n"
    )
    (tmp_path / "labels.csv").write_bytes(b"\xef\xbb\xbf" + rows.encode())
    code, out, err = run_cli(
        "import", "labels", tmp_path / "labels.csv", "--data", tmp_path / "data", "--test-fraction", "0.5"
    )
    assert code == 0, err
    assert "4 videos (1 test, 3 train), 3 classes" in out or "4 videos (2 test, 2 train), 3 classes" in out
    database = load_annotations(tmp_path / "data" / "annotations.json")
    assert database["v1"]["labels"] == ["CliffDiving", "Diving"] and database["v1"]["annotations"] == []
    assert database["v2"]["annotations"] == [{"label": "Diving", "segment": [1.5, 4.0]}]
    assert sorted(database[v]["subset"] for v in ("v3", "v4")) == ["test", "train"]  # stratified by label


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("video,label\nv1,\n", "labels.csv:2: video v1: an empty label"),
        ("video,label,subset\nv1,A,train\nv1,B,test\n", "labels.csv:3: video v1 is in subset 'train' and in 'test'"),
        ("video,label,start,end\nv1,A,5,2\n", "labels.csv:2: video v1: segment [5.0, 2.0] is not 0 <= start <= end"),
        ("video,label,start,end\nv1,A,-1,2\n", "is not 0 <= start <= end"),
        ("video,label\n../evil,A\n", "labels.csv:2: video name '../evil' cannot be a file name"),
        ("name,class\nv1,A\n", "lacks video and label"),
        ("video,label\n", "no rows"),
    ],
)
def test_a_bad_csv_is_refused_in_one_line_and_writes_nothing(tmp_path, run_cli, rows, message):
    (tmp_path / "labels.csv").write_text(rows)
    data = tmp_path / "data"
    data.mkdir()
    code, _, err = run_cli("import", "labels", tmp_path / "labels.csv", "--data", data)
    assert code == 2 and one_line_error(err, message) and not list(data.iterdir())


def test_an_existing_annotation_file_is_replaced_only_with_force(tmp_path, run_cli):
    (tmp_path / "labels.csv").write_text("video,label\nv1,A\n")
    data = tmp_path / "data"
    data.mkdir()
    (data / "annotations.json").write_text("{}")
    code, _, err = run_cli("import", "labels", tmp_path / "labels.csv", "--data", data)
    assert (
        code == 2
        and one_line_error(err, "annotations.json: already exists")
        and (data / "annotations.json").read_text() == "{}"
    )
    assert run_cli("import", "labels", tmp_path / "labels.csv", "--data", data, "--force")[0] == 0


def _class_folders(root: Path, make_clip, per_class: int = 4) -> Path:
    from wtal_pipe.tools.synthetic import ACTION_STYLES, PlantedAction

    videos = root / "videos"
    for c, style in enumerate(ACTION_STYLES[:2]):
        for i in range(per_class):
            action = PlantedAction(style, 0.6 + 0.3 * i, 2.6 + 0.3 * i)
            clip = make_clip(f"src_{c}_{i}.mp4", seconds=4.0, size=(96, 64), actions=[action], seed=10 * c + i)
            (videos / style.name).mkdir(parents=True, exist_ok=True)
            shutil.move(clip, videos / style.name / f"{style.name}_{i}.mp4")
    return videos


def test_class_folders_become_a_seeded_stratified_split(make_clip, tmp_path, run_cli):
    videos = _class_folders(tmp_path, make_clip)
    code, out, _ = run_cli(
        "import", "folders", videos, "--data", tmp_path / "a", "--test-fraction", "0.25", "--seed", "3"
    )
    assert code == 0 and "8 videos (2 test, 6 train), 2 classes" in out
    first = load_annotations(tmp_path / "a" / "annotations.json")
    assert (
        run_cli("import", "folders", videos, "--data", tmp_path / "b", "--test-fraction", "0.25", "--seed", "3")[0] == 0
    )
    assert load_annotations(tmp_path / "b" / "annotations.json") == first  # the same split every time
    for style in {label for e in first.values() for label in e["labels"]}:
        assert sum(e["subset"] == "test" and e["labels"] == [style] for e in first.values()) == 1
    first_class, second_class = sorted(p for p in videos.iterdir())
    shared = sorted(first_class.iterdir())[0]
    shutil.copy(shared, second_class / shared.name)  # the same file in two class folders: both labels
    code, _, err = run_cli("import", "folders", videos, "--data", tmp_path / "c")
    assert code == 0, err
    labels = load_annotations(tmp_path / "c" / "annotations.json")[shared.stem]["labels"]
    assert labels == [first_class.name, second_class.name]


def test_two_different_files_of_one_name_are_refused(make_clip, tmp_path, run_cli):
    videos = _class_folders(tmp_path, make_clip, per_class=1)
    classes = sorted(p for p in videos.iterdir())
    make_clip("other.mp4", seconds=2.0, seed=99)
    shutil.move(tmp_path / "other.mp4", classes[1] / f"{classes[0].name}_0.mp4")
    code, _, err = run_cli("import", "folders", videos, "--data", tmp_path / "data")
    assert code == 2 and one_line_error(err, "another file is named", "rename one") and not (tmp_path / "data").exists()


# --- declared timing ---------------------------------------------------------------------------------------


def _bare_features(tmp_path, rows_per_video=60) -> tuple[Path, dict]:
    """Feature files with no record beside them; class 0 planted at rows 20-29 of each."""
    source = tmp_path / "elsewhere"
    source.mkdir()
    rng = np.random.default_rng(0)
    prototype = rng.normal(0, 1, 16) * 2
    for i in range(6):
        x = rng.normal(0, 1, (rows_per_video, 16)).astype(np.float32)
        x[20:30] += prototype.astype(np.float32)
        np.save(source / f"v{i}.npy", x)
    return source, {"prototype": prototype}


def test_features_without_timing_are_refused_and_declared_timing_places_rows(tmp_path, run_cli):
    source, _ = _bare_features(tmp_path)
    data = tmp_path / "data"
    (data / "features").mkdir(parents=True)
    for p in source.glob("*.npy"):
        shutil.copy(p, data / "features" / p.name)  # copied without their record, no declaration
    stride_seconds = 8 / 30
    database = {
        f"v{i}": {
            "subset": "train" if i < 4 else "test",
            "annotations": [{"label": "a", "segment": [20 * stride_seconds, 30 * stride_seconds]}],
        }
        for i in range(6)
    }
    (data / "annotations.json").write_text(json.dumps({"database": database}))
    code, _, err = run_cli("train", "--method", "um", "--data", data, "--out", tmp_path / "r", "--iters", "2", *QUICK)
    assert code == 2 and one_line_error(err, "v0.npy: no record of how its rows are timed", "wtal import features")
    shutil.rmtree(data / "features")
    code, out, err = run_cli(
        "import", "features", source, "--data", data, "--fps", "30", "--frames-per-row", "16", "--stride", "8"
    )
    assert code == 0 and "imported 6 videos" in out, err
    assert json.loads((data / "features" / "timing.json").read_text()) == {
        "fps": 30.0,
        "frames_per_row": 16,
        "stride": 8,
    }
    video = Dataset(data, "test").videos[0]
    timing = video.timing(60)
    assert timing.seconds_per_row == pytest.approx(stride_seconds) and video.duration == pytest.approx(
        (59 * 8 + 16) / 30
    )


def _peak_scores(rows: int, first: int, last: int) -> VideoScores:
    cas = np.zeros((rows, 1), np.float32)
    cas[first : last + 1] = 1.0
    return VideoScores(np.array([0.9], np.float32), cas, None)


@pytest.mark.parametrize("method", ["um", "backtal", "cmcs"])
def test_detections_land_at_the_planted_seconds_within_a_row(method):
    """Stride-8 rows at 30 fps (overlapping 16-frame rows), and 100 whole-video rows of a 250 s video."""
    settings = get_method(method).localization_defaults.replace(
        test_sampling="whole",
        class_threshold=0.5,
        mask_dilation=0,  # CMCS widens its masks on purpose
    )
    stride = FeatureTiming(30.0, 16, 8)
    timing = VideoTiming.of(60, stride, (59 * 8 + 16) / 30, 30.0)
    found = max(localize(_peak_scores(60, 20, 29), settings, timing), key=lambda d: d[1])
    step = 8 / 30
    assert abs(found[2] - 20 * step) <= step and abs(found[3] - 30 * step) <= step
    whole = VideoTiming.of(100, FeatureTiming(), 250.0, 25.0)
    found = max(localize(_peak_scores(100, 40, 59), settings, whole), key=lambda d: d[1])
    assert abs(found[2] - 100.0) <= 2.5 and abs(found[3] - 150.0) <= 2.5  # 2.5 s per row


def test_whole_video_rows_need_durations(tmp_path, run_cli):
    source, _ = _bare_features(tmp_path)
    data = tmp_path / "data"
    assert run_cli("import", "features", source, "--data", data, "--whole-video")[0] == 0
    database = {f"v{i}": {"subset": "train", "labels": ["a"]} for i in range(6)}
    (data / "annotations.json").write_text(json.dumps({"database": database}))
    code, _, err = run_cli("train", "--method", "um", "--data", data, "--out", tmp_path / "r", "--iters", "2", *QUICK)
    assert code == 2 and one_line_error(err, "video v0 has whole-video feature rows and no duration")
    for i in range(6):
        database[f"v{i}"]["duration"] = 150.0
    (data / "annotations.json").write_text(json.dumps({"database": database}))
    video = Dataset(data, "train").videos[0]
    assert video.timing(60).seconds_per_row == pytest.approx(2.5)
    code, _, err = run_cli("import", "features", source, "--data", data, "--fps", "25", "--frames-per-row", "16")
    assert code == 2 and one_line_error(err, "timing.json: declares another timing", "--force")


def test_a_refused_feature_import_writes_nothing(tmp_path, run_cli):
    source, _ = _bare_features(tmp_path)
    np.save(source / "v5.npy", np.full((4, 16), np.nan, np.float32))
    code, _, err = run_cli("import", "features", source, "--data", tmp_path / "data", "--whole-video")
    assert code == 2 and one_line_error(err, "v5.npy: row 0 holds NaN") and not (tmp_path / "data").exists()
    code, _, err = run_cli("import", "features", source, "--data", tmp_path / "data", "--fps", "25")
    assert code == 2 and one_line_error(err, "--fps and --frames-per-row, or --whole-video")


# --- the whole path ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_class_folders_to_detections_for_every_method(make_clip, tmp_path, run_cli):
    """README, "Your own videos, labels only": import folders -> extract -> train (each method) -> test
    (no ground truth) -> localize a clip, no file written by hand; then segments for the test videos give
    an mAP."""
    videos = _class_folders(tmp_path, make_clip, per_class=4)
    data = tmp_path / "data"
    assert run_cli("import", "folders", videos, "--data", data, "--test-fraction", "0.25")[0] == 0
    small = ["--short-side", "64", "--crop", "64", "--flow", "dis", "--workers", "1", "--device", "cpu"]
    assert run_cli("extract", videos, "--data", data, *small)[0] == 0
    test_clip = next(videos.rglob("*.mp4"))
    for method in ("basnet", "um", "cmcs", "backtal"):
        run = tmp_path / f"run_{method}"
        width = narrowed(get_method(method), 32)
        extra = ["--set", f"hidden_dim={width['hidden_dim']}"] if width else ["--batch-size", "1"]
        clicks = ["--simulate-clicks"] if method == "backtal" else []
        code, _, err = run_cli(
            "train",
            "--method",
            method,
            "--data",
            data,
            "--out",
            run,
            "--iters",
            "20",
            "--lr",
            "1e-3",
            "--num-segments",
            "16",
            "--device",
            "cpu",
            *extra,
            *clicks,
        )
        assert code == 0, (method, err)
        code, out, err = run_cli("test", "--run", run, "--data", data, "--out", tmp_path / f"{method}.json")
        assert code == 0 and "mAP not computed" in out, (method, err)
        assert len(json.loads((tmp_path / f"{method}.json").read_text())["results"]) == 2
        code, out, err = run_cli(
            "localize",
            test_clip,
            "--run",
            run,
            "--out",
            tmp_path / f"{method}_clip.json",
            "--device",
            "cpu",
            "--workers",
            "1",
        )
        assert code == 0 and "detections" in out, (method, err)
    database = _database(data)
    for entry in database.values():
        if entry["subset"] == "test":
            entry["annotations"] = [{"label": entry["labels"][0], "segment": [0.6, 3.0]}]
    (data / "annotations.json").write_text(json.dumps({"database": database}))
    code, out, _ = run_cli("test", "--run", tmp_path / "run_um", "--data", data, "--out", tmp_path / "um.json")
    assert code == 0 and "avg" in out and "mAP not computed" not in out
