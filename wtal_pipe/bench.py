"""Throughput benchmarks behind ``wtal bench`` (numbers for the README, never asserted in tests)."""

from __future__ import annotations

import functools
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def machine() -> dict:
    import torch

    cpu = platform.processor() or "unknown"
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _rate(fn: Callable[[], int]) -> float:
    """Items per second of one call of ``fn`` (which returns how many items it processed)."""
    start = time.perf_counter()
    items = fn()
    return items / (time.perf_counter() - start)


def bench_decode(clip: Path) -> dict:
    from .config import DecodeConfig
    from .video.decode import iter_frames

    rate = _rate(lambda: sum(1 for _ in iter_frames(clip, DecodeConfig())))
    return {"decode_frames_per_s": round(rate, 1)}


def bench_flow(frames_path: Path, workdir: Path, pairs: int) -> dict:
    from .config import FlowConfig
    from .video.flow import compute_flow, default_workers

    frames = np.load(frames_path, mmap_mode="r")[: pairs + 1]
    subset = workdir / "flow_frames.npy"
    np.save(subset, frames)
    results = {}

    def flow_pairs(preset: str, workers: int) -> int:
        compute_flow(subset, workdir / "f.npy", FlowConfig(preset), workers)
        return len(frames)

    for preset in ("tvl1", "tvl1-fast", "dis"):
        for workers in sorted({1, default_workers()}):
            rate = _rate(functools.partial(flow_pairs, preset, workers))
            results[f"flow_{preset}_pairs_per_s_{workers}w"] = round(rate, 2)
    return results


def bench_i3d(device: str, batch_size: int, batches: int) -> dict:
    import torch

    from .config import FeatureConfig
    from .device import cpu_has_native_bf16
    from .features.two_stream import I3DPair

    results = {}
    frames = np.random.default_rng(0).integers(0, 255, (batch_size, 16, 224, 224, 3), dtype=np.uint8)
    flows = np.random.default_rng(1).integers(100, 156, (batch_size, 16, 224, 224, 2), dtype=np.uint8)
    precisions = ["fp32", "bf16"]
    for precision in precisions:
        model = I3DPair.load(FeatureConfig(precision=precision), device)
        model(frames[:1], flows[:1])  # warm-up (kernel selection, allocator)
        if model.device.type == "cuda":
            torch.cuda.synchronize()

        def run(model: I3DPair = model) -> int:
            for _ in range(batches):
                model(frames, flows)
            return batches * batch_size

        results[f"i3d_{model.device.type}_{precision}_chunks_per_s"] = round(_rate(run), 2)
    results["cpu_native_bf16"] = cpu_has_native_bf16()
    return results


def bench_evaluate(per_class: int = 5000, classes: int = 20, videos: int = 200) -> dict:
    """Evaluator time on a synthetic GT with ``per_class`` random detections per class."""
    from .evaluate import evaluate

    rng = np.random.default_rng(0)
    database = {
        f"v{v}": {
            "subset": "test",
            "annotations": [
                {"label": f"c{rng.integers(classes)}", "segment": [float(s), float(s + rng.uniform(2, 20))]}
                for s in rng.uniform(0, 200, 15)
            ],
        }
        for v in range(videos)
    }
    results: dict[str, list] = {}
    for c in range(classes):
        for _ in range(per_class):
            start = float(rng.uniform(0, 200))
            results.setdefault(f"v{rng.integers(videos)}", []).append(
                {"label": f"c{c}", "score": float(rng.random()), "segment": [start, start + float(rng.uniform(1, 20))]}
            )
    started = time.perf_counter()
    evaluate(database, {"results": results}, "test", np.round(np.arange(0.1, 0.75, 0.1), 2))
    return {"evaluate_seconds_20_classes_x_5000_dets_7_tious": round(time.perf_counter() - started, 3)}


def run_benchmarks(
    stage: str, device: str = "auto", seconds: float = 20.0, out: Path | None = None, print_fn: Callable = print
) -> dict:
    """Generate a synthetic 640x360 clip and time each stage on it; prints and returns the numbers."""
    import torch

    from .cache import NpyStreamWriter, atomic_write_json
    from .config import DecodeConfig
    from .video.decode import iter_frames
    from .video.synthetic import ACTION_STYLES, PlantedAction, render_frames, write_video

    results = {"machine": machine()}
    on_gpu = device != "cpu" and torch.cuda.is_available()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if stage in ("decode", "flow", "all"):
            clip = write_video(
                workdir / "bench.mp4",
                render_frames(seconds, 30.0, 640, 360, [PlantedAction(ACTION_STYLES[0], 0.0, seconds)]),
                fps=30.0,
            )
        if stage in ("decode", "all"):
            results.update(bench_decode(clip))
        if stage in ("flow", "all"):
            frames_path = workdir / "frames.npy"
            with open(frames_path, "wb") as fh:
                writer = NpyStreamWriter(fh, (224, 224, 3), np.uint8)
                for frame in iter_frames(clip, DecodeConfig()):
                    writer.append(frame.rgb)
                writer.close()
            results.update(bench_flow(frames_path, workdir, pairs=64 if on_gpu else 16))
        if stage in ("evaluate", "all"):
            results.update(bench_evaluate())
        if stage in ("i3d", "all"):
            results.update(bench_i3d(device, batch_size=16 if on_gpu else 2, batches=10 if on_gpu else 2))
    print_fn(json.dumps(results, indent=2))
    if out:
        atomic_write_json(out, results)
    return results
