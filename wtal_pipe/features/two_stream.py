"""The two I3D streams as one feature extractor: uint8 frames and flow in, (T, 2048) rows out (RGB first)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..device import resolve_device, resolve_precision
from ..video.flow import dequantize_tensor
from .config import FeatureConfig
from .i3d import FEATURE_DIM, InceptionI3d
from .plan import FeatureIdentity
from .weights import WeightsInfo, load_i3d

ProgressFn = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass
class I3DPair:
    """The two loaded I3D streams on their device, with how they were loaded."""

    rgb: InceptionI3d
    flow: InceptionI3d
    weights: dict[str, WeightsInfo]
    device: torch.device
    precision: str

    @classmethod
    def load(cls, config: FeatureConfig, device: str = "auto") -> I3DPair:
        dev = resolve_device(device)
        precision = resolve_precision(config.precision)
        rgb, rgb_info = load_i3d("rgb", config.rgb_weights)
        flow_net, flow_info = load_i3d("flow", config.flow_weights)
        memory_format = torch.channels_last_3d
        rgb, flow_net = (m.to(dev).to(memory_format=memory_format) for m in (rgb, flow_net))
        if dev.type == "cpu":
            # one-thread oneDNN convolutions sum in another order than multi-threaded ones (measured:
            # 1e-5 apart, while 2..8 threads agree bit for bit); at least two threads keep the features
            # the same on a one-core machine or a Dask worker (started with OMP_NUM_THREADS=1)
            torch.set_num_threads(max(2, torch.get_num_threads()))
        return cls(rgb, flow_net, {"rgb": rgb_info, "flow": flow_info}, dev, precision)

    @property
    def is_random(self) -> bool:
        return any(w.is_random for w in self.weights.values())

    @property
    def identity(self) -> FeatureIdentity:
        """What the features' cache key says about this extractor: precision, and each stream's weights
        (their sha256, or the random seed)."""
        return FeatureIdentity(self.precision, self.weights["rgb"].cache_key, self.weights["flow"].cache_key)

    def __call__(self, rgb_u8: np.ndarray, flow_u8: np.ndarray) -> np.ndarray:
        """(B, L, H, W, 3) uint8 frames + (B, L, H, W, 2) uint8 flow -> (B, 2048) float32, RGB first."""
        pin = self.device.type == "cuda"
        return self.features(_to_device(rgb_u8, self.device, pin), _to_device(flow_u8, self.device, pin))

    @torch.inference_mode()
    def features(self, rgb_u8: torch.Tensor, flow_u8: torch.Tensor) -> np.ndarray:
        """:meth:`__call__` for uint8 tensors already on the device."""
        rgb = rgb_u8.permute(0, 4, 1, 2, 3).float().div_(127.5).sub_(1.0)  # (B, 3, L, H, W) in [-1, 1]
        flow = dequantize_tensor(flow_u8.permute(0, 4, 1, 2, 3))  # (B, 2, L, H, W) in [-1, 1]
        rgb = rgb.contiguous(memory_format=torch.channels_last_3d)
        flow = flow.contiguous(memory_format=torch.channels_last_3d)
        autocast = (
            torch.autocast(self.device.type, dtype=torch.bfloat16)
            if self.precision == "bf16"
            else contextlib.nullcontext()
        )
        # fp32 means fp32: cuDNN would otherwise silently use TF32 for the convolutions.
        cudnn = torch.backends.cudnn.flags(enabled=True, benchmark=True, allow_tf32=self.precision != "fp32")
        with autocast, cudnn:
            features = torch.cat([self.rgb.features(rgb), self.flow.features(flow)], dim=1)
        return features.float().cpu().numpy()


def _to_device(array: np.ndarray, device: torch.device, pin: bool) -> torch.Tensor:
    tensor = torch.from_numpy(np.array(array))  # a copy: memmaps are read-only
    return tensor.pin_memory().to(device, non_blocking=True) if pin else tensor


def features_from_arrays(
    frames: np.ndarray,
    flows: np.ndarray,
    model: I3DPair,
    *,
    chunk: int,
    batch_size: int,
    progress: ProgressFn | None = None,
) -> np.ndarray:
    """(N, H, W, 3) frames + (N, H, W, 2) flow (memmaps welcome) -> (floor(N / chunk), 2 * 1024)."""
    n_chunks = frames.shape[0] // chunk
    rows = np.zeros((n_chunks, 2 * FEATURE_DIM), np.float32)
    for start in range(0, n_chunks, batch_size):
        stop = min(n_chunks, start + batch_size)
        span = slice(start * chunk, stop * chunk)
        shape = (stop - start, chunk)
        rows[start:stop] = model(
            frames[span].reshape(*shape, *frames.shape[1:]), flows[span].reshape(*shape, *flows.shape[1:])
        )
        if progress:
            progress("features", stop, n_chunks)
    return rows
