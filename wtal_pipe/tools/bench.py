"""``wtal bench``: throughput and memory of every stage on generated clips and features, each next to a
naive baseline measured in the same run, written as BENCHMARKS.md (and JSON).

The naive baseline is what a one-off script does: decode the whole video into memory, run OpenCV's
TV-L1 pair after pair in one process (OpenCV's own threads, its default), and I3D in fp32 one chunk at
a time. Numbers are never asserted in tests; ``--quick`` runs every section at toy sizes in seconds
(CI's smoke test).
"""

from __future__ import annotations

import concurrent.futures
import datetime
import json
import multiprocessing
import os
import platform
import resource
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import WtalError
from ..features.config import ExtractionConfig, FeatureConfig
from ..features.provenance import DEFAULT_FPS, DEFAULT_SECONDS_PER_ROW
from ..video.decode import DecodeConfig
from ..video.flow_engines import FlowConfig
from .bench_report import Measure, Section, markdown
from .bench_sections import BENCH_SECTIONS, DEFAULT_SECTIONS, BenchSection
from .shaped import narrowed

PrintFn = Callable[[str], None]


@dataclass(frozen=True)
class Sizes:
    """How big each measurement is (``quick``: toy sizes for a smoke test)."""

    clip_seconds: float
    source: tuple[int, int]
    flow_crop: int
    flow_pairs: int
    torch_batches: tuple[int, ...]
    i3d_crop: int
    i3d_batch: int
    i3d_batches: int
    end_to_end_crop: int
    memory_seconds: tuple[float, float]
    memory_crop: int
    memory_flow: str  # a flow preset
    train_steps: int
    thumos_train: bool
    localize_videos: int
    localize_dim: int  # feature width (and hidden width) of the localize section's models
    recipe_seconds: float = 4.0  # the clip each extraction recipe runs on (ten crops cost 40x the default's I3D)
    scale_videos: tuple[int, int] = (1_500, 15_000)  # ActivityNet 1.3 has ~15,000 videos
    scale_dim: int = 2048
    scale_steps: int = 100

    @classmethod
    def pick(cls, quick: bool, gpu: bool) -> Sizes:
        """Toy sizes (``quick``), GPU sizes, or this CPU's."""
        if quick:
            return cls(
                clip_seconds=1.0, source=(160, 120), flow_crop=64, flow_pairs=4, torch_batches=(1, 2), i3d_crop=64,
                i3d_batch=1, i3d_batches=1, end_to_end_crop=64, memory_seconds=(1.0, 3.0), memory_crop=32,
                memory_flow="dis", train_steps=2, thumos_train=False, localize_videos=8, localize_dim=64,
                scale_videos=(30, 300), scale_dim=16, scale_steps=3, recipe_seconds=1.0,
            )  # fmt: skip
        if gpu:
            return cls(
                clip_seconds=30.0, source=(640, 360), flow_crop=224, flow_pairs=256, torch_batches=(8, 32, 64, 128),
                i3d_crop=224, i3d_batch=32, i3d_batches=8, end_to_end_crop=224, memory_seconds=(60.0, 600.0),
                memory_crop=224, memory_flow="tvl1-torch", train_steps=20, thumos_train=True, localize_videos=210,
                localize_dim=2048, recipe_seconds=30.0,
            )  # fmt: skip
        return cls(
            clip_seconds=20.0, source=(640, 360), flow_crop=224, flow_pairs=60, torch_batches=(1, 4), i3d_crop=224,
            i3d_batch=8, i3d_batches=2, end_to_end_crop=224, memory_seconds=(60.0, 600.0), memory_crop=64,
            memory_flow="dis", train_steps=3, thumos_train=True, localize_videos=210, localize_dim=2048,
        )  # fmt: skip


