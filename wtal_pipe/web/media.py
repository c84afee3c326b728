"""Videos for the browser: the file itself when Chromium can play it, else an H.264 proxy made once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import cast

from ..cache import atomic_path, file_identity
from ..features.plan import video_cache
from ..layout import DataLayout
from ..video.decode import probe

# what an HTML5 <video> in Chromium decodes, by container suffix
PLAYABLE = {
    ".mp4": {"h264", "vp9", "av1"},
    ".m4v": {"h264"},
    ".mov": {"h264"},
    ".webm": {"vp8", "vp9", "av1"},
}
_proxy_locks: dict[str, threading.Lock] = {}


def playable(video: Path) -> bool:
    return probe(video).codec in PLAYABLE.get(video.suffix.lower(), set())


def browser_video(video: Path, vid: str, layout: DataLayout, report: Callable[[str], None] = print) -> tuple[Path, str]:
    """(file to serve, MIME type): the video, or its cached H.264 proxy (made now if needed)."""
    if playable(video):
        return video, "video/webm" if video.suffix.lower() == ".webm" else "video/mp4"
    proxy = video_cache(layout, vid).browser_copy(file_identity(video))
    with _proxy_locks.setdefault(vid, threading.Lock()):
        if not proxy.exists():
            transcode(video, proxy, report)
    return proxy, "video/mp4"


def transcode(source: Path, target: Path, report: Callable[[str], None]) -> None:
    """H.264 (yuv420p, even size, the source's timestamps) in MP4 with the index first, for seeking."""
    import av

    info = probe(source)
    report(f"{source.name}: {info.codec} cannot play in the browser; making an H.264 copy {target}")
    with (
        av.open(str(source)) as src,
        atomic_path(target, keep_suffix=True) as tmp,
        av.open(str(tmp), mode="w", options={"movflags": "+faststart"}) as out,
    ):
        stream_in = src.streams.video[0]
        rate = stream_in.average_rate or Fraction(25)
        stream = cast("av.video.stream.VideoStream", out.add_stream("libx264", rate=rate))
        stream.width, stream.height = info.width // 2 * 2, info.height // 2 * 2
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = stream_in.time_base or 1 / rate
        total = info.duration or 0.0
        next_report = 0.25
        for frame in src.decode(stream_in):
            picture = frame.reformat(stream.width, stream.height, "yuv420p")
            picture.pts, picture.time_base = frame.pts, frame.time_base
            out.mux(stream.encode(picture))
            if total and frame.time is not None and frame.time / total >= next_report:
                report(f"{source.name}: {100 * next_report:.0f}% transcoded")
                next_report += 0.25
        out.mux(stream.encode())
    report(f"{source.name}: browser copy ready")
