"""The background-click file the annotation page edits: ``{vid: [seconds, ...]}`` (what ``wtal import
clicks`` writes and ``wtal train --method backtal`` reads).

Every change re-reads the file, applies itself and writes the result atomically, under a lock that
holds across threads and processes (an exclusive ``flock`` on a ``.lock`` file beside it): two browser
tabs, or two servers on one file, never lose a click. A file that does not parse is never
overwritten: it is copied aside once and every change is refused until it is repaired.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..cache import atomic_write_json
from ..data.clicks import Clicks, parse_clicks
from ..errors import DataError

DELETE_TOLERANCE_S = 0.25  # a delete removes the video's click nearest the given time, if this close


@dataclass(frozen=True)
class Change:
    """One add or delete, kept so it can be undone."""

    action: str  # "add" | "delete"
    vid: str
    seconds: float


class ClickStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._history: list[Change] = []

    def read(self) -> Clicks:
        """The clicks in the file ({} when there is none yet)."""
        if not self.path.exists():
            return {}
        text = self.path.read_bytes()
        try:
            return parse_clicks(json.loads(text))
        except (ValueError, RecursionError) as exc:
            backup = self._back_up(text)
            raise DataError(
                f"not a clicks file ({exc}); nothing was written to it, a copy is at {backup.name}",
                'repair it to {"video_id": [seconds, ...]} or move it away',
                self.path,
            ) from exc

    def add(self, vid: str, seconds: float) -> list[float]:
        seconds = round(float(seconds), 3)
        times = self._update(vid, lambda times: times.append(seconds))
        self._history.append(Change("add", vid, seconds))  # only once it is saved: undo reverts real changes
        return times

    def delete(self, vid: str, seconds: float) -> list[float]:
        """Remove the click nearest ``seconds`` (within DELETE_TOLERANCE_S); nothing when none is that close."""

        removed: list[Change] = []

        def remove(times: list[float]) -> None:
            if not times:
                return
            nearest = min(times, key=lambda t: abs(t - seconds))
            if abs(nearest - seconds) <= DELETE_TOLERANCE_S:
                times.remove(nearest)
                removed.append(Change("delete", vid, nearest))

        times = self._update(vid, remove)
        self._history += removed  # only once it is saved
        return times

    def undo(self) -> tuple[str, list[float]] | None:
        """Revert the last change made through this store: (video, its clicks now), or None."""
        if not self._history:
            return None
        last = self._history.pop()
        if last.action == "add":
            return last.vid, self._update(last.vid, lambda times: _remove_one(times, last.seconds))
        return last.vid, self._update(last.vid, lambda times: times.append(last.seconds))

    def _update(self, vid: str, change: Callable[[list[float]], None]) -> list[float]:
        with self._exclusive():
            clicks = self.read()
            times = clicks.setdefault(vid, [])
            change(times)
            times.sort()
            if not times:
                del clicks[vid]
            atomic_write_json(self.path, clicks)
            return times

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_file = self.path.with_name(self.path.name + ".lock")
        with self._lock, open(lock_file, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _back_up(self, content: bytes) -> Path:
        """A copy of the unreadable file, named by its content (made once, however often it is read)."""
        backup = self.path.with_name(f"{self.path.name}.corrupt-{hashlib.sha256(content).hexdigest()[:8]}")
        if not backup.exists():
            shutil.copyfile(self.path, backup)
        return backup


def _remove_one(times: list[float], seconds: float) -> None:
    if seconds in times:
        times.remove(seconds)
