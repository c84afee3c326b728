"""The device route (``--flow tvl1-torch``): frames straight from the decoder through a bounded queue,
on the device once for both streams. It must give the very bytes the cached route gives, keep the
decoder a bounded distance ahead, and lose nothing when something fails half-way."""

from __future__ import annotations

import dataclasses
import json
import threading

import numpy as np
import pytest
import torch

from wtal_pipe.cache import stage_key
from wtal_pipe.errors import VideoError
from wtal_pipe.features import stages, stream
from wtal_pipe.features.config import ExtractionConfig, FeatureConfig
from wtal_pipe.features.extract import ExtractJob
from wtal_pipe.features.plan import VideoPlan
from wtal_pipe.features.stages import run_plan
from wtal_pipe.features.stream import frame_blocks, prefetch
from wtal_pipe.features.two_stream import I3DPair, features_from_arrays
from wtal_pipe.tools.synthetic import ACTION_STYLES, PlantedAction, render_frames, write_video
from wtal_pipe.video.decode import DecodeConfig
from wtal_pipe.video.flow import DeviceFlow, compute_flow, quantize, quantize_tensor
from wtal_pipe.video.flow_engines import FlowConfig

TORCH_FLOW = FlowConfig("tvl1-torch")


def _extraction(batch_size: int) -> ExtractionConfig:
    return ExtractionConfig(
        DecodeConfig(short_side=48, crop=48), TORCH_FLOW, FeatureConfig(precision="fp32", batch_size=batch_size)
    )


@pytest.fixture(scope="module")
def model():
    return I3DPair.load(FeatureConfig(precision="fp32"), "cpu")


def _plan(clip, data, extraction, model, force=frozenset()) -> VideoPlan:
    return ExtractJob(data, extraction, force=force).plan(clip, model)


def _run(clip, data, extraction, model, force=frozenset(), allow_partial=False):
    """(status, features path) of one video through the stages; user errors raise."""
    plan = _plan(clip, data, extraction, model, force)
    return run_plan(plan, model, workers=1, allow_partial=allow_partial), plan.features.data


@pytest.mark.parametrize("sizes", [[1] * 11, [3, 3, 3, 2], [7, 4], [11]])
def test_device_flow_does_not_depend_on_how_frames_arrive(sizes):
    frames = torch.from_numpy(
        np.stack(list(render_frames(11 / 25, 25.0, 40, 32, [PlantedAction(ACTION_STYLES[1], 0, 1)])))
    )
    whole = DeviceFlow(TORCH_FLOW, torch.device("cpu"), batch_pairs=4)
    expected = torch.cat([whole.push(frames), whole.finish()])
    fed = DeviceFlow(TORCH_FLOW, torch.device("cpu"), batch_pairs=4)
    parts, start = [], 0
    for size in sizes:
        parts.append(fed.push(frames[start : start + size]))
        start += size
    got = torch.cat([*parts, fed.finish()])
    assert got.shape == (11, 32, 40, 2) and got.dtype == torch.uint8
    assert torch.equal(got, expected)
    assert torch.equal(got[-1], got[-2])  # the last frame repeats the previous flow


def test_one_frame_has_zero_flow():
    flow = DeviceFlow(TORCH_FLOW, torch.device("cpu"))
    assert len(flow.push(torch.zeros((1, 20, 24, 3), dtype=torch.uint8))) == 0
    assert torch.equal(flow.finish(), torch.full((1, 20, 24, 2), 128, dtype=torch.uint8))


def test_quantizing_on_the_device_gives_the_caches_bytes():
    bound = 20.0
    steps = (np.arange(-300, 300) + 0.5 - 128.0) / (127.5 / bound)  # every rounding tie
    values = np.concatenate([np.random.default_rng(0).normal(0, 15, 10_000), steps, [-1e9, 1e9, bound, -bound]])
    values = values.astype(np.float32)
    assert np.array_equal(quantize_tensor(torch.from_numpy(values), bound).numpy(), quantize(values, bound))


