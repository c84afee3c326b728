"""The two I3D streams as one feature extractor: uint8 frames and flow in, (T, 2048) rows out (RGB first)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..device import resolve_device, resolve_precision
from ..errors import WtalError
from ..video.flow import dequantize_tensor
from .config import I3D_SIZE, FeatureConfig
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


def crop_views(height: int, width: int, crops: str) -> list[tuple[int, int, int, bool]]:
    """(top, left, size, mirrored) of each view I3D sees of frames of this size: frames no larger than I3D_SIZE
    whole; larger ones their centre square (``center``), or the four corners, the centre and the mirror image
    of each (``ten``, in the order of the CMCS author's tool: top-left, top-right, centre, bottom-left,
    bottom-right, then mirrored)."""
    size = min(height, width, I3D_SIZE)
    centre = ((height - size) // 2, (width - size) // 2, size, False)
    if crops == "center":
        return [centre]
    if min(height, width) < I3D_SIZE:
        raise WtalError(
            f"ten crops need frames of at least {I3D_SIZE}x{I3D_SIZE}, these are {width}x{height}",
            "decode larger frames (e.g. --resize 340x256), or --crops center",
        )
    corners = [(0, 0), (0, width - size), centre[:2], (height - size, 0), (height - size, width - size)]
    return [(top, left, size, mirrored) for mirrored in (False, True) for top, left in corners]


def features_from_arrays(
    frames: np.ndarray,
    flows: np.ndarray,
    model: I3DPair,
    *,
    config: FeatureConfig,
    progress: ProgressFn | None = None,
) -> np.ndarray:
    """(N, H, W, 3) frames + (N, H, W, 2) flow (memmaps welcome) -> one 2 * 1024 row per ``chunk`` frames every
    ``step`` frames (``(N - chunk) // step + 1`` rows), each the mean over the crop views I3D sees."""
    chunk, step = config.chunk, config.step
    n_rows = (frames.shape[0] - chunk) // step + 1 if frames.shape[0] >= chunk else 0
    views = crop_views(frames.shape[1], frames.shape[2], config.crops)
    rows = np.zeros((n_rows, 2 * FEATURE_DIM), np.float32)
    for start in range(0, n_rows, config.batch_size):
        stop = min(n_rows, start + config.batch_size)
        if step == chunk:  # consecutive windows are one reshape away
            span, shape = slice(start * chunk, stop * chunk), (stop - start, chunk)
            rgb, flow = frames[span].reshape(*shape, *frames.shape[1:]), flows[span].reshape(*shape, *flows.shape[1:])
        else:
            rgb = np.stack([frames[k * step : k * step + chunk] for k in range(start, stop)])
            flow = np.stack([flows[k * step : k * step + chunk] for k in range(start, stop)])
        outputs = [model(*(_view(a, view) for a in (rgb, flow))) for view in views]
        rows[start:stop] = outputs[0] if len(outputs) == 1 else np.mean(outputs, axis=0)
        if progress:
            progress("features", stop, n_rows)
    return rows


def _view(windows: np.ndarray, view: tuple[int, int, int, bool]) -> np.ndarray:
    """(B, L, H, W, C) windows -> the (B, L, size, size, C) view (mirrored: left and right swapped)."""
    top, left, size, mirrored = view
    if (top, left, size) == (0, 0, windows.shape[2]) == (0, 0, windows.shape[3]) and not mirrored:
        return windows
    cropped = windows[:, :, top : top + size, left : left + size]
    return cropped[:, :, :, ::-1] if mirrored else cropped


def pooled_rows(rows: np.ndarray, count: int, *, chunk: int, step: int, fps: float) -> np.ndarray:
    """A video's rows resampled to ``count`` rows (fixed-length releases, BSN's ``poolData``): row i of the
    source is centred at ``i * step + chunk / 2`` frames; the span they cover is cut into ``count`` equal bins,
    each the mean of 3 linear-interpolation samples between its ends (clamped to 1e-4 s inside the first and
    last centres, as BSN does in seconds); a bin wholly before the first centre or after the last is zeros.
    One source row is repeated."""
    if len(rows) == 1:
        return np.repeat(np.asarray(rows, np.float32), count, axis=0)
    centres = np.arange(len(rows), dtype=np.float64) * step + chunk / 2
    span = (len(rows) - 1) * step + chunk
    edges = np.arange(count + 1, dtype=np.float64) / count * span
    inset = 1e-4 * fps  # frames
    low = np.maximum(centres[0] + inset, edges[:-1])
    high = np.minimum(centres[-1] - inset, edges[1:])
    inside = (high >= centres[0]) & (low <= centres[-1])
    samples = low[:, None] + (high - low)[:, None] * np.array([0.0, 0.5, 1.0])  # (count, 3)
    right = np.clip(np.searchsorted(centres, samples, side="right"), 1, len(rows) - 1)
    weight = ((samples - centres[right - 1]) / (centres[right] - centres[right - 1]))[..., None]
    values = np.asarray(rows, np.float64)
    interpolated = values[right - 1] * (1 - weight) + values[right] * weight  # (count, 3, D)
    return np.where(inside[:, None], interpolated.mean(axis=1), 0.0).astype(np.float32)
