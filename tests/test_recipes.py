"""Extraction recipes (strided rows, ten crops, fixed-length rows) and ``wtal features compare``."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from wtal_pipe.data.compare import compare_folders
from wtal_pipe.data.timing import FeatureTiming, VideoTiming, declared_timing
from wtal_pipe.features.config import ExtractionConfig, FeatureConfig
from wtal_pipe.features.extract import ExtractJob, extract_all
from wtal_pipe.features.recipes import RECIPES, recipes_markdown, resolve
from wtal_pipe.features.two_stream import I3DPair, crop_views, features_from_arrays, pooled_rows
from wtal_pipe.inference.localize import VideoScores, localize
from wtal_pipe.methods.settings import LocalizationSettings
from wtal_pipe.tools.synthetic import ACTION_STYLES, PlantedAction, render_frames, write_video

SMALL = ["--short-side", "64", "--crop", "64", "--flow", "dis", "--workers", "1", "--device", "cpu"]


def test_every_recipe_resolves_and_flags_override_it():
    for name, recipe in RECIPES.items():
        extraction = resolve(name)
        assert extraction.recipe == name and all(v.source for v in recipe.values.values())
    cmcs = resolve("cmcs-actionformer-thumos14", preset="dis", fps=None)  # None: the flag was not given
    assert (cmcs.decode.fps, cmcs.decode.resize, cmcs.decode.crop) == (30.0, (340, 256), None)
    assert (cmcs.features.stride, cmcs.features.crops, cmcs.flow.preset) == (4, "ten", "dis")
    assert cmcs.seconds_per_row == pytest.approx(4 / 30)
    default = resolve(None)
    assert default.features.layout() == {} and default.decode.identity() == {
        "fps": 25.0,
        "short_side": 256,
        "crop": 224,
    }
    assert "[16:240, 58:282]" in recipes_markdown() and "unverified" in recipes_markdown()


def test_ten_crops_are_the_official_boxes_in_the_official_order():
    """Finspire13/pytorch-i3d-feature-extraction's oversample_data on 340x256 frames: the four corners and the
    centre [16:240, 58:282], then the same five mirrored."""
    boxes = [(0, 0), (0, 116), (16, 58), (32, 0), (32, 116)]
    assert crop_views(256, 340, "ten") == [(t, left, 224, m) for m in (False, True) for t, left in boxes]
    assert crop_views(256, 340, "center") == [(16, 58, 224, False)]
    assert crop_views(64, 64, "center") == [(0, 0, 64, False)]  # frames no larger than 224: whole


class _Probe:
    """Stands in for the I3D pair: each row is the window's pixels at a few fixed places (so a row tells which
    frames and which crop it saw)."""

    def __call__(self, rgb: np.ndarray, flow: np.ndarray) -> np.ndarray:
        out = np.zeros((rgb.shape[0], 2048), np.float32)
        picked = rgb[:, :, ::56, ::56, :].astype(np.float32).reshape(rgb.shape[0], -1)
        out[:, : picked.shape[1]] = picked
        flow_picked = flow[:, :, ::56, ::56, :].astype(np.float32).reshape(flow.shape[0], -1)
        out[:, 1024 : 1024 + flow_picked.shape[1]] = flow_picked
        return out


def test_strided_ten_crop_rows_are_the_mean_of_the_ten_views_of_each_window():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (40, 256, 340, 3), dtype=np.uint8)
    flows = rng.integers(0, 256, (40, 256, 340, 2), dtype=np.uint8)
    config = FeatureConfig(stride=4, crops="ten", batch_size=3)
    rows = features_from_arrays(frames, flows, _Probe(), config=config)
    assert rows.shape == ((40 - 16) // 4 + 1, 2048)
    probe = _Probe()
    for k in (0, 3, 6):
        window = slice(4 * k, 4 * k + 16)
        views = []
        for top, left in [(0, 0), (0, 116), (16, 58), (32, 0), (32, 116)]:
            rgb = frames[None, window, top : top + 224, left : left + 224]
            flow = flows[None, window, top : top + 224, left : left + 224]
            views += [probe(rgb, flow), probe(rgb[:, :, :, ::-1], flow[:, :, :, ::-1])]  # flipped: x not negated
        np.testing.assert_allclose(rows[k], np.mean(views, axis=0)[0], rtol=1e-6)


def _bsn_pool(data: np.ndarray, fps: float, count: int = 100) -> np.ndarray:
    """BSN's poolData (mean of 3 samples per bin, in seconds), transcribed for this test."""
    step = 16 / fps
    centres = step / 2 + step * np.arange(len(data))
    seconds = len(data) * 16 / fps
    out = np.zeros((count, data.shape[1]))
    for i in range(count):
        low, high = max(centres[0] + 1e-4, i / count * seconds), min(centres[-1] - 1e-4, (i + 1) / count * seconds)
        if high < centres[0] or low > centres[-1]:
            continue
        samples = low + (high - low) / 2 * np.arange(3)
        out[i] = np.mean([[np.interp(s, centres, data[:, d]) for d in range(data.shape[1])] for s in samples], 0)
    return out


