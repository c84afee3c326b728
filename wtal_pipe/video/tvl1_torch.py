"""OpenCV's Dual TV-L1 optical flow (``cv2.optflow.DualTVL1OpticalFlow``), re-implemented in PyTorch
for a batch of frame pairs at once, on the CPU or a GPU.

The published WTAL features rest on OpenCV's TV-L1, so this follows OpenCV's code step by step rather
than the paper (Zach et al. 2007; Sanchez et al., IPOL 2013): the same image pyramid (bilinear resize
by ``scale_step`` without smoothing, stopping below 16 pixels), the same warping (bicubic remap with a
zero border, at the exact map as OpenCV 5 samples it; 4.x rounded the map to 1/32 pixel), the same centred,
forward and backward differences with OpenCV's border rules, the 5x5 median filter at every outer
iteration, and OpenCV's stopping rule (the summed squared update of a pair below
``epsilon^2 * pixels``), applied per pair: a pair that has converged stops changing while the others
iterate, so each pair's flow does not depend on what else is in its batch. Input is the 8-bit grey
image OpenCV's ``COLOR_RGB2GRAY`` gives, computed with the same fixed-point weights.

Everything is float32 and batched over pairs (B, H, W); there is no Python loop over pixels or pairs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ..errors import WtalError
from .flow_engines import TVL1Params

#: OpenCV's fixed-point RGB -> grey weights (0.299, 0.587, 0.114 in units of 2^-15)
GRAY_WEIGHTS = (9798, 19235, 3735)
GRAY_SHIFT = 15
MIN_PYRAMID_SIDE = 16


def rgb_to_gray(rgb: torch.Tensor) -> torch.Tensor:
    """(..., H, W, 3) uint8 RGB -> (..., H, W) float32 grey, bit-exact with OpenCV's ``COLOR_RGB2GRAY``."""
    weighted = (
        rgb[..., 0].to(torch.int32) * GRAY_WEIGHTS[0]
        + rgb[..., 1].to(torch.int32) * GRAY_WEIGHTS[1]
        + rgb[..., 2].to(torch.int32) * GRAY_WEIGHTS[2]
    )
    return ((weighted + (1 << (GRAY_SHIFT - 1))) >> GRAY_SHIFT).to(torch.float32)


def pyramid_sizes(height: int, width: int, params: TVL1Params) -> list[tuple[int, int]]:
    """Sizes of OpenCV's pyramid, finest first: each level ``round(side * scale_step)``, and none
    with a side below 16 pixels."""
    sizes = [(height, width)]
    for _ in range(1, params.nscales):
        h, w = sizes[-1]
        smaller = (round(h * params.scale_step), round(w * params.scale_step))
        if min(smaller) < MIN_PYRAMID_SIDE:
            break
        sizes.append(smaller)
    return sizes


def linear_resize_matrix(src: int, dst: int, scale: float, device: torch.device) -> torch.Tensor:
    """(dst, src) weights of OpenCV's INTER_LINEAR along one axis: source ``(d + 0.5) * scale - 0.5``
    (``scale`` is 1/fx when OpenCV is given a factor, src/dst when given a size), clamped at both ends."""
    position = ((torch.arange(dst, dtype=torch.float64) + 0.5) * scale - 0.5).to(torch.float32)
    left = torch.floor(position)
    frac = position - left
    left = left.to(torch.int64)
    frac = torch.where(left < 0, torch.zeros_like(frac), frac)
    left = left.clamp(min=0)
    beyond = left >= src - 1
    frac = torch.where(beyond, torch.zeros_like(frac), frac)
    left = torch.where(beyond, torch.full_like(left, src - 1), left)
    right = (left + 1).clamp(max=src - 1)
    matrix = torch.zeros(dst, src, dtype=torch.float32)
    rows = torch.arange(dst)
    matrix.index_put_((rows, left), 1.0 - frac, accumulate=True)
    matrix.index_put_((rows, right), frac, accumulate=True)
    return matrix.to(device)


def resize_linear(
    images: torch.Tensor, size: tuple[int, int], scale: tuple[float, float] | None = None
) -> torch.Tensor:
    """(B, H, W) -> (B, h, w) as ``cv2.resize(..., INTER_LINEAR)``: rows first, then columns.
    ``scale`` = (1/fy, 1/fx) when OpenCV was given factors; else the size ratio."""
    height, width = images.shape[-2:]
    scale_y, scale_x = scale if scale is not None else (height / size[0], width / size[1])
    columns = linear_resize_matrix(width, size[1], scale_x, images.device)
    rows = linear_resize_matrix(height, size[0], scale_y, images.device)
    return rows @ (images @ columns.T)


