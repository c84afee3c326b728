"""Public feature releases: the W-TALC layout (object arrays read without running anything in their pickles),
per-video ``.npy`` files with an ActivityNet annotation file, and the feature check cache that spares a large
dataset from being read in full before every run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from wtal_pipe.data import dataset as dataset_module
from wtal_pipe.data.dataset import Dataset
from wtal_pipe.data.safe_npy import load_npy
from wtal_pipe.errors import DataError

from .test_bad_input import one_line_error

CLASSES = [b"BaseballPitch", b"Diving", b"Shotput"]
DIM = 8


def _objects(values: list) -> np.ndarray:
    """A 1-D object array, as the W-TALC files are (one entry per video, whatever each holds)."""
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _wtalc_release(folder: Path, videos: int = 5, name: str = "Thumos14reduced") -> dict:
    """A W-TALC release in its exact layout, strings as Python 2 bytes; returns what it holds."""
    rng = np.random.default_rng(0)
    notes = folder / f"{name}-Annotations"
    notes.mkdir(parents=True)
    names = [f"video_{'validation' if i < 3 else 'test'}_{i:07d}".encode() for i in range(videos)]
    features = [rng.normal(size=(20 + 3 * i, DIM)).astype(np.float32) for i in range(videos)]
    segments = [[[1.0 + i, 4.0 + i], [9.0, 11.5]] for i in range(videos)]
    seg_labels = [[CLASSES[i % 3], CLASSES[(i + 1) % 3]] for i in range(videos)]
    np.save(folder / f"{name}-I3D-JOINTFeatures.npy", _objects(features), allow_pickle=True)
    np.save(notes / "videoname.npy", np.array(names))
    np.save(notes / "subset.npy", np.array([n.split(b"_")[1] for n in names]))
    np.save(notes / "classlist.npy", np.array(CLASSES))
    np.save(notes / "duration.npy", np.array([[20.0 + i] for i in range(videos)]))
    np.save(notes / "segments.npy", _objects(segments), allow_pickle=True)
    np.save(notes / "labels.npy", _objects(seg_labels), allow_pickle=True)
    np.save(notes / "labels_all.npy", _objects([sorted(set(labels)) for labels in seg_labels]), allow_pickle=True)
    return {"names": [n.decode() for n in names], "features": features, "segments": segments, "labels": seg_labels}


def test_a_wtalc_release_imports_with_its_subsets_segments_and_rows(tmp_path, run_cli):
    release = _wtalc_release(tmp_path / "release")
    data = tmp_path / "data"
    code, out, err = run_cli("import", "wtalc", tmp_path / "release", "--data", data)
    assert code == 0, err
    assert "imported 5 videos" in out and "2 test, 3 validation" in out and "3 classes" in out
    database = json.loads((data / "annotations.json").read_text())["database"]
    first = database["video_validation_0000000"]
    assert first["subset"] == "validation" and first["duration"] == 20.0
    assert first["annotations"] == [
        {"label": "BaseballPitch", "segment": [1.0, 4.0]},
        {"label": "Diving", "segment": [9.0, 11.5]},
    ]
    assert (data / "classes.txt").read_text().split() == [c.decode() for c in CLASSES]
    for vid, rows in zip(release["names"], release["features"], strict=True):
        np.testing.assert_array_equal(np.load(data / "features" / f"{vid}.npy"), rows)
    video = Dataset(data, "test").videos[0]
    assert video.timing(20).seconds_per_row == pytest.approx(16 / 25)  # I3D rows: 16 frames at 25 fps


class _RunsCode:
    """What a crafted pickle does: it names a callable (here one that writes a file) to be called on load."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickle_that_asks_to_run_code_is_refused_and_nothing_runs(tmp_path, run_cli):
    _wtalc_release(tmp_path / "release")
    marker = tmp_path / "ran"
    hostile = tmp_path / "release" / "Thumos14reduced-Annotations" / "segments.npy"
    np.save(hostile, _objects([_RunsCode(marker)] * 5), allow_pickle=True)
    data = tmp_path / "data"
    code, _, err = run_cli("import", "wtalc", tmp_path / "release", "--data", data)
    assert code == 2 and one_line_error(err, "segments.npy: refused", "pathlib")
    assert not marker.exists() and not data.exists()
    with pytest.raises(DataError, match="not plain arrays"):
        np.save(hostile, _objects([{"a": 1}]), allow_pickle=True)  # a dict is not a release's content
        load_npy(hostile)


