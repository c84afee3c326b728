"""Optical flow: sign and scale on a known shift, quantization, workers agree."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from wtal_pipe.config import FLOW_PRESETS, FlowConfig
from wtal_pipe.video.flow import compute_flow, dequantize, make_flow_fn, quantize, split_ranges
from wtal_pipe.video.synthetic import textured_background


def _gray_pair(dx: int, dy: int, size: int = 96):
    import cv2

    base = cv2.cvtColor(textured_background(size + 40, size + 40, seed=1), cv2.COLOR_RGB2GRAY)
    prev = base[20 : 20 + size, 20 : 20 + size]
    nxt = base[20 - dy : 20 - dy + size, 20 - dx : 20 - dx + size]  # content moves by (+dx, +dy)
    return np.ascontiguousarray(prev), np.ascontiguousarray(nxt)


@pytest.mark.parametrize("preset", ["tvl1", "tvl1-fast", "dis"])
def test_known_shift_gives_flow_of_right_sign_and_scale(preset):
    prev, nxt = _gray_pair(dx=3, dy=-2)
    flow = make_flow_fn(FLOW_PRESETS[preset])(prev, nxt)
    inner = flow[16:-16, 16:-16]
    assert flow.shape == (96, 96, 2) and flow.dtype == np.float32
    assert np.median(inner[..., 0]) == pytest.approx(3.0, abs=0.25)
    assert np.median(inner[..., 1]) == pytest.approx(-2.0, abs=0.25)


def test_quantization_matches_the_community_formula():
    flow = np.array([-25.0, -20.0, -10.0, 0.0, 0.05, 10.0, 20.0, 30.0], np.float32)
    q = quantize(flow, 20.0)
    np.testing.assert_array_equal(q, np.clip(np.round(128 + np.clip(flow, -20, 20) * 255 / 40), 0, 255))
    assert q[3] == 128  # zero flow is mid-grey
    back = dequantize(q) * 20.0
    assert np.all(np.abs(back - np.clip(flow, -20, 20)) <= 20 / 255 + 1e-6)  # one step at most
    assert dequantize(q).min() >= -1.0 and dequantize(q).max() <= 1.0


def test_split_ranges_cover_everything_once():
    for n in (1, 7, 100):
        for parts in (1, 3, 8, 200):
            ranges = split_ranges(n, parts)
            assert ranges[0][0] == 0 and ranges[-1][1] == n
            assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))


def test_parallel_workers_match_single_worker(tmp_path):
    frames = np.stack(
        [np.repeat(np.roll(textured_background(48, 48, 2), 2 * i, axis=1)[None], 1, 0)[0] for i in range(9)]
    )
    frames_path = tmp_path / "frames.npy"
    np.save(frames_path, frames)
    results = {}
    for workers in (1, 2):
        out = tmp_path / f"flow{workers}.npy"
        compute_flow(frames_path, out, FlowConfig("dis"), workers)
        results[workers] = (np.load(out),)
    np.testing.assert_array_equal(results[1][0], results[2][0])
    flow = dequantize(results[1][0]) * 20
    assert flow.shape == (9, 48, 48, 2)
    assert np.median(flow[:, 12:-12, 12:-12, 0]) == pytest.approx(2.0, abs=0.3)
    np.testing.assert_array_equal(results[1][0][-1], results[1][0][-2])  # last frame repeats its predecessor