def test_streamed_extraction_equals_the_cached_route(make_clip, tmp_path, model, monkeypatch):
    batch_size = 2  # 50 frames: a full batch of two chunks, then a partial one and a dropped tail
    clip = make_clip("walk.mp4", seconds=2.0, size=(64, 48), actions=[PlantedAction(ACTION_STYLES[2], 0.5, 2.5)])
    extraction = _extraction(batch_size)
    uploaded = []
    upload = stream._upload
    monkeypatch.setattr(stream, "_upload", lambda block, device: uploaded.append(len(block)) or upload(block, device))
    status, path = _run(clip, tmp_path / "streamed", extraction, model)
    assert sum(uploaded) == 50 and max(uploaded) == 32  # each frame goes to the device once, a block at a time
    streamed = np.load(path)
    cache = tmp_path / "streamed" / "cache" / "walk"
    assert status == "done" and streamed.shape == (50 // 16, 2048)
    assert not list(cache.glob("frames-*")), "the device route writes no frames cache"

    # the cached route, stage by stage: frames cache -> flow from it -> I3D from both memmaps
    plan = _plan(clip, tmp_path / "cached", extraction, model)
    frames_path, frames_record = stages.ensure_frames(plan)
    flow_path = stages.write_flow(plan, frames_path, workers=1)
    frames, flows = np.load(frames_path), np.load(flow_path)
    cached = features_from_arrays(frames, flows, model, config=extraction.features)

    assert np.array_equal(streamed, cached)
    (streamed_flow,) = cache.glob("flow-*.npy")
    assert streamed_flow.name == flow_path.name and np.array_equal(np.load(streamed_flow), flows)
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["n_frames"] == 50 and record["coverage"] == dataclasses.asdict(frames_record.coverage)
    assert record["keys"]["flow"] == stage_key("flow", frames_record.key, TORCH_FLOW)


def test_a_frames_cache_feeds_the_stream_and_a_flow_cache_is_reused(make_clip, tmp_path, model, monkeypatch):
    clip = make_clip("walk.mp4", seconds=2.0, size=(64, 48))
    data = tmp_path / "data"
    stages.ensure_frames(_plan(clip, data, _extraction(2), model))
    decoded = []
    monkeypatch.setattr(stages.decode, "iter_frames", lambda *a, **k: decoded.append(1) or iter(()))
    _, path = _run(clip, data, _extraction(2), model)
    first = np.load(path)
    assert not decoded and first.shape == (3, 2048)  # read from the frames cache, not decoded again

    def no_flow(*args, **kwargs):
        raise AssertionError("the cached flow was computed again")

    monkeypatch.setattr(stages, "stream_features", no_flow)
    monkeypatch.setattr(stages.flow, "compute_flow", no_flow)
    status, path = _run(clip, data, _extraction(2), model, force=frozenset({"features"}))
    assert status == "done" and np.array_equal(np.load(path), first)


def test_a_failure_mid_stream_leaves_no_flow_cache_and_no_temporary(make_clip, tmp_path, model, monkeypatch):
    clip = make_clip("walk.mp4", seconds=8.0, size=(64, 48))  # 7 blocks: the decoder is still waiting to put one
    calls = []

    def fail_second_batch(rgb, flow):
        calls.append(len(rgb))
        if len(calls) == 2:
            raise VideoError("device lost", "try again", clip)
        return np.zeros((len(rgb), 2048), np.float32)

    monkeypatch.setattr(model, "features", fail_second_batch)
    threads = threading.active_count()
    with pytest.raises(VideoError, match="device lost") as failure:
        _run(clip, tmp_path / "data", _extraction(2), model)
    cache = tmp_path / "data" / "cache" / "walk"
    assert [p.name for p in cache.iterdir()] == [] and not (tmp_path / "data" / "features").exists()
    # the decoding thread ended with the stream, even while the error (and its frames) is kept, as Dask keeps it
    assert failure.value and threading.active_count() == threads


def test_a_truncated_video_keeps_its_flow_for_allow_partial(tmp_path, model, monkeypatch):
    frames = render_frames(4.0, 25.0, 64, 48, [PlantedAction(ACTION_STYLES[0], 0.0, 4.0)])
    cut = write_video(tmp_path / "cut.mp4", frames, fps=25.0, container_options={"movflags": "+faststart"})
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size * 6 // 10])  # decodes 26 of 100 frames
    data = tmp_path / "data"
    with pytest.raises(VideoError, match="decoded only .* --allow-partial"):
        _run(cut, data, _extraction(2), model)
    assert len(list((data / "cache" / "cut").glob("flow-*.npy"))) == 1 and not (data / "features").exists()
    monkeypatch.setattr(stages, "stream_features", lambda *a, **k: pytest.fail("flow computed again"))
    status, path = _run(cut, data, _extraction(2), model, allow_partial=True)
    record = json.loads(path.with_suffix(".json").read_text())
    assert status == "done" and record["coverage"]["partial"] and np.load(path).shape[0] == record["n_frames"] // 16


def test_prefetch_keeps_the_producer_a_bounded_distance_ahead():
    """The consumer waits (on a condition, not a clock) until the producer has run as far ahead as it can, then
    checks it went no further: the queue's ``depth`` items, plus the one it holds while waiting to put it."""
    produced, ran_ahead = [0], threading.Condition()
    total, depth = 40, 2

    def source():
        for i in range(total):
            with ran_ahead:
                produced[0] += 1
                ran_ahead.notify_all()
            yield i

    for taken, item in enumerate(prefetch(source(), depth=depth), start=1):
        assert item == taken - 1
        furthest = min(taken + depth + 1, total)
        with ran_ahead:
            assert ran_ahead.wait_for(lambda bound=furthest: produced[0] >= bound, timeout=30), (taken, produced[0])
            assert produced[0] == furthest  # never more than depth + 1 ahead of what was taken
    assert taken == total


def test_prefetch_raises_the_producers_error_and_stops_it_when_the_consumer_leaves():
    def broken():
        yield 1
        raise VideoError("decoding failed after 1 frames", "re-encode it")

    with pytest.raises(VideoError, match="decoding failed"):
        list(prefetch(broken()))

    closed = threading.Event()

    def endless():
        try:
            while True:
                yield np.zeros(3)
        finally:
            closed.set()

    threads = threading.active_count()
    for _ in prefetch(endless()):
        break
    assert closed.is_set() and threading.active_count() == threads


def test_frame_blocks_group_in_order():
    frames = [np.full((2, 2, 3), i, np.uint8) for i in range(7)]
    blocks = list(frame_blocks(frames, 3))
    assert [len(b) for b in blocks] == [3, 3, 1]
    assert np.array_equal(np.concatenate(blocks)[:, 0, 0, 0], np.arange(7))


def test_compute_flow_on_a_frames_cache_matches_the_stream(tmp_path):
    frames = np.stack(list(render_frames(0.4, 25.0, 40, 32, [PlantedAction(ACTION_STYLES[3], 0, 1)])))
    np.save(tmp_path / "frames.npy", frames)
    compute_flow(tmp_path / "frames.npy", tmp_path / "flow.npy", TORCH_FLOW, workers=1, batch_pairs=3)
    flow = DeviceFlow(TORCH_FLOW, torch.device("cpu"), batch_pairs=3)
    expected = torch.cat([flow.push(torch.from_numpy(frames)), flow.finish()]).numpy()
    assert np.array_equal(np.load(tmp_path / "flow.npy"), expected)
