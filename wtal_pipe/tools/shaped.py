"""Benchmark datasets shaped like a real one: its annotation file's videos, subsets, classes and timing,
with synthetic features in which every annotated instance leaves a trace of its class.

The features are made hard on purpose, in the ways real I3D features are hard for weakly-supervised
localization, so that no method saturates and differences between methods (or between runs of one
method) are visible:

- **part-only actions**: only a random part of each annotated segment carries its class (the rest
  carries a faint trace), so localizing the whole segment needs more than the most evident rows;
- **low contrast**: the class signal is weak against per-row noise and varies between instances;
- **class context**: rows beside an instance carry a context vector of its class (the pool beside a
  dive), which a video-level classifier gladly uses and a localizer must leave out;
- **generic motion**: an actionness vector shared by all classes appears in the actions and in a few
  background stretches (someone moving, not the action);
- **per-video offset**: each video has its own scene vector.

Everything is drawn from one seed, so a benchmark is reproducible from its settings; the settings
are written beside the features (``shaped.json``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..cache import atomic_save_npy, atomic_write_json
from ..data.annotations import load_annotations
from ..data.timing import I3D_TIMING
from ..errors import WtalError
from ..layout import DataLayout

if TYPE_CHECKING:
    from ..methods.base import Method


@dataclass(frozen=True)
class ShapedFeatures:
    """How the synthetic rows are drawn. Every vector (class, context, motion) has unit length and its
    amplitude is the length it is scaled to, against noise of std ``noise`` per dimension: a row's
    signal-to-noise ratio does not depend on ``dim``."""

    dim: int = 2048  # feature size (two halves, like RGB + flow, so late fusion has something to split)
    noise: float = 1.0  # std of the per-row Gaussian noise, per dimension
    amplitude: tuple[float, float] = (1.5, 4.0)  # class signal of an instance, drawn uniformly in this range
    part: tuple[float, float] = (0.35, 1.0)  # share of an annotated segment that carries its class
    faint: float = 0.25  # the class signal elsewhere in the segment, relative to the instance's amplitude
    context: float = 2.0  # class context beside each instance
    context_span: float = 1.0  # context reaches up to this many segment lengths before and after
    actionness: float = 2.0  # generic motion, in every action row and in distractor stretches
    distractors: float = 0.08  # share of background rows in distractor stretches
    scene: float = 3.0  # length of the per-video offset
    rows_per_second: float = 1 / I3D_TIMING.seconds_per_step()

    def __post_init__(self) -> None:
        if self.dim < 2 or self.dim % 2:
            raise WtalError(f"dim must be an even number >= 2, got {self.dim}")
        for name in ("amplitude", "part"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise WtalError(f"{name} must be a range low <= high, got {getattr(self, name)}")


def unit(vectors: np.ndarray) -> np.ndarray:
    """Each vector (the last axis) scaled to length 1."""
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def shaped_rows(
    duration: float,
    segments: list[tuple[float, float, int]],
    settings: ShapedFeatures,
    prototypes: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """(T, dim) float32 rows of one video of ``duration`` seconds with ``segments`` (start_s, end_s,
    class index); ``prototypes`` (2 C + 1, dim) holds the class, context and actionness vectors."""
    rows = max(2, int(duration * settings.rows_per_second))
    num_classes = (prototypes.shape[0] - 1) // 2
    action, context, motion = prototypes[:num_classes], prototypes[num_classes:-1], prototypes[-1]
    x = rng.normal(0.0, settings.noise, (rows, settings.dim)) + settings.scene * unit(rng.normal(size=settings.dim))
    background = np.ones(rows, bool)
    for start, end, c in segments:
        a = min(rows - 1, int(start * settings.rows_per_second))
        b = max(a + 1, min(rows, math.ceil(end * settings.rows_per_second)))
        background[a:b] = False
        length = b - a
        strength = rng.uniform(*settings.amplitude)
        shown = max(1, round(length * rng.uniform(*settings.part)))
        first = a + int(rng.integers(0, length - shown + 1))
        x[a:b] += settings.faint * strength * action[c]
        x[first : first + shown] += (1 - settings.faint) * strength * action[c]
        x[a:b] += settings.actionness * motion
        reach = round(length * settings.context_span * rng.uniform(0.3, 1.0))
        for lo, hi in ((max(0, a - reach), a), (b, min(rows, b + reach))):
            x[lo:hi] += settings.context * context[c]
    free = np.flatnonzero(background)
    if free.size and settings.distractors > 0:
        for _ in range(max(1, round(settings.distractors * free.size / 8))):
            centre = int(rng.choice(free))
            x[centre : centre + int(rng.integers(2, 9))] += settings.actionness * motion
    return x.astype(np.float32)


def sample_videos(database: dict, subsets: tuple[str, ...] | None, count: int | None, seed: int) -> dict:
    """The videos of ``subsets`` (all: None), or ``count`` of them drawn with the subsets' proportions (with
    replacement once there are fewer, the copies renamed ``<id>_<k>``): a benchmark of any size with the
    real set's timing, e.g. ActivityNet 1.3's 15,000 videos from 1.2's annotations."""
    kept = {vid: v for vid, v in database.items() if subsets is None or v.get("subset") in subsets}
    if count is None:
        return kept
    rng = np.random.default_rng([seed, count])
    by_subset: dict[str, list[str]] = {}
    for vid, video in kept.items():
        by_subset.setdefault(str(video.get("subset")), []).append(vid)
    drawn: dict = {}
    for vids in by_subset.values():
        share = max(1, round(count * len(vids) / len(kept)))
        picks = rng.choice(len(vids), share, replace=share > len(vids))
        for k, index in enumerate(picks):
            vid = vids[index] if share <= len(vids) else f"{vids[index]}_{k}"
            drawn[vid] = dict(database[vids[index]])
    return drawn