def centred_gradient(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Half the central difference inside, half the one-sided difference on the border (OpenCV's rule)."""
    padded_x = torch.cat([image[..., :, :1], image, image[..., :, -1:]], dim=-1)
    padded_y = torch.cat([image[..., :1, :], image, image[..., -1:, :]], dim=-2)
    return 0.5 * (padded_x[..., :, 2:] - padded_x[..., :, :-2]), 0.5 * (padded_y[..., 2:, :] - padded_y[..., :-2, :])


def forward_gradient(field: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences, zero in the last column (x) and the last row (y)."""
    dx = F.pad(field[..., :, 1:] - field[..., :, :-1], (0, 1))
    dy = F.pad(field[..., 1:, :] - field[..., :-1, :], (0, 0, 0, 1))
    return dx, dy


def divergence(px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    """Backward differences with zero outside the image (the adjoint of :func:`forward_gradient`)."""
    return (px - F.pad(px[..., :, :-1], (1, 0))) + (py - F.pad(py[..., :-1, :], (0, 0, 1, 0)))


def median5(field: torch.Tensor) -> torch.Tensor:
    """5x5 median with replicated borders (``cv2.medianBlur(float32, 5)``)."""
    batch, height, width = field.shape
    padded = F.pad(field[:, None], (2, 2, 2, 2), mode="replicate")[:, 0]
    windows = padded.unfold(1, 5, 1).unfold(2, 5, 1).reshape(batch, height, width, 25)
    return windows.median(dim=-1).values


def cubic_weights(frac: torch.Tensor) -> torch.Tensor:
    """(..., 4) weights of the taps at offsets -1, 0, 1, 2 for a fractional position (OpenCV's and
    Keys' cubic convolution, a = -0.75); exactly (0, 1, 0, 0) at a whole pixel."""
    a = -0.75
    t1 = frac + 1.0
    w0 = ((a * t1 - 5.0 * a) * t1 + 8.0 * a) * t1 - 4.0 * a
    w1 = ((a + 2.0) * frac - (a + 3.0)) * frac * frac + 1.0
    rest = 1.0 - frac
    w2 = ((a + 2.0) * rest - (a + 3.0)) * rest * rest + 1.0
    return torch.stack([w0, w1, w2, 1.0 - w0 - w1 - w2], dim=-1)


def remap_cubic(images: torch.Tensor, flow_x: torch.Tensor, flow_y: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) sampled at (x + flow_x, y + flow_y) like ``cv2.remap(..., INTER_CUBIC)`` with a zero
    border. Taps are gathered at whole-pixel indices (not through normalized grid coordinates), so a
    zero flow reproduces the image exactly, as in OpenCV."""
    batch, channels, height, width = images.shape
    pad = 4  # a map this far outside reads only zeros
    padded = F.pad(images, (pad, pad, pad, pad)).reshape(batch, channels, -1)
    padded_width = width + 2 * pad
    map_x = torch.arange(width, device=images.device, dtype=torch.float32) + flow_x
    map_y = torch.arange(height, device=images.device, dtype=torch.float32)[:, None] + flow_y
    left, top = torch.floor(map_x), torch.floor(map_y)
    weights_x, weights_y = cubic_weights(map_x - left), cubic_weights(map_y - top)
    left = left.clamp(-3, width + 1).to(torch.int64) + pad - 1
    top = top.clamp(-3, height + 1).to(torch.int64) + pad - 1
    out = torch.zeros_like(images)
    for j in range(4):
        row = (top + j) * padded_width
        for k in range(4):
            index = (row + left + k).reshape(batch, 1, -1).expand(-1, channels, -1)
            taps = padded.gather(2, index).reshape(batch, channels, height, width)
            out += (weights_y[..., j] * weights_x[..., k])[:, None] * taps
    return out


def _inner_step(
    state: tuple[torch.Tensor, ...],
    warped: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    active: torch.Tensor | None,
    l_t: float,
    theta: float,
    taut: float,
) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """One inner iteration for every pair: thresholding (v), primal (u) and dual (p) updates; pairs
    not ``active`` (None: all are) keep their state. Returns the new state and each pair's summed
    squared update of u, OpenCV's convergence measure."""
    u1, u2, p11, p12, p21, p22 = state
    i1wx, i1wy, grad, rho_c = warped
    rho = rho_c + i1wx * u1 + i1wy * u2
    # OpenCV's three-way threshold: +-l_t outside [-l_t * grad, l_t * grad], else -rho / grad (and 0
    # for a flat spot, where the clamp of -rho / FLT_EPSILON gives the sign of rho within 1e-8)
    step = torch.clamp(-rho / grad.clamp_min(_FLOAT_EPS), -l_t, l_t)
    new_u1 = u1 + step * i1wx + theta * divergence(p11, p12)
    new_u2 = u2 + step * i1wy + theta * divergence(p21, p22)
    error = ((new_u1 - u1).square() + (new_u2 - u2).square()).sum(dim=(-2, -1))
    u1x, u1y = forward_gradient(new_u1)
    u2x, u2y = forward_gradient(new_u2)
    norm1 = 1.0 + taut * torch.sqrt(u1x * u1x + u1y * u1y)
    norm2 = 1.0 + taut * torch.sqrt(u2x * u2x + u2y * u2y)
    updated = (
        new_u1,
        new_u2,
        (p11 + taut * u1x) / norm1,
        (p12 + taut * u1y) / norm1,
        (p21 + taut * u2x) / norm2,
        (p22 + taut * u2y) / norm2,
    )
    if active is None:
        return updated, error
    keep = active[:, None, None]
    return tuple(torch.where(keep, new, old) for new, old in zip(updated, state, strict=True)), error


_FLOAT_EPS = float(torch.finfo(torch.float32).eps)


class TVL1:
    """Batched Dual TV-L1: ``TVL1(params)(prev, nxt)`` maps two (B, H, W) float32 grey batches (0..255)
    to (B, H, W, 2) flow in pixels (dx, dy), as OpenCV computes it pair by pair."""

    def __init__(self, params: TVL1Params):
        self.params = params

    def __call__(self, prev: torch.Tensor, nxt: torch.Tensor) -> torch.Tensor:
        params = self.params
        height, width = prev.shape[-2:]
        sizes = pyramid_sizes(height, width, params)
        factor = 1.0 / params.scale_step
        images0, images1 = [prev], [nxt]
        for size in sizes[1:]:
            images0.append(resize_linear(images0[-1], size, (factor, factor)))
            images1.append(resize_linear(images1[-1], size, (factor, factor)))
        u1 = torch.zeros_like(images0[-1])
        u2 = torch.zeros_like(images0[-1])
        for level in range(len(sizes) - 1, -1, -1):
            u1, u2 = self._one_scale(images0[level], images1[level], u1, u2)
            if level > 0:
                u1 = resize_linear(u1, sizes[level - 1]) * factor
                u2 = resize_linear(u2, sizes[level - 1]) * factor
        return torch.stack([u1, u2], dim=-1)

    def _one_scale(
        self, image0: torch.Tensor, image1: torch.Tensor, u1: torch.Tensor, u2: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        params = self.params
        batch, height, width = image0.shape
        threshold = params.epsilon * params.epsilon * height * width
        l_t, taut = params.lambda_ * params.theta, params.tau / params.theta
        on_gpu = image0.device.type != "cpu"
        grad_x, grad_y = centred_gradient(image1)
        sources = torch.stack([image1, grad_x, grad_y], dim=1)
        zeros = torch.zeros_like(u1)
        state: tuple[torch.Tensor, ...] = (u1, u2, zeros, zeros, zeros, zeros)
        for _ in range(params.warps):
            warped_image, i1wx, i1wy = remap_cubic(sources, state[0], state[1]).unbind(dim=1)
            grad = i1wx * i1wx + i1wy * i1wy
            rho_c = warped_image - i1wx * state[0] - i1wy * state[1] - image0
            warped = (i1wx, i1wy, grad, rho_c)
            active = torch.ones(batch, dtype=torch.bool, device=image0.device)
            for _ in range(params.outer_iterations):
                if params.median_filtering > 1:
                    keep = active[:, None, None]
                    state = (
                        torch.where(keep, median5(state[0]), state[0]),
                        torch.where(keep, median5(state[1]), state[1]),
                        *state[2:],
                    )
                for _ in range(params.inner_iterations):
                    # on a CPU a finished pair is cheap to see; a GPU masks always rather than wait for it
                    mask = None if not on_gpu and bool(active.all()) else active
                    state, error = _inner_step(state, warped, mask, l_t, params.theta, taut)
                    active = active & (error > threshold)
                if not bool(active.any()):
                    break
        return state[0], state[1]


class TorchTVL1:
    """The ``tvl1-torch`` flow engine: this TV-L1 on the extraction device, a batch of pairs per call."""

    on_device: ClassVar[bool] = True

    def __init__(self, params: Mapping[str, Any], device: str = "cpu"):
        chosen = TVL1Params.from_params(params)
        if chosen.gamma != 0.0:
            raise WtalError("tvl1-torch supports gamma = 0 only (OpenCV's default)", "use the tvl1 preset for gamma")
        if chosen.median_filtering not in (0, 1, 5):
            raise WtalError("tvl1-torch median filtering is 5x5 (OpenCV's default) or off")
        self.tvl1 = TVL1(chosen)

    def pairs(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, H, W, 3) uint8 frames on any device -> (N - 1, H, W, 2) flow from each frame to the next."""
        gray = rgb_to_gray(frames)
        return self.tvl1(gray[:-1], gray[1:])


__all__ = ["TVL1", "TorchTVL1", "pyramid_sizes", "remap_cubic", "resize_linear", "rgb_to_gray"]