def test_release_files_that_disagree_are_refused_before_anything_is_written(tmp_path, run_cli):
    _wtalc_release(tmp_path / "release")
    notes = tmp_path / "release" / "Thumos14reduced-Annotations"
    np.save(notes / "subset.npy", np.array([b"validation"] * 4))
    code, _, err = run_cli("import", "wtalc", tmp_path / "release", "--data", tmp_path / "data")
    assert code == 2 and one_line_error(err, "subset.npy: holds 4 entries where videoname.npy holds 5")
    assert not (tmp_path / "data").exists()
    (notes / "subset.npy").unlink()
    code, _, err = run_cli("import", "wtalc", tmp_path / "release", "--data", tmp_path / "data")
    assert code == 2 and one_line_error(err, "subset.npy: missing from the release")


def test_two_releases_in_one_folder_need_a_name(tmp_path, run_cli):
    _wtalc_release(tmp_path / "release")
    _wtalc_release(tmp_path / "release", videos=3, name="ActivityNet1.2")
    code, _, err = run_cli("import", "wtalc", tmp_path / "release", "--data", tmp_path / "data")
    assert code == 2 and one_line_error(err, "2 feature files", "--name")
    code, out, err = run_cli(
        "import", "wtalc", tmp_path / "release", "--data", tmp_path / "data", "--name", "ActivityNet1.2"
    )
    assert code == 0 and "imported 3 videos" in out, err


def test_activitynet_features_import_the_labelled_videos_and_name_the_rest(tmp_path, run_cli):
    """Files named v_<id>.npy or <id>.npy; an annotated video without features (gone from YouTube) and a file
    without an entry are named, not fatal; the withheld-label test subset is left out."""
    source = tmp_path / "release"
    source.mkdir()
    rng = np.random.default_rng(1)
    for stem in ("v_abc", "def", "v_stray"):
        np.save(source / f"{stem}.npy", rng.normal(size=(100, DIM)).astype(np.float32))
    database = {
        "abc": {"subset": "training", "duration": 80.0, "annotations": [{"label": "Surfing", "segment": [3, 30]}]},
        "def": {"subset": "validation", "duration": 61.5, "annotations": [{"label": "Archery", "segment": [0, 9]}]},
        "gone": {"subset": "validation", "duration": 20.0, "annotations": [{"label": "Archery", "segment": [1, 2]}]},
        "hidden": {"subset": "testing", "duration": 40.0, "annotations": []},
    }
    (tmp_path / "anet.json").write_text(json.dumps({"version": "1.3", "database": database}))
    data = tmp_path / "data"
    code, out, err = run_cli(
        "import", "features", source, "--data", data, "--whole-video", "--annotations", tmp_path / "anet.json"
    )
    assert code == 0, err
    assert "imported 2 videos" in out and "1 training, 1 validation" in out and "2 classes" in out
    assert "1 annotated videos have no features in the release: gone" in out
    assert "1 feature files have no annotation entry, not imported: v_stray.npy" in out
    assert "1 annotation entries have no labels" in out
    assert sorted(p.name for p in (data / "features").glob("*.npy")) == ["abc.npy", "def.npy"]
    assert sorted(json.loads((data / "annotations.json").read_text())["database"]) == ["abc", "def"]
    video = Dataset(data, "validation").videos[0]
    assert video.timing(100).seconds_per_row == pytest.approx(0.615)  # whole-video rows: duration / T
    code, _, err = run_cli(
        "import", "features", source, "--data", data, "--whole-video", "--annotations", tmp_path / "anet.json"
    )
    assert code == 2 and one_line_error(err, "already holds a dataset", "--force")


def test_a_checked_feature_file_is_not_read_again_until_it_changes(tmp_path, monkeypatch):
    from .planted import write_planted_dataset

    data = tmp_path / "data"
    write_planted_dataset(data, feature_dim=DIM, n_train=4, n_test=2)
    old = 1_600_000_000
    for path in (data / "features").glob("*.npy"):
        os.utime(path, (old, old))  # older than the racy window: safe to record
    reads: list[Path] = []
    real = dataset_module.read_feature_rows

    def counted(path, *args):
        reads.append(Path(path))
        return real(path, *args)

    monkeypatch.setattr(dataset_module, "read_feature_rows", counted)
    Dataset(data, "train")
    assert len(reads) == 4
    reads.clear()
    assert Dataset(data, "train").feature_dim == DIM and reads == []
    changed = Dataset(data, "train").videos[0].features
    rows = np.load(changed)
    rows[3, 0] = np.nan
    np.save(changed, rows)  # same size, a new modification time
    with pytest.raises(DataError, match="row 3 holds NaN"):
        Dataset(data, "train")
    assert [p.name for p in reads] == [changed.name]
