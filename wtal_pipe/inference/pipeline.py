"""Trained model + videos -> detections: the test set of a DATA_DIR (``wtal test``) or raw clips
(``wtal localize``: decode -> flow -> I3D through the extraction cache first)."""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..cache import atomic_path
from ..data.dataset import Dataset
from ..data.sampling import inference_input
from ..data.timing import VideoTiming, declared_timing
from ..errors import DataError
from ..features.config import ExtractionConfig
from ..features.provenance import DEFAULT_FPS, Provenance
from ..methods.base import Method
from ..methods.settings import LocalizationSettings
from ..run import RunMeta
from .detections import DetectionTable
from .localize import Detection, VideoScores, localize, selected_classes


def model_input(model: Method, features: np.ndarray) -> torch.Tensor:
    """A whole video's features (T, D) as the model sees them at test time: (1, T_in, D) on its device."""
    sampling, length = model.config.localization.test_sampling, model.config.network.num_segments
    x = torch.from_numpy(inference_input(features, sampling, length)).unsqueeze(0)
    return x.to(next(model.parameters()).device)


@torch.inference_mode()
def infer(model: Method, features: np.ndarray) -> VideoScores:
    """A whole video's features (T, D) -> the model's scores at its test-time input length."""
    out = model.eval()(model_input(model, features))
    actionness = None if out.actionness is None else out.actionness[0].float().cpu().numpy()
    return VideoScores(out.video_scores[0].float().cpu().numpy(), out.cas[0].float().cpu().numpy(), actionness)


@dataclass
class Localized:
    """One video through a model: its raw scores, timing and detections."""

    scores: VideoScores
    timing: VideoTiming
    detections: list[Detection]


def localize_rows(model: Method, rows: np.ndarray, timing: VideoTiming) -> Localized:
    """A whole video's feature rows -> scores -> detections (``wtal test``, ``wtal localize``, the annotation page)."""
    scores = infer(model, rows)
    return Localized(scores, timing, localize(scores, model.config.localization, timing))


@contextmanager
def score_writer(path: Path) -> Iterator[Callable[[str, Localized], None]]:
    """Raw scores and timing of each video, added one video at a time to an .npz (written atomically when
    the block ends), so thresholds and NMS can be re-tuned and plots drawn without the model, and a test set
    of any size never sits in memory."""
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:

        def add(vid: str, result: Localized) -> None:
            s = result.scores
            arrays = {"cas": s.cas, "video_scores": s.video_scores, "timing": result.timing.to_array()}
            if s.actionness is not None:
                arrays["actionness"] = s.actionness
            for name, array in arrays.items():
                with archive.open(f"{vid}/{name}.npy", "w", force_zip64=True) as fh:
                    np.lib.format.write_array(fh, np.asarray(array), allow_pickle=False)

        yield add


def load_scores(path: Path) -> tuple[dict[str, VideoScores], dict[str, VideoTiming]]:
    raw = np.load(path)
    vids = sorted({key.rsplit("/", 1)[0] for key in raw.files})
    scores, timings = {}, {}
    for vid in vids:
        actionness = raw[f"{vid}/actionness"] if f"{vid}/actionness" in raw.files else None
        scores[vid] = VideoScores(raw[f"{vid}/video_scores"], raw[f"{vid}/cas"], actionness)
        timings[vid] = VideoTiming.from_array(raw[f"{vid}/timing"])
    return scores, timings


def check_feature_dim(dataset: Dataset, meta: RunMeta) -> None:
    if dataset.feature_dim != meta.feature_dim:
        raise DataError(
            f"features are {dataset.feature_dim}-d but the model was trained on {meta.feature_dim}-d",
            "use features from the extractor the run was trained with",
            dataset.data_dir,
        )


