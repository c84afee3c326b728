"""tvl1-torch against OpenCV's TV-L1: each building block against the OpenCV function it reproduces, the
flow on pairs with known motion, and the I3D features extracted through either preset."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from tests.motion import end_point_error, known_motion_pairs
from wtal_pipe.features.config import ExtractionConfig, FeatureConfig
from wtal_pipe.video import tvl1_torch
from wtal_pipe.video.decode import DecodeConfig
from wtal_pipe.video.flow_engines import FlowConfig, TVL1Params, make_flow_engine
from wtal_pipe.video.tvl1_torch import TVL1

PARAMS = TVL1Params.from_params(FlowConfig("tvl1-torch").params)


@pytest.fixture(scope="module")
def pairs():
    return known_motion_pairs(224)


@pytest.fixture(scope="module")
def flows(pairs):
    """name -> (OpenCV flow, our flow, true flow); ours computed for all pairs in one batch."""
    opencv = make_flow_engine("tvl1").pair  # type: ignore[attr-defined]
    first = torch.stack([torch.from_numpy(a).float() for a, _, _ in pairs.values()])
    second = torch.stack([torch.from_numpy(b).float() for _, b, _ in pairs.values()])
    ours = TVL1(PARAMS)(first, second).numpy()
    return {name: (opencv(a, b), ours[i], truth) for i, (name, (a, b, truth)) in enumerate(pairs.items())}


def _smooth_image(seed: int, height: int, width: int) -> np.ndarray:
    noise = np.random.default_rng(seed).uniform(0, 255, (height, width)).astype(np.float32)
    return cv2.GaussianBlur(noise, (0, 0), 2)


@pytest.mark.parametrize("side", [224, 179, 143, 114, 112, 57, 20])
def test_pyramid_levels_match_opencv_resize(side):
    image = _smooth_image(side, side, side + 3)
    expected = cv2.resize(image, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_LINEAR)
    ours = tvl1_torch.resize_linear(torch.from_numpy(image)[None], expected.shape, (1 / 0.8, 1 / 0.8))[0].numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-3)


def test_flow_upsampling_matches_opencv_resize_to_a_size():
    field = np.random.default_rng(1).normal(0, 2, (91, 93)).astype(np.float32)
    expected = cv2.resize(field, (116, 114), interpolation=cv2.INTER_LINEAR)
    ours = tvl1_torch.resize_linear(torch.from_numpy(field)[None], (114, 116))[0].numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-4)


def test_pyramid_sizes_are_opencvs():
    assert tvl1_torch.pyramid_sizes(224, 224, PARAMS) == [(224, 224), (179, 179), (143, 143), (114, 114), (91, 91)]
    assert tvl1_torch.pyramid_sizes(40, 30, PARAMS) == [(40, 30), (32, 24), (26, 19)]  # none below 16


def test_warping_matches_opencv_bicubic_remap_with_a_zero_border():
    image = _smooth_image(2, 64, 80)
    rng = np.random.default_rng(3)
    flow_x = rng.normal(0, 3, image.shape).astype(np.float32)
    flow_y = rng.normal(0, 3, image.shape).astype(np.float32)
    xs, ys = np.meshgrid(np.arange(80, dtype=np.float32), np.arange(64, dtype=np.float32))
    expected = cv2.remap(image, xs + flow_x, ys + flow_y, cv2.INTER_CUBIC)
    ours = tvl1_torch.remap_cubic(
        torch.from_numpy(image)[None, None], torch.from_numpy(flow_x)[None], torch.from_numpy(flow_y)[None]
    )[0, 0].numpy()
    np.testing.assert_allclose(ours, expected, atol=2e-3)
    still = tvl1_torch.remap_cubic(torch.from_numpy(image)[None, None], torch.zeros(1, 64, 80), torch.zeros(1, 64, 80))
    assert torch.equal(still[0, 0], torch.from_numpy(image))  # no motion reproduces the image exactly


def test_median_and_grey_are_bit_exact():
    field = np.random.default_rng(4).normal(0, 1, (50, 70)).astype(np.float32)
    assert np.array_equal(tvl1_torch.median5(torch.from_numpy(field)[None])[0].numpy(), cv2.medianBlur(field, 5))
    rgb = np.random.default_rng(5).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    grey = tvl1_torch.rgb_to_gray(torch.from_numpy(rgb)).numpy()
    assert np.array_equal(grey, cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32))


def test_gradients_follow_opencvs_border_rules():
    image = torch.arange(20.0).reshape(1, 4, 5) ** 2
    dx, dy = tvl1_torch.centred_gradient(image)
    assert dx[0, 1, 0] == 0.5 * (image[0, 1, 1] - image[0, 1, 0])  # one-sided, halved, on the border
    assert dx[0, 1, 2] == 0.5 * (image[0, 1, 3] - image[0, 1, 1])
    assert dy[0, 3, 2] == 0.5 * (image[0, 3, 2] - image[0, 2, 2])
    fx, fy = tvl1_torch.forward_gradient(image)
    assert fx[0, :, -1].eq(0).all() and fy[0, -1, :].eq(0).all()
    # for duals shaped like the gradient (zero last column / row), divergence is minus the adjoint of
    # the forward gradient: <grad u, p> = -<u, div p>
    u, px, py = torch.randn(3, 1, 6, 7, dtype=torch.float64)
    px[..., -1], py[..., -1, :] = 0, 0
    gx, gy = tvl1_torch.forward_gradient(u)
    assert torch.isclose((gx * px + gy * py).sum(), -(u * tvl1_torch.divergence(px, py)).sum())


@pytest.mark.parametrize("name", ["translation", "rotation", "moving object", "static"])
def test_flow_matches_opencv_on_known_motion(flows, name):
    opencv, ours, truth = flows[name]
    assert end_point_error(ours, opencv) <= 0.15
    assert end_point_error(ours, truth) <= 1.05 * end_point_error(opencv, truth) + 1e-6


def test_a_pairs_flow_does_not_depend_on_its_batch(pairs, flows):
    first, second, _ = pairs["moving object"]
    alone = TVL1(PARAMS)(torch.from_numpy(first).float()[None], torch.from_numpy(second).float()[None])[0]
    np.testing.assert_allclose(alone.numpy(), flows["moving object"][1], atol=1e-3)


def test_i3d_flow_features_agree_between_presets(make_clip, tmp_path):
    from wtal_pipe.features.extract import ExtractJob, extract_video
    from wtal_pipe.features.two_stream import I3DPair

    clip = make_clip("moving.mp4", seconds=1.3, size=(160, 120))
    model = I3DPair.load(FeatureConfig(precision="fp32"), "cpu")
    rows = {}
    for preset in ("tvl1", "tvl1-torch"):
        extraction = ExtractionConfig(DecodeConfig(short_side=112, crop=112), FlowConfig(preset))
        outcome = extract_video(clip, ExtractJob.of(tmp_path / preset, extraction, workers=1), model)
        rows[preset] = np.load(outcome.features)
    half = rows["tvl1"].shape[1] // 2
    a, b = rows["tvl1"][:, half:], rows["tvl1-torch"][:, half:]
    cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert len(cosine) == 2 and cosine.min() >= 0.99
    assert np.array_equal(rows["tvl1"][:, :half], rows["tvl1-torch"][:, :half])  # RGB stream untouched
    flows = [np.load(next((tmp_path / p / "cache" / "moving").glob("flow-*.npy"))) for p in ("tvl1", "tvl1-torch")]
    assert flows[0].shape == flows[1].shape and not np.array_equal(*flows)  # two cache entries, keyed by preset