def machine() -> dict[str, Any]:
    """The machine and library versions a number was measured with."""
    import av
    import cv2
    import torch

    from .. import __version__

    cpu, flags = platform.processor() or "unknown", set[str]()
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    info: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "cpu": cpu,
        # float results of fp32 kernels differ between these (the demo's numbers do): the widest vector unit
        "vector_isa": next((isa for isa in ("avx512f", "avx2", "neon") if isa in flags), "other"),
        "cores": len(os.sched_getaffinity(0)),
        "memory_gib": round(memory_gib, 1),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "wtal_pipe": __version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "opencv": cv2.__version__,
        "av": av.__version__,
        "numpy": np.__version__,
    }
    return info


@contextmanager
def timer() -> Iterator[list[float]]:
    """``with timer() as t: ...`` then ``t[0]`` is the elapsed seconds."""
    elapsed: list[float] = []
    start = time.perf_counter()
    yield elapsed
    elapsed.append(time.perf_counter() - start)


def generated_clip(path: Path, seconds: float, size: tuple[int, int]) -> Path:
    """A 30 fps clip with a textured background and a planted moving shape (flow has work to do)."""
    from .synthetic import ACTION_STYLES, PlantedAction, render_frames, write_video

    frames = render_frames(seconds, 30.0, size[0], size[1], [PlantedAction(ACTION_STYLES[0], 0.0, seconds)], pan=1.0)
    return write_video(path, frames, fps=30.0)


def decoded_frames(clip: Path, crop: int) -> np.ndarray:
    from ..video.decode import iter_frames

    return np.stack([f.rgb for f in iter_frames(clip, DecodeConfig(short_side=crop, crop=crop))])


# --- the naive baseline ------------------------------------------------------------------------------


def naive_features(clip: Path, extraction: ExtractionConfig) -> np.ndarray:
    """Decode everything into memory, OpenCV TV-L1 pair by pair in this process, I3D fp32 one chunk at a
    time: the same arithmetic as the pipeline, none of its engineering."""
    from ..features.two_stream import I3DPair
    from ..video.decode import iter_frames
    from ..video.flow import quantize
    from ..video.flow_engines import make_flow_engine

    frames = [frame.rgb for frame in iter_frames(clip, extraction.decode)]
    engine = make_flow_engine("tvl1")
    flows = [
        quantize(engine.pairs(np.stack(frames[i : i + 2]))[0], extraction.flow.bound) for i in range(len(frames) - 1)
    ]
    flows.append(flows[-1])
    model = I3DPair.load(FeatureConfig(precision="fp32"), "cpu")
    chunk = extraction.features.chunk
    rows = [
        model(np.stack(frames[k : k + chunk])[None], np.stack(flows[k : k + chunk])[None])[0]
        for k in range(0, len(frames) - chunk + 1, chunk)
    ]
    return np.stack(rows)


# --- sections ------------------------------------------------------------------------------------------


def bench_decode(clip: Path, sizes: Sizes) -> Section:
    from ..video.decode import iter_frames

    config = DecodeConfig()
    with timer() as streamed:
        count = sum(1 for _ in iter_frames(clip, config))
    with timer() as whole:
        frames = [f.rgb for f in iter_frames(clip, config)]
    section = Section(
        "Decode", f"generated {sizes.source[0]}x{sizes.source[1]} 30 fps H.264 clip -> 25 fps, short side 256, crop 224"
    )
    section.measures.append(
        Measure(
            "frames/s, streamed (naive: the whole video into memory)",
            count / streamed[0],
            "frames/s",
            len(frames) / whole[0],
        )
    )
    return section


