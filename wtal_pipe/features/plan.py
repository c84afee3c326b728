"""One video's extraction plan: which file, where each stage's output lives, and the keys that say when a
cached output can be reused.

Every route (one machine, the streamed device route, the Dask tasks) works from a :class:`VideoPlan`,
so they share cached work by construction: nothing outside this module builds a stage key or a path
under ``DATA_DIR/cache/<video>/``. A plan is frozen and picklable (a cluster sends it to its workers).

Keys chain: frames from the video's content fingerprint and the decode settings; flow from the frames
key and the flow settings; features from the flow key, the chunk size, the precision and the weights.
A changed setting therefore recomputes exactly the stages downstream of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from ..cache import file_identity, stage_key
from ..errors import VideoError
from ..layout import DataLayout, safe_name
from .config import ExtractionConfig

Stage = Literal["frames", "flow", "features"]
STAGES: tuple[Stage, ...] = get_args(Stage)


def stages_to_recompute(force: bool | frozenset[Stage]) -> frozenset[Stage]:
    """``force``: True recomputes every stage; a set names the stages."""
    return frozenset(STAGES) if force is True else frozenset(force or ())


@dataclass(frozen=True)
class FeatureIdentity:
    """What, besides the flow, decides the feature values: the precision and each stream's weights
    (their sha256, or the seed of random weights)."""

    precision: str
    rgb: str
    flow: str


@dataclass(frozen=True)
class StageKeys:
    frames: str
    flow: str
    features: str

    @classmethod
    def derive(cls, fingerprint: str, extraction: ExtractionConfig, features: FeatureIdentity) -> StageKeys:
        # "decode" salts the frames key: the stage's first name, kept so that existing caches stay valid
        frames = stage_key("decode", fingerprint, extraction.decode.identity())
        flow = stage_key("flow", frames, extraction.flow)
        weights = {"rgb": features.rgb, "flow": features.flow}
        layout = extraction.features.layout()  # stride, crops, rows: in the key only when not the default
        config = [extraction.features.chunk, features.precision, weights, *([layout] if layout else [])]
        return cls(frames, flow, stage_key("features", flow, *config))


@dataclass(frozen=True)
class CacheEntry:
    """A cached stage output and the record beside it (size, sha256 and what produced it)."""

    data: Path
    record: Path


@dataclass(frozen=True)
class VideoCache:
    """Paths of one video's entries under ``DATA_DIR/cache/<stem>/``."""

    folder: Path

    def frames(self, key: str) -> CacheEntry:
        return CacheEntry(self.folder / f"frames-{key}.npy", self.folder / f"frames-{key}.json")

    def flow(self, key: str) -> CacheEntry:
        return CacheEntry(self.folder / f"flow-{key}.npy", self.folder / f"flow-{key}.json")

    def flow_part(self, key: str, start: int, stop: int) -> CacheEntry:
        """Flow of frames ``start..stop-1`` (a long video's flow split over cluster workers)."""
        stem = f"flow-{key}.{start}-{stop}"
        return CacheEntry(self.folder / f"{stem}.npy", self.folder / f"{stem}.json")

    def flow_parts(self, key: str) -> list[Path]:
        """Every part file of one flow key still on disk."""
        return sorted(self.folder.glob(f"flow-{key}.*-*.npy"))

    def browser_copy(self, fingerprint: str) -> Path:
        """An H.264 copy of the video for the annotation page."""
        return self.folder / f"browser-{fingerprint}.mp4"


def video_cache(layout: DataLayout, vid: str) -> VideoCache:
    return VideoCache(layout.cache(vid))


def video_identity(video: Path) -> str:
    """The video's content fingerprint, or a one-line error when it cannot be read."""
    try:
        return file_identity(video)
    except FileNotFoundError as exc:
        raise VideoError("file not found", "check the path", video) from exc
    except OSError as exc:
        raise VideoError(
            f"cannot be read ({exc.strerror or exc.__class__.__name__})", "check its permissions, or remove it", video
        ) from exc


@dataclass(frozen=True)
class VideoPlan:
    """Everything the stages need to know about one video of one extraction."""

    video: Path
    layout: DataLayout
    stem: str  # the name its outputs are stored under
    fingerprint: str  # its content fingerprint
    extraction: ExtractionConfig
    keys: StageKeys
    forced: frozenset[Stage] = frozenset()  # stages recomputed even when cached

    @classmethod
    def build(
        cls,
        video: Path,
        data_dir: Path,
        extraction: ExtractionConfig,
        features: FeatureIdentity,
        force: bool | frozenset[Stage] = False,
    ) -> VideoPlan:
        """Reads the video's fingerprint (a one-line error when it cannot be read)."""
        video = Path(video)
        stem = safe_name(video.stem, "video file name", video)
        fingerprint = video_identity(video)
        keys = StageKeys.derive(fingerprint, extraction, features)
        return cls(video, DataLayout(Path(data_dir)), stem, fingerprint, extraction, keys, stages_to_recompute(force))

    @property
    def cache(self) -> VideoCache:
        return video_cache(self.layout, self.stem)

    @property
    def frames(self) -> CacheEntry:
        return self.cache.frames(self.keys.frames)

    @property
    def flow(self) -> CacheEntry:
        return self.cache.flow(self.keys.flow)

    def flow_part(self, start: int, stop: int) -> CacheEntry:
        return self.cache.flow_part(self.keys.flow, start, stop)

    @property
    def features(self) -> CacheEntry:
        """The feature file and its provenance record."""
        return CacheEntry(self.layout.features(self.stem), self.layout.provenance(self.stem))

    def reuses(self, stage: Stage) -> bool:
        """Whether a cached output of ``stage`` may be reused (it is not forced)."""
        return stage not in self.forced
