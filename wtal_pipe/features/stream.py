"""Extraction with the flow computed on the extraction device (an ``on_device`` flow engine, such as
``tvl1-torch``), fed straight from the decoder.

A background thread decodes blocks of frames into a bounded queue (a few blocks deep, so host memory
stays flat whatever the video's length, and decoding overlaps the device's work). Each block goes to
the device once: the flow engine and the RGB stream both read that copy, the flow is quantized there to the
cache's uint8 and fed to the flow stream as it is, and only the uint8 flow comes back, for the cache.
Frames and flow are batched exactly as :func:`features_from_arrays` batches a cached video, so both
routes give the same features.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import TypeVar

import numpy as np
import torch

from ..video.flow import DeviceFlow
from ..video.flow_engines import FlowConfig
from .i3d import FEATURE_DIM
from .two_stream import I3DPair

Item = TypeVar("Item")

#: blocks the decoder may run ahead of the device
QUEUE_DEPTH = 2


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


_END = object()


def prefetch(items: Iterable[Item], depth: int = QUEUE_DEPTH) -> Generator[Item, None, None]:
    """Yield ``items``, produced in a background thread at most ``depth`` ahead of the consumer. The
    producer's exception is raised here; when the consumer stops early the producer stops too (and its
    iterator is closed, releasing the video file)."""
    handoff: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item: object) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        source = iter(items)
        try:
            for item in source:
                if not offer(item):
                    return
            offer(_END)
        except BaseException as exc:  # handed to the consumer, which raises it
            offer(_Failed(exc))
        finally:
            close = getattr(source, "close", None)
            if close:
                close()

    worker = threading.Thread(target=produce, name="wtal-decode", daemon=True)
    worker.start()
    try:
        while True:
            item = handoff.get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        worker.join()


def frame_blocks(frames: Iterable[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """Consecutive (H, W, 3) frames as (n <= size, H, W, 3) blocks."""
    block: list[np.ndarray] = []
    for frame in frames:
        block.append(frame)
        if len(block) == size:
            yield np.stack(block)
            block = []
    if block:
        yield np.stack(block)


def stream_features(
    blocks: Iterable[np.ndarray],
    model: I3DPair,
    flow_config: FlowConfig,
    *,
    chunk: int,
    batch_size: int,
    flow_sink: Callable[[np.ndarray], None],
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Frame blocks (n, H, W, 3) uint8 in video order -> (floor(N / chunk), 2048) features; the uint8
    flow of every frame goes to ``flow_sink`` in order, and ``progress`` gets the frames done so far."""
    device = model.device
    flow = DeviceFlow(flow_config, device)
    span = chunk * batch_size
    rows: list[np.ndarray] = []
    frames = flows = None  # on the device: frames not yet featurized, and the flow of their first frames
    done = 0

    def featurize(final: bool) -> None:
        nonlocal frames, flows
        assert frames is not None and flows is not None
        while len(flows) >= span or (final and len(flows) >= chunk):
            n = min(span, len(flows) // chunk * chunk)
            shape = (n // chunk, chunk, *frames.shape[1:3])
            rows.append(model.features(frames[:n].reshape(*shape, 3), flows[:n].reshape(*shape, 2)))
            frames, flows = frames[n:], flows[n:]

    def take(new_frames: torch.Tensor | None, new_flows: torch.Tensor) -> None:
        nonlocal frames, flows, done
        if new_frames is not None:
            frames = new_frames if frames is None else torch.cat([frames, new_frames])
        flows = new_flows if flows is None else torch.cat([flows, new_flows])
        flow_sink(new_flows.cpu().numpy())
        done += len(new_flows)
        if progress:
            progress(done)

    with torch.inference_mode():
        for block in blocks:
            on_device = _upload(block, device)
            take(on_device, flow.push(on_device))
            featurize(final=False)
        if frames is not None:
            take(None, flow.finish())
            featurize(final=True)
    return np.concatenate(rows) if rows else np.zeros((0, 2 * FEATURE_DIM), np.float32)


def _upload(block: np.ndarray, device: torch.device) -> torch.Tensor:
    tensor = torch.from_numpy(block)
    return tensor.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else tensor