def bench_flow(frames: np.ndarray, sizes: Sizes, device: str) -> Section:
    """OpenCV presets in 1..N worker processes and tvl1-torch per batch size, all on the same pairs."""
    from ..video.flow import compute_flow, default_workers
    from ..video.flow_engines import make_flow_engine

    pairs = frames[: sizes.flow_pairs + 1]
    section = Section(
        "Optical flow",
        f"{len(pairs) - 1} consecutive pairs of the generated clip at {sizes.flow_crop}x{sizes.flow_crop}; "
        "naive: OpenCV TV-L1 in one process with OpenCV's default threads",
    )
    engine = make_flow_engine("tvl1")
    with timer() as naive:
        for i in range(len(pairs) - 1):
            engine.pairs(pairs[i : i + 2])
    naive_rate = (len(pairs) - 1) / naive[0]
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "frames.npy"
        np.save(source, pairs)
        for preset in ("tvl1", "tvl1-fast", "dis"):
            for workers in range(1, default_workers() + 1):
                # the worker pool lives across videos: start it before timing, as the second video finds it
                compute_flow(source, Path(tmp) / "flow.npy", FlowConfig("dis"), workers=workers)
                with timer() as took:
                    compute_flow(source, Path(tmp) / "flow.npy", FlowConfig(preset), workers=workers)
                baseline = naive_rate if preset == "tvl1" else None
                rate = (len(pairs) - 1) / took[0]
                section.measures.append(Measure(f"{preset}, {workers} worker(s)", rate, "pairs/s", baseline))
        for batch in sizes.torch_batches:
            with timer() as took:
                compute_flow(
                    source,
                    Path(tmp) / "flow.npy",
                    FlowConfig("tvl1-torch"),
                    workers=1,
                    device=device,
                    batch_pairs=batch,
                )
            rate = (len(pairs) - 1) / took[0]
            section.measures.append(Measure(f"tvl1-torch on {device}, batch {batch}", rate, "pairs/s", naive_rate))
    return section


def bench_i3d(sizes: Sizes, device: str) -> Section:
    import torch

    from ..device import cpu_has_native_bf16
    from ..features.two_stream import I3DPair

    crop, batch = sizes.i3d_crop, sizes.i3d_batch
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (batch, 16, crop, crop, 3), dtype=np.uint8)
    flows = rng.integers(100, 156, (batch, 16, crop, crop, 2), dtype=np.uint8)
    section = Section(
        "I3D features",
        f"random-weight InceptionV1 I3D, 16x{crop}x{crop} chunks, batch {batch}; naive: fp32, one chunk at a time",
    )
    naive_model = I3DPair.load(FeatureConfig(precision="fp32"), device)
    naive_model(frames[:1], flows[:1])
    with timer() as naive:
        for k in range(batch):
            naive_model(frames[k : k + 1], flows[k : k + 1])
    naive_rate = batch / naive[0]
    on_gpu = naive_model.device.type == "cuda"
    precisions = ["fp32", "bf16"] if on_gpu or cpu_has_native_bf16() else ["fp32"]
    for precision in precisions:
        model = I3DPair.load(FeatureConfig(precision=precision), device)
        model(frames, flows)  # warm-up: kernel selection, allocator
        for stream in ("rgb", "flow"):
            net, data = (model.rgb, frames) if stream == "rgb" else (model.flow, flows)
            tensor = torch.from_numpy(data).to(model.device).permute(0, 4, 1, 2, 3).float()
            tensor = tensor.contiguous(memory_format=torch.channels_last_3d)
            with torch.inference_mode(), timer() as took:
                for _ in range(sizes.i3d_batches):
                    with torch.autocast(model.device.type, torch.bfloat16, enabled=precision == "bf16"):
                        net.features(tensor)
                if on_gpu:
                    torch.cuda.synchronize()
            rate = sizes.i3d_batches * batch / took[0]
            section.measures.append(Measure(f"{stream} stream alone, {precision}", rate, "chunks/s"))
        with timer() as took:
            for _ in range(sizes.i3d_batches):
                model(frames, flows)
        rate = sizes.i3d_batches * batch / took[0]
        section.measures.append(
            Measure(f"both streams as the pipeline runs them, {precision}", rate, "chunks/s", naive_rate)
        )
    return section