@pytest.mark.parametrize("n", [2, 7, 150, 333])
def test_fixed_length_rows_match_bsn_pooling(n):
    data = np.random.default_rng(n).normal(size=(n, 6))
    np.testing.assert_allclose(
        pooled_rows(data, 100, chunk=16, step=16, fps=25.0), _bsn_pool(data, fps=25.0), atol=1e-5
    )
    assert (pooled_rows(data[:1], 100, chunk=16, step=16, fps=25.0) == data[0].astype(np.float32)).all()


def test_overlapping_rows_localize_where_their_windows_are_centred():
    """Stride-4 rows of 16 frames at 30 fps: row k sees frames 4k..4k+15, centred at (4k + 8) / 30 s. An action
    at 2-4 s lit on exactly the rows centred inside it is found within one row's step of its true ends (without
    the half-window offset it would start 0.2 s early)."""
    timing = VideoTiming.of(42, FeatureTiming(30.0, 16, 4), duration=6.0, frame_rate=30.0)
    assert timing.offset == pytest.approx(0.2) and timing.seconds_per_row == pytest.approx(4 / 30)
    centres = (4 * np.arange(42) + 8) / 30
    cas = np.zeros((42, 1), np.float32)
    cas[(centres >= 2.0) & (centres <= 4.0), 0] = 1.0
    config = LocalizationSettings(upsample=1, nms_threshold=None, cas_thresholds=(0.5,))
    (_, _, start, end), *_ = localize(VideoScores(np.array([0.9]), cas, None), config, timing)
    assert abs(start - 2.0) <= 4 / 30 and abs(end - 4.0) <= 4 / 30


