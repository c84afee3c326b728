"""Which files to extract: folders searched recursively by extension, files kept as given."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..errors import WtalError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")


def find_videos(inputs: Iterable[str | Path], extensions: tuple[str, ...] = VIDEO_EXTENSIONS) -> list[Path]:
    """Expand folders (recursively, by extension) and keep files as given, in a stable order; two files
    with one stem are an error (features are named by stem)."""
    videos: list[Path] = []
    for item in map(Path, inputs):
        if not item.exists():
            raise WtalError("no such file or folder", "check the path", item)
        if item.is_dir():
            videos += sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
        else:
            videos.append(item)
    stems: dict[str, Path] = {}
    for video in videos:
        if video.stem in stems and stems[video.stem] != video:
            raise WtalError(
                f"two videos share the name {video.stem!r} ({stems[video.stem]} and {video})",
                "features are keyed by file stem; rename one",
                video,
            )
        stems[video.stem] = video
    return list(stems.values())