def bench_end_to_end(clip: Path, sizes: Sizes, device: str, workdir: Path) -> Section:
    """The pipeline (streamed decode, flow workers, batched I3D) against the naive script, on one clip
    with the published settings (TV-L1); the features must come out the same."""
    from ..features.extract import ExtractJob, extract_video
    from ..features.two_stream import I3DPair
    from ..video.flow import default_workers

    crop = sizes.end_to_end_crop
    extraction = ExtractionConfig(
        DecodeConfig() if crop == DecodeConfig().crop else DecodeConfig(short_side=crop, crop=crop)
    )
    minutes = sizes.clip_seconds / 60
    with timer() as naive:
        reference = naive_features(clip, extraction)
    model = I3DPair.load(extraction.features, device)
    with timer() as ours:
        outcome = extract_video(clip, ExtractJob.of(workdir / "e2e", extraction, workers=default_workers()), model)
    if outcome.features is None:
        raise WtalError(f"benchmark extraction failed: {outcome.error}")
    rows = np.load(outcome.features)
    same = rows.shape == reference.shape and bool(np.array_equal(rows, reference))
    gap = float(np.abs(rows - reference).max()) if rows.shape == reference.shape else float("inf")
    section = Section(
        "End to end",
        f"{sizes.clip_seconds:g} s generated clip, TV-L1 flow, {crop}x{crop}, random I3D weights; features "
        + ("identical to the naive script's" if same else f"differ from the naive script's by at most {gap:.2e}"),
    )
    timings = {"tvl1": ours[0]}
    if model.device.type == "cuda":  # flow and I3D on the GPU, fed from the decoder
        torch_extraction = extraction.replace(preset="tvl1-torch")
        with timer() as gpu:
            extract_video(clip, ExtractJob.of(workdir / "e2e-torch", torch_extraction), model)
        timings["tvl1-torch"] = gpu[0]
    for preset, seconds in timings.items():
        section.measures.append(
            Measure(f"seconds per video-minute, {preset}", seconds / minutes, "s", naive[0] / minutes, False)
        )
        real_time = sizes.clip_seconds / seconds
        section.measures.append(Measure(f"x real time, {preset}", real_time, "x", sizes.clip_seconds / naive[0]))
    return section


def bench_recipes(sizes: Sizes, device: str, workdir: Path, quick: bool) -> Section:
    """Each extraction recipe (``wtal extract --recipe``) end to end on one clip: what matching a release
    costs per video-minute. ``quick`` shrinks every recipe to 64x64 frames, one crop and DIS flow (a smoke
    test of the section, not a measurement of the recipes)."""
    from ..features.extract import ExtractJob, extract_video
    from ..features.recipes import RECIPES
    from ..features.two_stream import I3DPair
    from ..video.flow import default_workers

    toy = {"short_side": 64, "crop": 64, "resize": None, "crops": "center", "preset": "dis"} if quick else {}
    section = Section(
        "Extraction recipes",
        f"{sizes.recipe_seconds:g} s generated 30 fps clip, each recipe's own settings (TV-L1 flow in "
        f"{default_workers()} workers), random I3D weights"
        + ("; toy sizes: 64x64 frames, one crop, DIS flow" if quick else ""),
    )
    clip = generated_clip(workdir / "recipes.mp4", sizes.recipe_seconds, sizes.source)
    model = I3DPair.load(FeatureConfig(), device)
    for name, recipe in RECIPES.items():
        extraction = recipe.extraction().replace(**toy)
        job = ExtractJob.of(workdir / f"recipe-{name}", extraction, workers=default_workers())
        with timer() as took:
            outcome = extract_video(clip, job, model)
        if outcome.features is None:
            raise WtalError(f"benchmark extraction with recipe {name} failed: {outcome.error}")
        rows = np.load(outcome.features).shape[0]
        per_minute = took[0] / (sizes.recipe_seconds / 60)
        section.measures.append(
            Measure(
                f"seconds per video-minute, {name} ({rows} row{'' if rows == 1 else 's'})", per_minute, "s", None, False
            )
        )
    return section