def test_strided_extraction_end_to_end(make_clip, run_cli, tmp_path):
    make_clip("v.mp4", seconds=2.0, fps=25.0)
    code, out, err = run_cli("extract", tmp_path / "v.mp4", "--data", tmp_path / "data", *SMALL, "--stride", "4")
    assert code == 0, err
    rows = np.load(tmp_path / "data/features/v.npy")
    assert rows.shape == ((50 - 16) // 4 + 1, 2048)
    record = json.loads((tmp_path / "data/features/v.json").read_text())
    assert record["extraction"]["features"]["stride"] == 4 and record["seconds_per_row"] == pytest.approx(0.16)
    timing = VideoTiming.of(len(rows), declared_timing(tmp_path / "data/features/v.npy"), 2.0, 25.0)
    assert timing.seconds_per_row == pytest.approx(0.16) and timing.offset == pytest.approx((16 - 4) / 2 / 25)
    code, out, err = run_cli("extract", tmp_path / "v.mp4", "--data", tmp_path / "data", *SMALL, "--rows", "5")
    assert code == 0, err
    assert np.load(tmp_path / "data/features/v.npy").shape == (5, 2048)  # the frames and flow came from the cache


@pytest.mark.slow
def test_cmcs_recipe_end_to_end(make_clip, run_cli, tmp_path):
    """The recipe's 340x256 frames at 30 fps, rows every 4 frames, ten crops, recorded with every value."""
    make_clip("v.mp4", seconds=1.0, fps=30.0, size=(320, 240))
    args = ("--recipe", "cmcs-actionformer-thumos14", "--flow", "dis", "--workers", "1", "--device", "cpu")
    code, out, err = run_cli("extract", tmp_path / "v.mp4", "--data", tmp_path / "data", *args)
    assert code == 0, err
    assert np.load(tmp_path / "data/features/v.npy").shape == ((30 - 16) // 4 + 1, 2048)
    record = json.loads((tmp_path / "data/features/v.json").read_text())["extraction"]
    assert record["recipe"] == "cmcs-actionformer-thumos14" and record["flow"]["preset"] == "dis"
    assert record["decode"]["resize"] == [340, 256] and record["decode"]["crop"] is None
    assert record["features"]["stride"] == 4 and record["features"]["crops"] == "ten"


#: one setting changed per variant, as ExtractionConfig.replace names it, and the cause compare should name
VARIANTS = {
    "fps": ({"fps": 30.0}, "rate"),
    "stride": ({"stride": 8}, "rate"),
    "crop": ({"crop": 48}, "both"),
    "preset": ({"preset": "tvl1-fast"}, "flow"),
    "bound": ({"bound": 5.0}, "flow"),
}


@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    """Two clips extracted the small default way (A), once per VARIANTS setting, and (RGB) with RGB scaled to
    [0, 1] instead of [-1, 1] from A's own cached frames and flow, as a release made with another RGB scaling."""
    root = tmp_path_factory.mktemp("variants")
    clips = []
    for i in range(2):
        frames = render_frames(3.0, 25.0, 96, 64, [PlantedAction(ACTION_STYLES[i], 0.5, 2.0)], seed=i)
        clips.append(write_video(root / f"v{i}.mp4", frames, fps=25.0))
    base = ExtractionConfig().replace(short_side=64, crop=64, preset="dis")
    model = I3DPair.load(base.features, "cpu")
    for name, changes in [("A", {}), *((name, change) for name, (change, _) in VARIANTS.items())]:
        outcomes = extract_all(clips, ExtractJob.of(root / name, base.replace(**changes)), model)
        assert {o.status for o in outcomes} == {"done"}
    (root / "RGB").mkdir()
    for clip in clips:
        cache = root / "A" / "cache" / clip.stem
        frames, flow = (np.load(next(cache.glob(f"{stage}-*.npy"))) for stage in ("frames", "flow"))
        again = features_from_arrays(frames, flow, model, config=base.features)
        np.testing.assert_array_equal(again, np.load(root / "A" / "features" / f"{clip.stem}.npy"))  # A's route
        np.save(
            root / "RGB" / f"{clip.stem}.npy",
            features_from_arrays(frames // 2 + 128, flow, model, config=base.features),
        )
    return root


def test_compare_names_each_planted_difference(variants):
    a = variants / "A" / "features"
    for name, (change, cause) in VARIANTS.items():
        (setting,) = change
        for found in compare_folders(a, variants / name / "features"):
            assert found.cause == cause and setting in found.settings and setting in found.verdict, (name, found)
    for path in a.glob("*.npy"):  # a copy is the same; rows cut at the start are rows shifted
        for name, rows in (("copy", np.load(path)), ("shifted", np.load(path)[1:])):
            (variants / name).mkdir(exist_ok=True)
            np.save(variants / name / path.name, rows)
    assert {f.cause for f in compare_folders(a, variants / "copy")} == {"same"}
    assert {(f.cause, f.offset) for f in compare_folders(variants / "shifted", a)} == {("shifted", 1)}
    rgb = compare_folders(a, variants / "RGB")  # no records: the numbers alone name the stream
    assert {f.cause for f in rgb} == {"rgb"} and all(
        f.settings == {} and f.flow and f.flow.relative_error == 0 for f in rgb
    )


def test_compare_cli_writes_its_reports_and_refuses_bad_folders(variants, run_cli, tmp_path):
    a, bound = variants / "A" / "features", variants / "bound" / "features"
    code, out, err = run_cli("features", "compare", a, bound, "--out", tmp_path / "c.md", "--json", tmp_path / "c.json")
    assert code == 0, err
    assert "2 video(s) in both: 2 flow" in out and (tmp_path / "c.md").read_text() in out
    assert [v["cause"] for v in json.loads((tmp_path / "c.json").read_text())] == ["flow", "flow"]
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run_cli("features", "compare", a, empty)
    assert code == 2 and "holds no <video>.npy" in err and str(empty) in err
    shutil.copy(a / "v0.npy", empty / "other.npy")
    code, _, err = run_cli("features", "compare", a, empty)
    assert code == 2 and "no video is in both" in err
