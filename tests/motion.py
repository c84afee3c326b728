"""Frame pairs with known motion (for flow tests and benchmarks): a textured scene translated, rotated,
with a textured object moving over a static background, and a static pair. Each comes with the true
flow from the first frame to the second, (H, W, 2) in pixels (dx, dy)."""

from __future__ import annotations

import cv2
import numpy as np

MARGIN = 32  # scene pixels around the view, so translated and rotated content comes from the texture


def texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A float32 image in [0, 255] with fine and coarse structure (TV-L1 needs gradients to lock on)."""
    noise = rng.uniform(0, 255, (size, size)).astype(np.float32)
    image = cv2.GaussianBlur(noise, (0, 0), 1.5) * 0.6 + cv2.GaussianBlur(noise, (0, 0), 4) * 0.4
    return (image - image.min()) / (image.max() - image.min()) * 255


def _warp(image: np.ndarray, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return cv2.warpAffine(image, matrix.astype(np.float32), size, flags=cv2.INTER_CUBIC)


def _u8(image: np.ndarray) -> np.ndarray:
    return np.round(image).clip(0, 255).astype(np.uint8)


def known_motion_pairs(size: int = 224, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """name -> (first frame, second frame, true flow); frames are (size, size) uint8 grey."""
    rng = np.random.default_rng(seed)
    scene = texture(rng, size + 2 * MARGIN)
    view = (slice(MARGIN, MARGIN + size), slice(MARGIN, MARGIN + size))
    first = scene[view]
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    pairs = {}

    shift = (2.6, -1.3)
    moved = _warp(scene, np.array([[1, 0, shift[0]], [0, 1, shift[1]]]), scene.shape[::-1])[view]
    pairs["translation"] = (first, moved, np.stack([np.full_like(xs, shift[0]), np.full_like(ys, shift[1])], -1))

    centre = (scene.shape[1] / 2 - 0.5, scene.shape[0] / 2 - 0.5)
    rotation = cv2.getRotationMatrix2D(centre, 3.0, 1.0)
    rotated = _warp(scene, rotation, scene.shape[::-1])[view]
    sx, sy = xs + MARGIN, ys + MARGIN
    to_x = rotation[0, 0] * sx + rotation[0, 1] * sy + rotation[0, 2]
    to_y = rotation[1, 0] * sx + rotation[1, 1] * sy + rotation[1, 2]
    pairs["rotation"] = (first, rotated, np.stack([to_x - sx, to_y - sy], -1).astype(np.float32))

    sprite = texture(rng, 60)
    oy, ox = np.mgrid[0:60, 0:60]
    disc = (((ox - 29.5) ** 2 + (oy - 29.5) ** 2) < 28**2).astype(np.float32)

    def place(x: float, y: float) -> tuple[np.ndarray, np.ndarray]:
        matrix = np.array([[1, 0, x], [0, 1, y]])
        mask = cv2.warpAffine(disc, matrix.astype(np.float32), (size, size), flags=cv2.INTER_LINEAR)
        return first * (1 - mask) + _warp(sprite, matrix, (size, size)) * mask, mask

    step = (3.5, 2.0)
    before, mask = place(80.0, 70.0)
    after, _ = place(80.0 + step[0], 70.0 + step[1])
    object_flow = np.zeros((size, size, 2), np.float32)
    object_flow[mask > 0.5] = step
    pairs["moving object"] = (before, after, object_flow)

    pairs["static"] = (first, first.copy(), np.zeros((size, size, 2), np.float32))
    return {name: (_u8(a), _u8(b), truth) for name, (a, b, truth) in pairs.items()}


def end_point_error(flow: np.ndarray, reference: np.ndarray) -> float:
    """Mean Euclidean distance between two (H, W, 2) flows, in pixels."""
    return float(np.sqrt(((flow - reference) ** 2).sum(-1)).mean())