def _peak_rss_of_extraction(clip: str, data_dir: str, extraction: dict, device: str) -> float:
    """In a fresh process: extract one clip and return this process's peak RSS in MiB."""
    from joblib.externals.loky import get_reusable_executor

    from ..features.extract import ExtractJob, extract_video
    from ..features.two_stream import I3DPair
    from ..video.flow import default_workers

    config = ExtractionConfig.from_dict(extraction)
    model = I3DPair.load(config.features, device)
    extract_video(Path(clip), ExtractJob.of(Path(data_dir), config, workers=default_workers()), model)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    get_reusable_executor().shutdown(wait=True)  # else this pool process waits out the idle flow workers
    return peak


def bench_memory(sizes: Sizes, device: str, workdir: Path) -> Section:
    """Peak RSS of extracting a short and a 10x longer clip: streaming keeps it flat."""
    crop = sizes.memory_crop
    extraction = ExtractionConfig(DecodeConfig(short_side=crop, crop=crop), FlowConfig(sizes.memory_flow))
    section = Section(
        "Memory",
        f"peak RSS of the extracting process (flow workers are separate processes), {crop}x{crop}, "
        f"{sizes.memory_flow} flow, generated 320x240 clips",
    )
    routes = {"": extraction}
    if device == "cuda":  # the route fed straight from the decoder, flow on the GPU
        routes[", tvl1-torch on the GPU"] = extraction.replace(preset="tvl1-torch")
    context = multiprocessing.get_context("spawn")
    for seconds in sizes.memory_seconds:
        clip = generated_clip(workdir / f"memory_{seconds:g}s.mp4", seconds, (320, 240))
        for label, config in routes.items():
            with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
                job = pool.submit(
                    _peak_rss_of_extraction,
                    str(clip),
                    str(workdir / f"memory_{seconds:g}_{config.flow.preset}"),
                    config.to_dict(),
                    device,
                )
                rss = job.result()
            section.measures.append(Measure(f"{seconds:g} s clip{label}", rss, "MiB", higher_is_better=False))
    return section


HELD_OUT_VIDEOS = 40  # THUMOS14's 200 validation videos, a fifth held out (--val 0.2)


def _training_data(
    folder: Path, videos: int, rows: int, dim: int, classes: int, held_out: int = 0, seed: int = 0
) -> Path:
    """``videos`` training videos and ``held_out`` more in subset ``val``, random rows, one segment each."""
    from ..cache import atomic_write_json
    from ..data.timing import I3D_TIMING
    from ..layout import DataLayout

    layout = DataLayout(folder)
    rng = np.random.default_rng(seed)
    layout.features_dir.mkdir(parents=True, exist_ok=True)
    database = {}
    for index in range(videos + held_out):
        vid = f"v{index:03d}"
        np.save(layout.features(vid), rng.normal(size=(rows, dim)).astype(np.float32))
        label = f"class{index % classes}"
        seconds = rows * DEFAULT_SECONDS_PER_ROW
        database[vid] = {
            "subset": "train" if index < videos else "val",
            "duration": seconds,
            "annotations": [{"label": label, "segment": [0.2 * seconds, 0.6 * seconds]}],
        }
    atomic_write_json(layout.annotations, {"database": database})
    atomic_write_json(layout.timing_declaration, I3D_TIMING.to_dict())
    return folder