def write_shaped_dataset(
    annotations: str | Path,
    durations: str | Path | None,
    data_dir: str | Path,
    settings: ShapedFeatures = ShapedFeatures(),
    seed: int = 0,
    subsets: tuple[str, ...] | None = None,
    count: int | None = None,
) -> int:
    """DATA_DIR/annotations.json (with durations) and one feature file per video of ``annotations`` (those of
    ``subsets``, or ``count`` drawn from them: :func:`sample_videos`); durations come from the video entries,
    else from ``durations`` (an annotation file that has them, e.g. BackTAL's THUMOS14 file). Returns the
    number of videos written."""
    database = sample_videos(load_annotations(annotations), subsets, count, seed)
    extra = load_annotations(durations) if durations else {}
    layout = DataLayout(Path(data_dir))
    classes = sorted({a["label"] for v in database.values() for a in v.get("annotations", [])})
    rng = np.random.default_rng(seed)
    prototypes = unit(rng.normal(0.0, 1.0, (2 * len(classes) + 1, settings.dim)))
    for vid, video in database.items():
        duration = video.get("duration") or extra.get(vid, {}).get("duration")
        if not duration:
            raise WtalError(f"video {vid} has no duration", "pass an annotation file with durations", durations)
        video["duration"] = float(duration)
        segments = [(a["segment"][0], a["segment"][1], classes.index(a["label"])) for a in video["annotations"]]
        rows = shaped_rows(float(duration), segments, settings, prototypes, rng)
        atomic_save_npy(layout.features(vid, source=annotations), rows)
        atomic_write_json(
            layout.provenance(vid),
            {"generated": "shaped benchmark", "shape": list(rows.shape), "timing": I3D_TIMING.to_dict()},
        )
    atomic_write_json(layout.annotations, {"database": database})
    record = {"seed": seed, "source": str(annotations), "subsets": subsets, "count": count, **asdict(settings)}
    atomic_write_json(layout.root / "shaped.json", record)
    return len(database)


def narrowed(method: type[Method], width: int) -> dict[str, int]:
    """``{"hidden_dim": width}`` for a method with a hidden width (narrower networks for runs at a reduced
    scale, on both sides of a comparison); nothing for one without (CMCS's layers are narrow already)."""
    return {"hidden_dim": width} if "hidden_dim" in method.Network.names() else {}
