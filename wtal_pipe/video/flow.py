"""A video's flow stage: any engine (:mod:`.flow_engines`) over every pair of consecutive frames, in
single-threaded worker processes (CPU engines) or batched on the extraction device, stored as uint8.

Storage (this module owns it): flow clipped to +-bound and stored as ``round(128 + f * 127.5 / bound)``,
the community's 8-bit format (for bound 20 this is ``128 + f*255/40``). Measured on 224x224 TV-L1 flow
it halves the cache against float16 while the dequantized error (<= bound/255 px, 0.078 px at bound 20)
is below TV-L1's own noise. The I3D flow stream reads it back as ``(u8 - 128) / 127.5``, and the
hard-negative stage reads its motion intensity from it, as the official CMCS tool reads its flow images.
"""

from __future__ import annotations

import errno
import itertools
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import WtalError
from .flow_engines import FlowConfig, FlowEngine, make_flow_engine

if TYPE_CHECKING:  # torch is imported only where flow runs on the device
    import torch

ZERO = 128.0  # the uint8 value of no motion
HALF_RANGE = 127.5  # uint8 steps from ZERO to +-bound
#: what the flow records say about the storage
STORAGE = f"uint8 round({ZERO:g} + clip(f, -bound, bound) * {HALF_RANGE} / bound)"
#: block of frames a worker hands its engine at once (each frame converted once per block)
WORKER_BLOCK = 16


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def quantize(flow: np.ndarray, bound: float) -> np.ndarray:
    """float pixels -> uint8, clipped at +-bound."""
    scaled = ZERO + np.clip(flow, -bound, bound) * (HALF_RANGE / bound)
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def quantize_tensor(flow: torch.Tensor, bound: float) -> torch.Tensor:
    """:func:`quantize` for a torch tensor on any device (the same float32 operations, the same bytes)."""
    import torch

    scaled = ZERO + flow.clamp(-bound, bound) * (HALF_RANGE / bound)
    return scaled.round().clamp(0, 255).to(torch.uint8)