def bench_training(sizes: Sizes, device: str, workdir: Path) -> Section:
    """Optimizer steps per second of the real trainer, each method at its official batch, on random
    features: THUMOS size (750 rows, 2048-d, hidden 2048) and the quick CPU size (64-d, hidden 64); and
    what one held-out evaluation (``--val``, 40 videos as THUMOS14's validation fifth) costs against the
    100 training steps between two evaluations at ``--eval-every 100``."""
    from ..methods import get_method
    from ..methods.names import METHOD_NAMES
    from ..training.train import TrainOptions, train

    shapes = [("THUMOS size: T 750, D 2048, hidden 2048", 2048, 2048)] if sizes.thumos_train else []
    shapes.append(("small: T 750, D 64, hidden 64", 64, 64))
    section = Section(
        "Training",
        f"`wtal train` on 32 random-feature videos of 750 rows, {sizes.train_steps} steps after one warm-up "
        "step; a step is one optimizer step at the method's official batch (BaS-Net, UM, BackTAL, CASE 16 videos; "
        "CMCS 24 whole videos); held-out evaluation: once after the last step, on 40 more such videos "
        "(forward, localization, mAP and loss terms), as a share of 100 steps",
    )
    for label, dim, hidden in shapes:
        data = _training_data(workdir / f"train_{dim}", 32, 750, dim, 4, held_out=HELD_OUT_VIDEOS)
        for method in METHOD_NAMES:
            steps = sizes.train_steps + 1
            overrides = {"iterations": steps, **narrowed(get_method(method), hidden)}
            run = workdir / f"run_{method}_{dim}"
            options = TrainOptions(
                method, data, run, device=device, simulate_clicks=True, val="val", eval_every=steps, overrides=overrides
            )
            run_dir = train(options).parent
            log = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
            rate = sizes.train_steps / (log[-1]["seconds"] - log[0]["seconds"])
            (evaluation,) = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
            section.measures.append(Measure(f"{method}, {label}", rate, "steps/s"))
            share = 100 * evaluation["seconds"] / (100 / rate)
            what = f"{method}, {label}: one held-out evaluation / 100 steps"
            section.measures.append(Measure(what, share, "%", higher_is_better=False))
    return section


def _activitynet_sized(folder: Path, videos: int, dim: int, seed: int = 0) -> Path:
    """An ActivityNet-1.3-shaped DATA_DIR: 2/3 ``training``, 1/3 ``validation`` (its 10,024 / 4,926), 200
    classes, 100-200 random I3D rows per video (ActivityNet's 30-240 s at 16 frames / 25 fps), one segment
    each; written once, a video at a time."""
    from ..cache import atomic_write_json
    from ..data.timing import I3D_TIMING
    from ..layout import DataLayout

    layout = DataLayout(folder)
    rng = np.random.default_rng(seed)
    layout.features_dir.mkdir(parents=True, exist_ok=True)
    database = {}
    for index in range(videos):
        vid = f"v{index:05d}"
        rows = int(rng.integers(100, 201))
        np.save(layout.features(vid), rng.standard_normal((rows, dim), dtype=np.float32))
        seconds = rows * DEFAULT_SECONDS_PER_ROW
        database[vid] = {
            "subset": "validation" if index % 3 == 2 else "training",
            "duration": seconds,
            "annotations": [{"label": f"class{index % 200}", "segment": [0.3 * seconds, 0.7 * seconds]}],
        }
    atomic_write_json(layout.annotations, {"database": database})
    atomic_write_json(layout.timing_declaration, I3D_TIMING.to_dict())
    return folder


def _peak_rss_of_command(args: list[str]) -> tuple[float, float]:
    """Peak RSS (MiB) and wall seconds of ``python -m wtal_pipe ARGS`` in its own process."""
    import subprocess
    import sys

    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "wtal_pipe", *args], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise WtalError(f"wtal {args[0]} failed (exit {child.returncode}) while benchmarking")
    return usage.ru_maxrss / 1024, time.perf_counter() - start


