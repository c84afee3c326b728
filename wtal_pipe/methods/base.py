"""The contract every method keeps, so the trainer and the localizer never branch on method names.

A method is an ``nn.Module`` whose forward maps features (B, T, D) to a :class:`MethodOutput`, plus a
``loss(outputs, batch)`` returning named terms. Its training and localization defaults live in its
config dataclass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


def steps(start: float, stop: float, step: float) -> tuple[float, ...]:
    """Plain-float thresholds ``arange(start, stop, step)`` (plain floats keep checkpoints loadable
    with ``weights_only=True``)."""
    return tuple(round(float(v), 6) for v in np.arange(start, stop - 1e-9, step))


@dataclass
class MethodConfig:
    """Defaults shared by every method; each method's subclass sets the published values."""

    # training
    num_segments: int | None = 750  # rows sampled per video (None: the whole video, batch 1)
    batch_size: int = 16  # videos per forward pass
    accumulate: int = 1  # forward passes per optimizer step
    iterations: int = 1500  # optimizer steps
    lr: float = 1e-4
    weight_decay: float = 5e-4
    # localization
    class_threshold: float = 0.25  # video-level score a class needs to be localized
    cas_thresholds: tuple[float, ...] = steps(0.0, 0.25, 0.025)
    actionness_thresholds: tuple[float, ...] = ()  # second proposal set, if the method has actionness
    upsample: int = 24  # CAS interpolation factor before thresholding
    outer_ratio: float = 0.25  # outer region length / proposal length (outer-inner contrast)
    class_score_weight: float = 0.2  # weight of the video-level class score in a proposal's score
    nms_threshold: float | None = 0.7  # per-class NMS tIoU; None keeps every proposal
    uses_clicks: bool = False  # needs background clicks (BackTAL)
    has_background_class: bool = True  # can train on background-only pseudo videos (hard negatives)
    negatives_by_default: bool = False  # train with hard negatives whenever DATA_DIR/negatives exists
    normalize_features: bool = False  # standardize each feature dimension with training-set statistics


@dataclass
class MethodOutput:
    video_scores: torch.Tensor  # (B, C) probability of each action class, to pick classes at test time
    cas: torch.Tensor  # (B, T, C) per-segment class scores the method localizes on
    actionness: torch.Tensor | None  # (B, T) class-agnostic score for a second proposal set, or None
    internals: dict  # what the method's own loss needs


@dataclass
class Batch:
    features: torch.Tensor  # (B, T, D)
    labels: torch.Tensor  # (B, C) multi-hot; all zero for a background-only video
    background_only: torch.Tensor  # (B,) bool
    clicks: torch.Tensor  # (B, T) 1 where a row was clicked as background, else 0


class Method(nn.Module):
    """Base class: subclasses define ``Config``, ``__init__(feature_dim, num_classes, config)``,
    ``forward`` and ``loss``."""

    Config = MethodConfig

    def __init__(self, feature_dim: int, num_classes: int, config: MethodConfig):
        super().__init__()
        self.feature_dim, self.num_classes, self.config = feature_dim, num_classes, config
        # Identity unless normalize_features: the trainer fills them and they travel in the checkpoint,
        # so training and inference always see the same input scale.
        self.register_buffer("feature_mean", torch.zeros(feature_dim))
        self.register_buffer("feature_std", torch.ones(feature_dim))
        self.register_forward_pre_hook(lambda module, args: ((args[0] - module.feature_mean) / module.feature_std,))

    def forward(self, features: torch.Tensor) -> MethodOutput:
        raise NotImplementedError

    def loss(self, outputs: MethodOutput, batch: Batch) -> dict[str, torch.Tensor]:
        raise NotImplementedError


def topk_mean(cas: torch.Tensor, ratio_divisor: int) -> torch.Tensor:
    """(B, T, K) -> (B, K): mean of the top T // divisor values over time (at least one)."""
    k = max(1, cas.shape[1] // ratio_divisor)
    return cas.topk(k, dim=1).values.mean(dim=1)


def normalized_targets(labels: torch.Tensor, background: float) -> torch.Tensor:
    """[y, background] / sum: the video-level target over C + 1 classes."""
    extra = torch.full_like(labels[:, :1], background)
    target = torch.cat([labels, extra], dim=1)
    return target / target.sum(dim=1, keepdim=True).clamp_min(1e-8)
