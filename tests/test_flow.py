"""Optical flow: engines behind one protocol, sign and scale on a known shift, quantization, workers agree,
and a new engine added with one registration line."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from wtal_pipe.errors import WtalError
from wtal_pipe.features.config import ExtractionConfig
from wtal_pipe.tools.synthetic import textured_background
from wtal_pipe.video import flow_engines
from wtal_pipe.video.decode import DecodeConfig
from wtal_pipe.video.flow import compute_flow, dequantize_tensor, quantize, split_ranges
from wtal_pipe.video.flow_engines import EngineEntry, FlowConfig, make_flow_engine


def _shifted_frames(dx: int, dy: int, size: int = 96) -> np.ndarray:
    """Two RGB frames; the content moves by (+dx, +dy) from the first to the second."""
    base = textured_background(size + 40, size + 40, seed=1)
    prev = base[20 : 20 + size, 20 : 20 + size]
    nxt = base[20 - dy : 20 - dy + size, 20 - dx : 20 - dx + size]
    return np.ascontiguousarray(np.stack([prev, nxt]))


def _dequantize(flow_u8: np.ndarray) -> np.ndarray:
    return dequantize_tensor(torch.from_numpy(flow_u8)).numpy()


@pytest.mark.parametrize("preset", ["tvl1", "tvl1-fast", "dis"])
def test_known_shift_gives_flow_of_right_sign_and_scale(preset):
    engine = make_flow_engine(preset)
    flow = engine.pairs(_shifted_frames(dx=3, dy=-2))
    inner = flow[0, 16:-16, 16:-16]
    assert not engine.on_device and flow.shape == (1, 96, 96, 2) and flow.dtype == np.float32
    assert np.median(inner[..., 0]) == pytest.approx(3.0, abs=0.25)
    assert np.median(inner[..., 1]) == pytest.approx(-2.0, abs=0.25)


def test_presets_are_engines_with_parameters():
    assert FlowConfig("tvl1-fast").params == {**FlowConfig("tvl1").params, "nscales": 3, "warps": 3, "scale_step": 0.5}
    assert FlowConfig("tvl1").params["algorithm"] == "tvl1" and FlowConfig("tvl1-fast").params["algorithm"] == "tvl1"
    assert FlowConfig("tvl1-torch").on_device and not FlowConfig("dis").on_device
    with pytest.raises(WtalError, match="unknown flow preset 'raft'.*tvl1, tvl1-torch, dis, tvl1-fast"):
        FlowConfig("raft")


def test_quantization_matches_the_community_formula():
    flow = np.array([-25.0, -20.0, -10.0, 0.0, 0.05, 10.0, 20.0, 30.0], np.float32)
    q = quantize(flow, 20.0)
    np.testing.assert_array_equal(q, np.clip(np.round(128 + np.clip(flow, -20, 20) * 255 / 40), 0, 255))
    assert q[3] == 128  # zero flow is mid-grey
    back = _dequantize(q) * 20.0
    assert np.all(np.abs(back - np.clip(flow, -20, 20)) <= 20 / 255 + 1e-6)  # one step at most
    assert _dequantize(q).min() >= -1.0 and _dequantize(q).max() <= 1.0


def test_split_ranges_cover_everything_once():
    for n in (1, 7, 100):
        for parts in (1, 3, 8, 200):
            ranges = split_ranges(n, parts)
            assert ranges[0][0] == 0 and ranges[-1][1] == n
            assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))


def test_parallel_workers_match_single_worker(tmp_path):
    frames = np.stack([np.roll(textured_background(48, 48, 2), 2 * i, axis=1) for i in range(40)])
    frames_path = tmp_path / "frames.npy"
    np.save(frames_path, frames)
    results = {}
    for workers in (1, 2):
        out = tmp_path / f"flow{workers}.npy"
        compute_flow(frames_path, out, FlowConfig("dis"), workers=workers)
        results[workers] = np.load(out)
    np.testing.assert_array_equal(results[1], results[2])
    flow = _dequantize(results[1]) * 20
    assert flow.shape == (40, 48, 48, 2)
    assert np.median(flow[:, 12:-12, 12:-12, 0]) == pytest.approx(2.0, abs=0.3)
    np.testing.assert_array_equal(results[1][-1], results[1][-2])  # last frame repeats its predecessor
    one_by_one = [make_flow_engine("dis").pairs(frames[i : i + 2])[0] for i in range(39)]  # blocks change nothing
    np.testing.assert_array_equal(results[1][:-1], quantize(np.stack(one_by_one), 20.0))


class ConstantFlow:
    """A toy engine: every pixel moves by the same (dx, dy), whatever the frames."""

    on_device: ClassVar[bool] = False

    def __init__(self, params: Mapping[str, Any], device: str = "cpu"):
        self.motion = np.array([params["dx"], params["dy"]], np.float32)

    def pairs(self, frames: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.motion, (len(frames) - 1, *frames.shape[1:3], 2)).copy()


def test_a_new_engine_is_one_class_and_one_registration_line(monkeypatch, make_clip, tmp_path):
    from wtal_pipe.features.extract import ExtractJob, extract_video
    from wtal_pipe.features.provenance import Provenance
    from wtal_pipe.features.two_stream import I3DPair

    monkeypatch.setitem(
        flow_engines.FLOW_ENGINES, "toy", EngineEntry(f"{__name__}:ConstantFlow", {"dx": 4.0, "dy": -1.0})
    )
    extraction = ExtractionConfig(DecodeConfig(short_side=32, crop=32), FlowConfig("toy"))
    clip = make_clip("v.mp4", seconds=1.4)
    outcome = extract_video(
        clip, ExtractJob.of(tmp_path / "data", extraction), I3DPair.load(extraction.features, "cpu")
    )
    assert outcome.status == "done" and np.load(outcome.features).shape == (2, 2048)
    flow_key = Provenance.read(outcome.features).keys["flow"]
    stored = np.load(tmp_path / "data" / "cache" / "v" / f"flow-{flow_key}.npy")
    np.testing.assert_array_equal(np.unique(stored[..., 0]), [quantize(np.float32(4.0), 20.0)])
    assert Provenance.read(outcome.features).extraction.flow.params == {"algorithm": "toy", "dx": 4.0, "dy": -1.0}