def bench_scale(sizes: Sizes, device: str, workdir: Path) -> Section:
    """Peak RSS of ``wtal train`` and ``wtal test`` and the time of one training step on an ActivityNet-1.3-
    shaped set and on a tenth of it: features are read per batch and scores streamed, so neither grows with
    the number of videos."""
    small, large = sizes.scale_videos
    section = Section(
        "ActivityNet scale",
        f"{small:,} and {large:,} videos of 100-200 random {sizes.scale_dim}-d rows (2/3 training, 1/3 "
        f"validation, 200 classes); `wtal train --method um --preset activitynet1.3 --iters {sizes.scale_steps}` "
        "(T 50, batch 16, hidden 2048) and `wtal test` on validation, each in its own process, the first "
        "command on a new DATA_DIR (every feature file checked once)",
    )
    for videos in (small, large):
        data = _activitynet_sized(workdir / f"anet_{videos}", videos, sizes.scale_dim)
        run = workdir / f"anet_run_{videos}"
        common = ["--data", str(data), "--device", device]
        train_rss, _ = _peak_rss_of_command(
            ["train", "--method", "um", "--preset", "activitynet1.3", "--iters", str(sizes.scale_steps),
             "--out", str(run), *common]
        )  # fmt: skip
        log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
        step = (log[-1]["seconds"] - log[0]["seconds"]) / (len(log) - 1)
        test_rss, test_seconds = _peak_rss_of_command(
            ["test", "--run", str(run), "--out", str(workdir / f"anet_dets_{videos}.json"), *common]
        )
        section.measures += [
            Measure(f"{videos:,} videos: wtal train peak RSS", train_rss, "MiB", higher_is_better=False),
            Measure(f"{videos:,} videos: one training step", 1000 * step, "ms", higher_is_better=False),
            Measure(f"{videos:,} videos: wtal test peak RSS", test_rss, "MiB", higher_is_better=False),
            Measure(f"{videos:,} videos: wtal test wall", test_seconds, "s", higher_is_better=False),
        ]
        shutil.rmtree(data)
    return section


def thumos_like_durations(count: int, gt: Path | None) -> list[float]:
    """Test-video durations from an annotation file with durations (e.g. THUMOS14's), or drawn like them."""
    if gt is not None:
        from ..data.annotations import load_annotations

        database = load_annotations(gt)
        found = [float(v["duration"]) for v in database.values() if v.get("subset") == "test" and v.get("duration")]
        if not found:
            raise WtalError("no test video with a duration", "pass an annotation file with durations", gt)
        return found[:count]
    return list(np.random.default_rng(0).lognormal(np.log(150.0), 0.8, count).clip(20.0, 1600.0))


def _localize_test_set(durations: list[float], classes: list[str], dim: int) -> tuple[list[str], dict, dict, dict]:
    """Video ids, ground truth (one segment each), random features and timings of a test set."""
    from ..data.timing import I3D_TIMING, VideoTiming

    rng = np.random.default_rng(0)
    vids = [f"v{i}" for i in range(len(durations))]
    database, features, timings = {}, {}, {}
    for i, (vid, d) in enumerate(zip(vids, durations, strict=True)):
        database[vid] = {
            "subset": "test",
            "duration": d,
            "annotations": [{"label": classes[i % len(classes)], "segment": [0.1 * d, 0.3 * d]}],
        }
        features[vid] = rng.normal(size=(max(2, int(d / DEFAULT_SECONDS_PER_ROW)), dim)).astype(np.float32)
        timings[vid] = VideoTiming.of(len(features[vid]), I3D_TIMING, d, DEFAULT_FPS)
    return vids, database, features, timings


