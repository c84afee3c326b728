"""A test set's detections as columns, and the ActivityNet result file they are written to.

ActivityNet 1.3 validation is ~5,000 videos with dozens of detections each; held as one dict per detection
(then as a JSON string) they grew ``wtal test``'s memory with the number of videos. Here a detection is
32 bytes in five typed columns, the file is written video by video, and the evaluator reads the columns.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..cache import atomic_path
from .localize import Detection

#: the precision the result file keeps (and the evaluation of the same run sees): 1 ms, 1e-6 of score
SECONDS_DECIMALS, SCORE_DECIMALS = 3, 6
FORMAT_VERSION = "wtal-pipe"


class DetectionTable:
    """Detections of many videos, in the order they were added (the evaluator's tie order)."""

    def __init__(self, classes: list[str], external: dict | None = None) -> None:
        self.classes = classes
        self.external = external or {}
        self.videos: list[str] = []
        self._video = array("i")
        self._label = array("i")
        self._score, self._start, self._end = array("d"), array("d"), array("d")

    @classmethod
    def of(
        cls, per_video: dict[str, list[Detection]], classes: list[str], external: dict | None = None
    ) -> DetectionTable:
        table = cls(classes, external)
        for vid, detections in per_video.items():
            table.add(vid, detections)
        return table

    def add(self, vid: str, detections: list[Detection], rounded: bool = True) -> None:
        """One video's detections (possibly none: the video is still listed), rounded as the file keeps them
        (``rounded=False``: as they are, for detections read from a file)."""
        index = len(self.videos)
        self.videos.append(vid)
        for label, score, start, end in detections:
            self._video.append(index)
            self._label.append(label)
            self._score.append(round(score, SCORE_DECIMALS) if rounded else score)
            self._start.append(round(start, SECONDS_DECIMALS) if rounded else start)
            self._end.append(round(end, SECONDS_DECIMALS) if rounded else end)

    def __len__(self) -> int:
        return len(self._score)

    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(video index, class index, score, start_s, end_s) as int32 / float64 arrays, one entry per detection."""
        video, label, score, start, end = self._video, self._label, self._score, self._start, self._end
        return np.array(video), np.array(label), np.array(score), np.array(start), np.array(end)

    def per_video(self) -> Iterator[tuple[str, list[Detection]]]:
        """Each video's detections, in the order they were added."""
        video, label, score, start, end = self.columns()
        bounds = np.searchsorted(video, np.arange(len(self.videos) + 1))
        for index, vid in enumerate(self.videos):
            rows = range(bounds[index], bounds[index + 1])
            yield vid, [Detection(int(label[i]), float(score[i]), float(start[i]), float(end[i])) for i in rows]

    def _json_entries(self) -> Iterator[tuple[str, list[dict]]]:
        for vid, detections in self.per_video():
            yield (
                vid,
                [
                    {"label": self.classes[label], "score": score, "segment": [start, end]}
                    for label, score, start, end in detections
                ],
            )

    def to_json(self) -> dict:
        """The ActivityNet result format as one dict (for small sets: a clip, the annotation page)."""
        return {"version": FORMAT_VERSION, "results": dict(self._json_entries()), "external_data": self.external}

    def write_json(self, path: str | Path) -> None:
        """The ActivityNet result file, one video per line, written atomically without building it in memory."""
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            fh.write(f'{{"version": {json.dumps(FORMAT_VERSION)},\n"results": {{')
            for number, (vid, detections) in enumerate(self._json_entries()):
                fh.write(f"{',' if number else ''}\n{json.dumps(vid)}: {json.dumps(detections)}")
            fh.write(f'\n}},\n"external_data": {json.dumps(self.external)}\n}}\n')