@dataclass
class QuietVideos:
    """Videos in which no class reached the class threshold (so they have no detections): counted as they
    come, so a test set of any size is summed up in one sentence without keeping its scores."""

    settings: LocalizationSettings
    seen: int = 0
    quiet: int = 0
    top: float = float("-inf")  # the highest video score among the quiet videos

    def add(self, video_scores: np.ndarray) -> None:
        self.seen += 1
        if selected_classes(video_scores, self.settings).size == 0:
            self.top = max(self.top, float(video_scores.max()))
            self.quiet += 1

    def message(self) -> str | None:
        """How many videos got no class, the highest video score seen among them and the setting to change."""
        if not self.quiet:
            return None
        where = "any video" if self.quiet == self.seen else f"{self.quiet} of {self.seen} videos"
        lower = max(0.0, np.floor(self.top * 90) / 100)
        return (
            f"no class reached class_threshold {self.settings.class_threshold:g} in {where} (highest video score "
            f"there {self.top:.3g}), so {'they have' if self.quiet > 1 else 'it has'} no detections: try --set "
            f"class_threshold={lower:g}"
        )


def localize_dataset(
    model: Method,
    meta: RunMeta,
    data_dir: Path,
    subset: str,
    scores_out: Path | None = None,
    report: Callable[[str], None] | None = None,
    on_video: Callable[[int, int], None] | None = None,
) -> DetectionTable:
    """Detections of every video of a subset, one video in memory at a time; optionally saves the raw
    scores. ``report`` hears why videos have no detections, if some have none for want of a class;
    ``on_video(done, total)`` after each video."""
    dataset = Dataset(data_dir, subset, classes=meta.classes)
    check_feature_dim(dataset, meta)
    table = DetectionTable(meta.classes, {"method": meta.method, "subset": subset, "checkpoint": meta.checkpoint})
    quiet = QuietVideos(model.config.localization)
    with score_writer(scores_out) if scores_out is not None else nullcontext(None) as save:
        for video in dataset.videos:
            rows = video.load()
            result = localize_rows(model, rows, video.timing(rows.shape[0]))
            table.add(video.vid, result.detections)
            quiet.add(result.scores.video_scores)
            if save is not None:
                save(video.vid, result)
            if on_video is not None:
                on_video(quiet.seen, len(dataset.videos))
    why = quiet.message()
    if why and report:
        report(why)
    return table


@dataclass
class ClipResult:
    clip: Path
    result: Localized | None
    error: str | None = None


def clip_extraction(meta: RunMeta, **overrides: object) -> ExtractionConfig:
    """How to extract new clips for a run: as its training features were (the defaults for imported or
    generated features), with ``overrides`` (e.g. ``preset="dis"``, ``rgb_weights=...``) applied."""
    return (meta.extraction or ExtractionConfig()).replace(**{k: v for k, v in overrides.items() if v is not None})


def localize_clips(
    clips: list[Path],
    model: Method,
    meta: RunMeta,
    extraction: ExtractionConfig,
    *,
    cache_dir: Path,
    workers: int,
    device: str = "auto",
) -> list[ClipResult]:
    """Raw clips -> decode -> flow -> I3D (through the extraction cache in ``cache_dir``) -> detections.

    A clip that fails to decode is reported in its result and the others go on.
    """
    from ..features.extract import ExtractJob, extract_all
    from ..features.i3d import FEATURE_DIM
    from ..features.two_stream import I3DPair

    if meta.feature_dim != 2 * FEATURE_DIM:
        raise DataError(
            f"the run was trained on {meta.feature_dim}-d features, a clip gives {2 * FEATURE_DIM}-d "
            "two-stream I3D features",
            "localize with a run trained on wtal extract features",
            meta.data_dir,
        )
    extractor = I3DPair.load(extraction.features, device)
    results = []
    for outcome in extract_all(clips, ExtractJob.of(cache_dir, extraction, workers=workers), extractor):
        if outcome.features is None:
            results.append(ClipResult(outcome.video, None, error=outcome.error))
            continue
        features = np.load(outcome.features)
        provenance, rows_timing = Provenance.read(outcome.features), declared_timing(outcome.features)
        duration = float(provenance.duration or rows_timing.span(features.shape[0]))
        frame_rate = provenance.source_fps or rows_timing.fps or DEFAULT_FPS
        timing = VideoTiming.of(features.shape[0], rows_timing, duration, frame_rate)
        results.append(ClipResult(outcome.video, localize_rows(model, features, timing)))
    return results