def bench_localize(sizes: Sizes, device: str, gt: Path | None, durations: list[float] | None = None) -> Section:
    """Model -> scores, scores -> detections and detections -> mAP for a test set of THUMOS14 length,
    every method with its official test settings, random weights and features (many proposals)."""
    import torch

    from ..evaluation.evaluate import THUMOS_TIOU, evaluate
    from ..inference.detections import DetectionTable
    from ..inference.localize import localize
    from ..inference.pipeline import infer
    from ..methods import get_method
    from ..methods.names import METHOD_NAMES

    durations = durations or thumos_like_durations(sizes.localize_videos, gt)
    classes = [f"class{c}" for c in range(min(20, len(durations)))]  # every class has ground truth
    vids, database, features, timings = _localize_test_set(durations, classes, sizes.localize_dim)
    source = "real durations from " + Path(gt).name if gt else "durations drawn like THUMOS14's"
    section = Section(
        "Localize and evaluate",
        f"{len(durations)} test videos ({source}, {sum(durations) / 3600:.1f} h), {len(classes)} classes, "
        f"{sizes.localize_dim}-d features, random weights, each video's ground-truth class selected",
    )
    for method in METHOD_NAMES:
        cls = get_method(method)
        torch.manual_seed(0)
        model = cls(sizes.localize_dim, len(classes), cls.configure(narrowed(cls, sizes.localize_dim))).to(device)
        with timer() as inference:
            scores = {vid: infer(model, rows) for vid, rows in features.items()}
        # a trained model selects the video's action class (THUMOS14: mostly one); random weights select
        # none or all, so each video localizes its ground-truth class, as a trained model would
        for i, vid in enumerate(vids):
            scores[vid].video_scores = np.eye(len(classes), dtype=np.float32)[i % len(classes)]
        with timer() as localizing:
            per_video = {vid: localize(scores[vid], model.config.localization, timings[vid]) for vid in vids}
        detections = DetectionTable.of(per_video, classes)
        with timer() as evaluating:
            evaluate(database, detections, "test", THUMOS_TIOU)
        count = sum(len(d) for d in per_video.values())
        section.measures.append(Measure(f"{method}: model", inference[0], "s", higher_is_better=False))
        section.measures.append(
            Measure(f"{method}: localize ({count} detections)", localizing[0], "s", higher_is_better=False)
        )
        section.measures.append(Measure(f"{method}: evaluate", evaluating[0], "s", higher_is_better=False))
    return section


def run_benchmarks(
    out: Path | None,
    json_out: Path | None = None,
    device: str = "auto",
    quick: bool = False,
    gt: Path | None = None,
    only: list[str] | None = None,
    print_fn: PrintFn = print,
) -> dict[str, Any]:
    """Measure every section (or ``only`` those named), print each as it finishes, write the report."""
    import sys

    from ..cache import atomic_write_json, atomic_write_text
    from ..device import resolve_device

    resolved = str(resolve_device(device))
    sizes = Sizes.pick(quick, resolved == "cuda")
    info = machine()
    unknown = set(only or []) - set(BENCH_SECTIONS)
    if unknown:
        raise WtalError(f"no benchmark section {sorted(unknown)[0]!r}", f"choose from {', '.join(BENCH_SECTIONS)}")
    for path in (out, json_out):  # before an hour of measuring, not after it
        if path is not None and (Path(path).is_dir() or not Path(path).parent.is_dir()):
            raise WtalError("cannot write the report there", "pass a file name in an existing folder", path)
    durations = thumos_like_durations(sizes.localize_videos, gt) if gt else None
    wanted = set(only or (BENCH_SECTIONS if quick else DEFAULT_SECTIONS))
    sections: list[Section] = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        clip = generated_clip(workdir / "bench.mp4", sizes.clip_seconds, sizes.source)
        steps: dict[BenchSection, Callable[[], Section]] = {
            "decode": lambda: bench_decode(clip, sizes),
            "flow": lambda: bench_flow(decoded_frames(clip, sizes.flow_crop), sizes, resolved),
            "i3d": lambda: bench_i3d(sizes, resolved),
            "end-to-end": lambda: bench_end_to_end(clip, sizes, resolved, workdir),
            "recipes": lambda: bench_recipes(sizes, resolved, workdir, quick),
            "memory": lambda: bench_memory(sizes, resolved, workdir),
            "train": lambda: bench_training(sizes, resolved, workdir),
            "localize": lambda: bench_localize(sizes, resolved, gt, durations),
            "scale": lambda: bench_scale(sizes, resolved, workdir),
        }
        for name, step in steps.items():
            if name in wanted:
                with timer() as took:
                    sections.append(step())
                sections[-1].seconds = took[0]
                print_fn(markdown(info, sections[-1:], "").split("\n## ", 1)[1])
    command = "wtal " + " ".join(sys.argv[1:]) if sys.argv and "wtal" in sys.argv[0] else "wtal bench"
    results = {"machine": info, "sizes": asdict(sizes), "sections": [asdict(s) for s in sections]}
    if json_out:  # the numbers first: they are the measurement
        atomic_write_json(json_out, results)
    if out:
        atomic_write_text(out, markdown(info, sections, command))
    return results
