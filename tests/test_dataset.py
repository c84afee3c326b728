"""DATA_DIR loading, sampling, clicks (real CSV format) and the BaS-Net/UM THUMOS14 importer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from wtal_pipe.data import sampling
from wtal_pipe.data.annotations import load_annotations
from wtal_pipe.data.clicks import simulate_clicks
from wtal_pipe.data.dataset import Dataset
from wtal_pipe.data.importers import import_bas_thumos, import_clicks, read_click_csv
from wtal_pipe.errors import DataError

from .planted import write_planted_dataset

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def planted(tmp_path):
    write_planted_dataset(tmp_path / "d", num_classes=3, feature_dim=16, n_train=6, n_test=3)
    return tmp_path / "d"


def test_dataset_reads_dims_and_classes_from_files(planted):
    train = Dataset(planted, "train")
    assert train.feature_dim == 16 and train.classes == ["action_0", "action_1", "action_2"]
    assert len(train.videos) == 6 and all(v.labels.sum() >= 1 for v in train.videos)
    assert train.videos[0].timing(10).seconds_per_row == pytest.approx(0.64)
    (planted / "classes.txt").write_text("action_2\naction_1\naction_0\nextra\n")
    reordered = Dataset(planted, "train")
    assert reordered.num_classes == 4 and reordered.classes[0] == "action_2"


def test_wrong_feature_dimension_names_the_file(planted):
    vid = next(iter(json.loads((planted / "annotations.json").read_text())["database"]))
    np.save(planted / "features" / f"{vid}.npy", np.zeros((50, 17), np.float32))
    with pytest.raises(DataError, match=rf"{vid}\.npy: feature dimension 17 differs from 16"):
        Dataset(planted, "train")


def test_unknown_label_and_missing_features(planted):
    (planted / "classes.txt").write_text("action_0\naction_1\n")
    with pytest.raises(DataError, match="annotations.json: video .*: unknown label 'action_2'"):
        Dataset(planted, "train")
    (planted / "classes.txt").unlink()
    victim = sorted((planted / "features").glob("train_*.npy"))[0]
    victim.unlink()
    with pytest.raises(DataError, match=rf"{victim.name}: features file missing \(run wtal extract"):
        Dataset(planted, "train")


def test_subset_names_are_configurable(planted):
    with pytest.raises(DataError, match="no videos in subset 'training'.*subsets present: test, train"):
        Dataset(planted, "training")


def test_random_perturb_draws_one_row_per_span_including_the_next_anchor():
    rng = np.random.default_rng(0)
    draws = np.stack([sampling.random_perturb(1000, 10, rng) for _ in range(2000)])
    for i in range(10):  # span i draws from [100 i, 100 (i + 1)], both ends included (official random_perturb)
        assert draws[:, i].min() == 100 * i and draws[:, i].max() == min(100 * (i + 1), 999)
    short = sampling.random_perturb(5, 12, rng)
    assert len(short) == 12 and short.min() >= 0 and short.max() <= 4 and np.all(np.diff(short) >= 0)
    np.testing.assert_array_equal(sampling.random_perturb(7, 7, rng), np.arange(7))


def test_test_time_sampling_modes():
    rows = np.arange(20, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    np.testing.assert_array_equal(sampling.uniform(7, 4), [0, 1, 3, 5])  # floor(i * 7 / 4)
    np.testing.assert_array_equal(sampling.inference_input(rows, "uniform", 8)[:, 0], np.floor(np.arange(8) * 20 / 8))
    assert sampling.inference_input(rows, "uniform", 50).shape == (50, 3)  # short videos repeat rows (BaS-Net)
    assert sampling.inference_input(rows, "uniform-if-longer", 50).shape == (20, 3)  # UM keeps short videos whole
    assert sampling.inference_input(rows, "uniform-if-longer", 10).shape == (10, 3)
    assert sampling.inference_input(rows, "whole", 10).shape == (20, 3)
    stretched = sampling.inference_input(rows, "interpolate", 40)[:, 0]  # half-pixel aligned linear (BackTAL)
    np.testing.assert_allclose(stretched[:4], [0.0, 0.25, 0.75, 1.25])
    np.testing.assert_allclose(stretched[-1], 19.0)


def test_clicks_follow_the_sampling():
    # interpolated rows: BackTAL's min(n - 1, int(t / duration * n)); sampled rows: the source row's clicks
    mask = sampling.click_mask(
        np.array([0.0, 5.0, 9.99, 10.0]),
        length=16,
        seconds_per_row=0.64,
        duration=10.0,
        source_rows=None,
        num_segments=750,
    )
    np.testing.assert_array_equal(np.flatnonzero(mask), [0, 375, 749])
    source = np.array([0, 0, 1, 2, 3, 3])
    mask = sampling.click_mask(  # 0.7 s lies in row 1
        np.array([0.7]), length=4, seconds_per_row=0.64, duration=2.56, source_rows=source, num_segments=6
    )
    np.testing.assert_array_equal(mask, [0, 0, 1, 0, 0, 0])


def test_simulated_clicks_one_per_background_run(planted):
    video = Dataset(planted, "train").videos[0]
    clicks = simulate_clicks(video.segments, video.duration, video.frame_rate, np.random.default_rng(0))
    fg = np.zeros(round(video.duration * video.frame_rate), bool)
    for s, e, _ in video.segments:
        fg[int(np.floor(s * video.frame_rate)) : int(np.ceil(e * video.frame_rate))] = True
    n_runs = int(np.sum(np.diff(np.concatenate([[1], fg.astype(int)])) == -1))
    assert len(clicks) == n_runs and not fg[(clicks * video.frame_rate).round().astype(int)].any()


def test_real_click_csv_parses():
    clicks = read_click_csv(FIXTURES / "thumos14_clicks_A1.csv")  # UTF-8 BOM header
    assert len(clicks) == 200
    assert clicks["video_validation_0000051"] == [21.5, 79.0, 126.5, 161.5]
    assert sum(len(v) for v in clicks.values()) == 2264  # grep -c background_background
    gt = load_annotations(FIXTURES / "thumos14_gt.json")
    assert set(clicks) == {vid for vid, v in gt.items() if v["subset"] == "train"}


def test_clicks_reach_the_dataset(planted, tmp_path):
    csv = tmp_path / "c.csv"
    vid = next(v for v in json.loads((planted / "annotations.json").read_text())["database"] if v.startswith("train"))
    csv.write_text(
        "\ufeffURLID,URL,TagID,Tag,Start,End,Time,State\n"
        f"{vid},{vid}.mp4,20,background_background,1.5,1.5,1,1\n"
        f"{vid},{vid}.mp4,20,background_background,0.2,0.2,1,1\n"
    )
    assert import_clicks(csv, planted) == 1
    videos = {v.vid: v for v in Dataset(planted, "train").videos}
    np.testing.assert_array_equal(videos[vid].clicks, [0.2, 1.5])  # seconds, mapped to rows by the sampling


def test_bad_click_csv(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("video,time\nx,1\n")
    with pytest.raises(DataError, match="bad.csv: header .* lacks URLID and Start"):
        read_click_csv(path)


def test_import_bas_thumos_layout(tmp_path):
    gt = load_annotations(FIXTURES / "thumos14_gt.json")
    keep = [vid for vid in gt if gt[vid]["subset"] == "train"][:2] + [vid for vid in gt if gt[vid]["subset"] == "test"][
        :2
    ]
    source = tmp_path / "bas"
    (source / "gt.json").parent.mkdir(parents=True)
    shutil.copy(FIXTURES / "thumos14_gt.json", source / "gt.json")
    small = {
        "database": {vid: json.loads((FIXTURES / "thumos14_gt.json").read_text())["database"][vid] for vid in keep}
    }
    (source / "gt.json").write_text(json.dumps(small))
    for vid in keep:
        subset = gt[vid]["subset"]
        for stream, value in (("rgb", 1.0), ("flow", 2.0)):
            folder = source / "features" / subset / stream
            folder.mkdir(parents=True, exist_ok=True)
            np.save(folder / f"{vid}.npy", np.full((30, 1024), value, np.float32))
    count = import_bas_thumos(source, tmp_path / "data", durations=FIXTURES / "thumos14_gt_fps_duration.json")
    assert count == 4
    rows = np.load(tmp_path / "data" / "features" / f"{keep[0]}.npy")
    assert rows.shape == (30, 2048) and rows[0, 0] == 1.0 and rows[0, 1024] == 2.0  # RGB first
    test = Dataset(tmp_path / "data", "test")
    assert test.feature_dim == 2048 and all(v.duration > 30 for v in test.videos)  # real durations imported
