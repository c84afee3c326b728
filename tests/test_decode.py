"""Decoding: frame counts and timestamps at the target fps, geometry, lossless pixels, bad files."""

from __future__ import annotations

import numpy as np
import pytest

from wtal_pipe.errors import VideoError, WtalError
from wtal_pipe.tools.synthetic import textured_background, write_video
from wtal_pipe.video.decode import DecodeConfig, iter_frames, probe, resize_and_crop

SMALL = DecodeConfig(fps=25.0, short_side=64, crop=64)


@pytest.mark.parametrize(
    "name,codec,fps",
    [
        ("h264.mp4", "libx264", 30.0),
        ("ntsc.mp4", "libx264", 30000 / 1001),
        ("mpeg4.avi", "mpeg4", 24.0),
        ("ffv1.mkv", "ffv1", 50.0),
        ("vp9.webm", "libvpx-vp9", 25.0),
        ("mjpeg.mov", "mjpeg", 15.0),
    ],
)
def test_frame_count_and_timestamps_follow_source_time(make_clip, name, codec, fps):
    clip = make_clip(name, seconds=3.0, fps=fps, codec=codec)
    n_source = round(3.0 * fps)
    duration = n_source / fps
    frames = list(iter_frames(clip, SMALL))
    assert len(frames) == int(np.ceil(duration * 25 - 1e-6))
    times = np.array([f.time for f in frames])
    np.testing.assert_allclose(times, np.arange(len(frames)) / 25.0)
    source = np.array([f.source_time for f in frames])
    # the frame shown at t is the last source frame with pts <= t: never in the future, < 1 frame old
    assert np.all(source <= times + 1e-3)
    assert np.all(times - source < 1 / fps + 1e-3)
    assert frames[0].rgb.shape == (64, 64, 3) and frames[0].rgb.dtype == np.uint8


def test_ntsc_29_97_picks_exact_source_frames(make_clip):
    clip = make_clip("ntsc.mp4", seconds=2.0, fps=30000 / 1001)
    frames = list(iter_frames(clip, SMALL))
    period = 1001 / 30000
    expected = [np.floor(k / 25 / period + 1e-6) * period for k in range(len(frames))]
    np.testing.assert_allclose([f.source_time for f in frames], expected, atol=1e-4)


def test_variable_frame_rate_holds_each_frame_until_the_next(tmp_path):
    times = [0.0, 0.1, 0.15, 0.5, 0.52, 1.0]
    colours = [0, 40, 80, 120, 160, 200]
    clip = write_video(
        tmp_path / "vfr.mkv",
        [np.full((64, 64, 3), c, np.uint8) for c in colours],
        fps=25,
        codec="libx264rgb",
        times=times,
        options={"crf": "0"},
    )
    frames = list(iter_frames(clip, SMALL))
    assert len(frames) == 26  # last frame lasts 1/25 s: outputs at 0.00 ... 1.00
    shown = [int(f.rgb.mean().round()) for f in frames]
    expected = [colours[max(i for i, t in enumerate(times) if t <= k / 25 + 1e-4)] for k in range(26)]
    assert shown == expected
    assert 120 not in shown  # on screen only 0.50-0.52 s, between two output instants


def test_lossless_pixels_survive_exactly(tmp_path):
    frames = [np.roll(textured_background(64, 64, seed=3), shift, axis=1) for shift in range(10)]
    clip = write_video(tmp_path / "lossless.mkv", frames, fps=25, codec="libx264rgb", options={"crf": "0"})
    decoded = [f.rgb for f in iter_frames(clip, SMALL)]
    assert len(decoded) == 10
    for got, want in zip(decoded, frames):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("width,height", [(97, 181), (181, 97), (320, 240)])
def test_resize_short_side_then_centre_crop(width, height):
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[height // 2, width // 2] = 255  # the centre survives the crop, near the centre
    out = resize_and_crop(rgb, DecodeConfig(short_side=256, crop=224))
    assert out.shape == (224, 224, 3)
    y, x = np.unravel_index(out[..., 0].argmax(), out.shape[:2])
    assert abs(y - 112) <= 2 and abs(x - 112) <= 2
    # a fixed size instead (340x256 releases): the whole frame, aspect ratio not kept, the centre stays central
    whole = resize_and_crop(rgb, DecodeConfig(resize=(340, 256), crop=None))
    assert whole.shape == (256, 340, 3)
    y, x = np.unravel_index(whole[..., 0].argmax(), whole.shape[:2])
    assert abs(y - 128) <= 2 and abs(x - 170) <= 2


def test_portrait_odd_size_video(make_clip):
    clip = make_clip("portrait.mkv", seconds=1.0, fps=25, size=(97, 181), codec="ffv1")
    info = probe(clip)
    assert (info.width, info.height) == (97, 181)
    frames = list(iter_frames(clip, DecodeConfig(short_side=128, crop=112)))
    assert len(frames) == 25 and frames[0].rgb.shape == (112, 112, 3)


def test_decode_streams_one_frame_at_a_time(make_clip):
    clip = make_clip("long.mp4", seconds=4.0, fps=30)
    frames = iter_frames(clip, SMALL)
    first = next(frames)
    assert first.index == 0 and first.rgb.shape == (64, 64, 3)
    frames.close()  # the container closes without decoding the rest


def test_zero_frame_file(tmp_path):
    import av

    path = tmp_path / "empty.mp4"
    with av.open(str(path), "w") as container:  # header and trailer, no packet
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        container.start_encoding()
        container.mux(stream.encode())
    assert path.stat().st_size > 0
    with pytest.raises(VideoError, match="no decodable frames|no video stream") as info:
        list(iter_frames(path, SMALL))
    assert "empty.mp4" in info.value.one_line()


def test_text_file_named_mp4(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 100)
    with pytest.raises(VideoError, match="not a readable video") as info:
        list(iter_frames(path, SMALL))
    assert str(path) in info.value.one_line()


def test_truncated_file_fails_with_its_name(make_clip):
    clip = make_clip("cut.mp4", seconds=3.0, fps=25)
    data = clip.read_bytes()
    clip.write_bytes(data[: len(data) // 3])
    with pytest.raises(VideoError) as info:
        list(iter_frames(clip, SMALL))
    assert "cut.mp4" in info.value.one_line()


def test_missing_file(tmp_path):
    with pytest.raises(VideoError, match="file not found"):
        probe(tmp_path / "nope.mp4")


def test_bad_config_is_a_user_error():
    with pytest.raises(WtalError, match="crop"):
        DecodeConfig(short_side=100, crop=224)