def dequantize_tensor(flow_u8: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 in [-1, 1] (flow / bound), the I3D flow stream's input scale."""
    return flow_u8.float().sub_(ZERO).div_(HALF_RANGE).clamp_(-1.0, 1.0)


def exit_with_parent(parent: int) -> None:
    """In a worker process: exit as soon as ``parent``, the process that started it, is gone (``kill -9``
    of ``wtal`` must not leave workers computing TV-L1 for minutes). The pid is handed over rather than
    read here, since the parent may already be gone when the worker gets this far."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def flow_range(frames_path: str, out_path: str, config: FlowConfig, *, start: int, stop: int, offset: int = 0) -> int:
    """Worker: flow for frames ``start..stop-1`` written into the output memmap at row ``i - offset``
    (0 for the whole video's file, ``start`` for a part of its own).

    Flow ``i`` is from frame i to frame i+1; the last frame (no successor) repeats the previous flow
    so every frame has one and a 16-frame chunk always has 16 flow fields.
    """
    import cv2

    cv2.setNumThreads(1)
    frames = np.load(frames_path, mmap_mode="r")
    out = np.load(out_path, mmap_mode="r+")
    n_frames = len(frames)
    if n_frames == 1:  # a single frame has no motion
        out[0] = quantize(np.zeros((*frames.shape[1:3], 2), np.float32), config.bound)
        return 1
    engine = make_flow_engine(config.preset)
    for first in range(start, stop, WORKER_BLOCK):
        last = min(stop, first + WORKER_BLOCK)  # flows first..last-1 need frames first..last
        flows = engine.pairs(np.asarray(frames[first : min(last + 1, n_frames)]))
        if last == n_frames:  # the last frame has no successor: it repeats the previous flow
            flows = np.concatenate([flows, flows[-1:]]) if len(flows) else _last_pair(engine, frames)
        out[first - offset : last - offset] = quantize(flows, config.bound)
    out.flush()
    return stop - start


def _last_pair(engine: FlowEngine, frames: np.ndarray) -> np.ndarray:
    """The flow into the last frame, repeated as the last frame's own (a range holding only that frame)."""
    return engine.pairs(np.asarray(frames[-2:]))


def split_ranges(n: int, parts: int) -> list[tuple[int, int]]:
    """Contiguous [start, stop) ranges covering 0..n, about equal in size."""
    edges = np.linspace(0, n, max(1, min(parts, n)) + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges) if b > a]


def compute_flow(
    frames_path: Path,
    out_path: Path,
    config: FlowConfig,
    *,
    workers: int,
    progress: Callable[[int], None] | None = None,
    device: str = "cpu",
    batch_pairs: int | None = None,
) -> None:
    """Fill ``out_path`` (N, H, W, 2) uint8 from a frames .npy; the caller made the path atomic. A CPU
    engine runs in ``workers`` processes writing disjoint row ranges; an ``on_device`` one runs here on
    ``device``, ``batch_pairs`` frame pairs per call."""
    frames = np.load(frames_path, mmap_mode="r")
    n_frames, height, width = frames.shape[:3]
    np.lib.format.open_memmap(out_path, mode="w+", dtype=np.uint8, shape=(n_frames, height, width, 2)).flush()
    reserve_disk(out_path)
    if config.on_device:
        flow_on_device(frames, out_path, config, device=device, batch_pairs=batch_pairs, progress=progress)
    else:
        flow_in_workers(frames_path, out_path, config, workers=workers, progress=progress)


def flow_on_device(
    frames: np.ndarray,
    out_path: Path,
    config: FlowConfig,
    *,
    device: str,
    batch_pairs: int | None,
    progress: Callable[[int], None] | None,
) -> None:
    """An ``on_device`` engine on a frames cache: a few batches of frames at a time go to the device, so
    memory stays flat whatever the length."""
    import torch

    flow = DeviceFlow(config, torch.device(device), batch_pairs)
    out = np.load(out_path, mmap_mode="r+")
    done = 0

    def write(flows: torch.Tensor) -> None:
        nonlocal done
        out[done : done + len(flows)] = flows.cpu().numpy()
        done += len(flows)
        if progress and len(flows):
            progress(len(flows))

    step = 4 * flow.batch_pairs
    with torch.inference_mode():
        for start in range(0, len(frames), step):
            write(flow.push(torch.from_numpy(np.array(frames[start : start + step])).to(flow.device)))
        write(flow.finish())
    out.flush()


class DeviceFlow:
    """An ``on_device`` engine (``tvl1-torch``) over frames that arrive in blocks of any size, already on the device.

    Pairs are computed ``batch_pairs`` at a time in frame order whatever the blocks, so the flow is the
    same however the frames are fed (a frames cache, or the decoder); each flow is quantized on the device
    to the cache's uint8, which the flow I3D stream reads as it is. Flow ``i`` is from frame i to i+1;
    the last frame repeats the previous flow (a single frame gets zero flow).
    """

    def __init__(self, config: FlowConfig, device: torch.device, batch_pairs: int | None = None):
        self.device = device
        self.bound = config.bound
        self.batch_pairs = batch_pairs or default_batch_pairs(device)
        self.engine = make_flow_engine(config.preset, str(device))
        self._waiting: torch.Tensor | None = None  # frames whose flow to the next frame is not computed yet
        self._last: torch.Tensor | None = None  # the last flow computed

    def push(self, frames: torch.Tensor) -> torch.Tensor:
        """(n, H, W, 3) uint8 frames -> (k, H, W, 2) uint8 flow of the next k frames still waiting
        for theirs (k may be 0: a frame's flow needs the frame after it)."""
        import torch

        waiting = frames if self._waiting is None else torch.cat([self._waiting, frames])
        done = []
        while len(waiting) > self.batch_pairs:
            done.append(self._pairs(waiting[: self.batch_pairs + 1]))
            waiting = waiting[self.batch_pairs :]
        self._waiting = waiting
        return torch.cat(done) if done else frames.new_empty((0, *frames.shape[1:3], 2))

    def finish(self) -> torch.Tensor:
        """The flow of the frames still waiting, once no frame follows them."""
        import torch

        if self._waiting is None:
            return torch.empty((0, 0, 0, 2), dtype=torch.uint8, device=self.device)
        waiting, self._waiting = self._waiting, None
        done = [self._pairs(waiting)] if len(waiting) > 1 else []
        if self._last is None:  # a single frame has no motion
            still = waiting.new_zeros((1, *waiting.shape[1:3], 2), dtype=torch.float32)
            self._last = quantize_tensor(still, self.bound)
        return torch.cat([*done, self._last[-1:]])

    def _pairs(self, frames: torch.Tensor) -> torch.Tensor:
        self._last = quantize_tensor(self.engine.pairs(frames), self.bound)
        return self._last


def default_batch_pairs(device: torch.device) -> int:
    """Frame pairs per TV-L1 call: a GPU wants many (each iteration is a few small kernels); a CPU
    gains little beyond a handful and pays memory."""
    return 32 if device.type == "cuda" else 4


def flow_in_workers(
    frames_path: Path, out_path: Path, config: FlowConfig, *, workers: int, progress: Callable[[int], None] | None
) -> None:
    """A CPU engine: several row ranges per worker process (balance, progress)."""
    from joblib import Parallel, delayed
    from joblib.externals.loky.process_executor import TerminatedWorkerError

    ranges = split_ranges(len(np.load(frames_path, mmap_mode="r")), workers * 4)
    tasks = (delayed(flow_range)(str(frames_path), str(out_path), config, start=a, stop=b) for a, b in ranges)
    try:
        if workers == 1:
            results = (task[0](*task[1], **task[2]) for task in tasks)
        else:
            results = Parallel(
                n_jobs=workers,
                backend="loky",
                return_as="generator_unordered",
                initializer=exit_with_parent,
                initargs=(os.getpid(),),
            )(tasks)
        for done in results:
            if progress:
                progress(done)
    except TerminatedWorkerError as exc:
        raise WtalError(
            "a flow worker process died (out of memory, or a bus error from a full disk)",
            "free memory or disk space, or pass --workers 1",
            out_path,
        ) from exc


def reserve_disk(path: Path) -> None:
    """Allocate a (sparse) output file's blocks now: a full disk is an ENOSPC error here, not a SIGBUS
    in a worker writing through a memmap. File systems without fallocate are left as they are."""
    if not hasattr(os, "posix_fallocate"):
        return
    with open(path, "r+b") as fh:
        try:
            os.posix_fallocate(fh.fileno(), 0, os.fstat(fh.fileno()).st_size)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise
