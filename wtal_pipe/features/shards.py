"""``--shard i/N``: a stable partition of the videos for batch systems without a cluster (Slurm arrays).

A video's shard is a hash of its stem, the key its features are stored under: every video lands in
exactly one shard, whatever the order or folder the list comes in, and the hash costs no read of
the video (a content hash would read every file on every array task).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import WtalError


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (0-based, as ``$SLURM_ARRAY_TASK_ID`` with ``--array=0-(N-1)``) of ``count``."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError:
            index, count = -1, 0
        if not 0 <= index < count:
            raise WtalError(f"--shard {text!r} is not i/N with 0 <= i < N", "e.g. --shard 0/8 ... --shard 7/8")
        return cls(index, count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def holds(self, video: Path) -> bool:
        return shard_of(video, self.count) == self.index


def shard_of(video: Path, count: int) -> int:
    digest = hashlib.sha256(Path(video).stem.encode()).digest()
    return int.from_bytes(digest[:8], "big") % count
