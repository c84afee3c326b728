"""The contract every method keeps, so the trainer and the localizer never branch on method names.

A method is an ``nn.Module`` whose forward maps features (B, T, D) to a :class:`MethodOutput`, plus a
``loss(outputs, batch)`` returning named terms. How it is trained (sampling, optimizer, accumulation)
and how its scores become detections (normalization, resampling, proposals, NMS) are settings of its
config dataclass; each method's subclass sets the values its official code uses, and every choice
the official code makes that one could argue with is a setting too (README: "Faithful by default").
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..errors import WtalError


def steps(start: float, stop: float, step: float) -> tuple[float, ...]:
    """``np.arange(start, stop, step)`` as plain floats, the values the official code iterates over
    (plain floats keep checkpoints loadable with ``weights_only=True``)."""
    return tuple(float(v) for v in np.arange(start, stop, step))


#: allowed values of the string settings, so a typo in ``--set`` is caught before training starts
CHOICES: dict[str, tuple[str, ...]] = {
    "train_sampling": ("random", "interpolate", "whole"),
    "test_sampling": ("uniform", "uniform-if-longer", "interpolate", "whole"),
    "gradient_accumulation": ("mean", "sum"),
    "cas_normalization": ("relu-minmax", "relu-minmax-clip", "minmax"),
    "resample": ("starts-extrapolated", "starts-inclusive", "centres"),
    "outer_region": ("bas", "backtal", "cmcs"),
}


#: settings whose smallest sensible value is not 0
_LOWEST: dict[str, float] = {
    name: 1
    for name in (
        "num_segments",
        "batch_size",
        "accumulate",
        "iterations",
        "hidden_dim",
        "min_proposal_length",
        "topk_divisor",
        "filter_dim",
        "action_divisor",
        "background_divisor",
        "branches",
        "embed_dim",
        "branch_dim",
        "attention_dim",
        "embed_hidden",
    )
}


def _fits(value: Any, hint: Any) -> bool:
    """Whether a plain value fits a config field's annotation (bool is not an int here, an int is a float)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is type(None):
        return value is None
    if origin is tuple:
        return isinstance(value, (tuple, list)) and all(_fits(v, args[0]) for v in value)
    if args:  # a union
        return any(_fits(value, a) for a in args)
    return True


def _describe(hint: Any) -> str:
    args = typing.get_args(hint)
    if typing.get_origin(hint) is tuple:
        return f"list of {_describe(args[0])}s"
    if args:
        return " or ".join(_describe(a) for a in args)
    return {bool: "true/false", int: "integer", float: "number", str: "text", type(None): "none"}.get(hint, str(hint))


@dataclass
class MethodConfig:
    """Settings shared by every method; each method's subclass sets its official values."""

    # -- training ------------------------------------------------------------------------------
    num_segments: int = 750  # rows per training video (and per test video, where test_sampling resamples)
    train_sampling: str = "random"  # random: one random row per span (BaS-Net/UM); interpolate; whole video
    test_sampling: str = "uniform"  # uniform to num_segments; uniform-if-longer; interpolate; whole
    batch_size: int = 16  # videos per forward pass
    accumulate: int = 1  # forward passes per optimizer step
    gradient_accumulation: str = "mean"  # sum: gradients of the accumulated passes add up (CMCS)
    single_label_copies: bool = False  # a video with L labels trains as L one-label copies weighted 1/L
    iterations: int = 1500  # optimizer steps
    lr: float = 1e-4
    weight_decay: float = 5e-4
    hidden_dim: int = 2048  # width of the temporal layers, whatever the input D (official: 2048)
    leaky_slope: float = 0.01  # nn.LeakyReLU() default, as the official code uses
    dropout: float = 0.7
    normalize_features: bool = False  # standardize each input dimension with training-set statistics
    uses_clicks: bool = False  # needs background clicks (BackTAL)
    has_background_class: bool = True  # can train on background-only pseudo videos (hard negatives)
    negatives_by_default: bool = False  # train with hard negatives whenever DATA_DIR/negatives exists

    # -- localization ----------------------------------------------------------------------------
    class_threshold: float = 0.25  # video-level score a class needs to be localized
    argmax_fallback: bool = False  # localize the top class when none passes the threshold (UM)
    cas_normalization: str = "relu-minmax"  # per class over time; relu-minmax = official minmax_norm
    resample: str = "starts-extrapolated"  # grid geometry (see localize.resample); centres = half-pixel
    upsample: int | str = 24  # grid points per input row, or "frames": one per video frame
    cas_thresholds: tuple[float, ...] = steps(0.0, 0.25, 0.025)
    thresholds_relative_to_mean: bool = False  # threshold = value x mean of the signal (CMCS)
    mask_dilation: int = 0  # grid points a thresholded mask is dilated by (CMCS: 20 frames)
    min_proposal_length: int = 1  # grid points (UM skips single-point proposals)
    actionness_thresholds: tuple[float, ...] = ()  # second proposal set, if the method has actionness
    contrast_on_thresholded: bool = True  # score CAS proposals on the CAS with values below threshold zeroed
    outer_ratio: float = 0.25  # outer region length / proposal length (outer-inner contrast)
    outer_region: str = "bas"  # which official rounding of the outer region (see localize.outer_bounds)
    class_score_weight: float = 0.2  # weight of the video-level class score in a proposal's score
    binarize_class_score: bool = False  # BaS-Net's test code scores with 1 instead of the probability
    nms_threshold: float | None = 0.7  # per-class NMS tIoU; None keeps every proposal
    nms_plus_one: bool = True  # the official NMS adds 1 to lengths and overlaps (meant for frame indices)
    clip_to_duration: bool = False  # clip segments to [0, duration] (CMCS)
    eval_tiou: str = "0.1:0.9:0.1"  # the tIoU range the paper reports (wtal test's default)

    def __post_init__(self) -> None:
        """One place validates every setting, whether it came from a flag, ``--set`` or a checkpoint."""
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            value = getattr(self, f.name)
            if not _fits(value, hints[f.name]):
                raise WtalError(
                    f"setting {f.name}={value!r} is not a valid {_describe(hints[f.name])}",
                    f"use --set {f.name}=<{_describe(hints[f.name])}>",
                )
            if isinstance(value, float) and not math.isfinite(value):
                raise WtalError(f"setting {f.name}={value!r} must be finite")
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value < _LOWEST.get(f.name, 0):
                raise WtalError(f"setting {f.name}={value!r} must be at least {_LOWEST.get(f.name, 0)}")
        for name, allowed in CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise WtalError(
                    f"setting {name}={value!r} is not one of {', '.join(allowed)}", f"use --set {name}={allowed[0]}"
                )
        if self.upsample != "frames" and not (isinstance(self.upsample, int) and self.upsample >= 1):
            raise WtalError(f"setting upsample={self.upsample!r} must be a positive integer or 'frames'")
        if self.lr <= 0:
            raise WtalError(f"setting lr={self.lr!r} must be positive", "e.g. --lr 1e-4")
        if not 0 <= self.dropout < 1:
            raise WtalError(f"setting dropout={self.dropout!r} must lie in [0, 1)")
        if self.nms_threshold is not None and not 0 < self.nms_threshold <= 1:
            raise WtalError(f"setting nms_threshold={self.nms_threshold!r} must lie in (0, 1], or be none")
        self.cas_thresholds = tuple(float(v) for v in self.cas_thresholds)
        self.actionness_thresholds = tuple(float(v) for v in self.actionness_thresholds)
        if not all(math.isfinite(v) for v in self.cas_thresholds + self.actionness_thresholds):
            raise WtalError("thresholds must be finite numbers")

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> MethodConfig:
        """Build from plain values (a checkpoint's config or ``--set`` overrides); unknown names are
        a one-line error listing the known ones."""
        known = {f.name for f in fields(cls)}
        unknown = set(settings) - known
        if unknown:
            raise WtalError(f"unknown setting(s) {sorted(unknown)}", f"known: {', '.join(sorted(known))}")
        values: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in settings.items()}
        return cls(**values)


@dataclass
class MethodOutput:
    video_scores: torch.Tensor  # (B, C) probability of each action class, to pick classes at test time
    cas: torch.Tensor  # (B, T, C) the per-segment signal the method localizes on, before config.cas_normalization
    actionness: torch.Tensor | None  # (B, T) class-agnostic score in [0, 1] for a second proposal set, or None
    internals: dict[str, torch.Tensor] = field(default_factory=dict)  # what the method's own loss needs


@dataclass
class Batch:
    features: torch.Tensor  # (B, T, D)
    labels: torch.Tensor  # (B, C) multi-hot; all zero for a background-only video
    background_only: torch.Tensor  # (B,) bool
    clicks: torch.Tensor  # (B, T) 1 where a row was clicked as background, else 0
    weights: torch.Tensor  # (B,) per-video loss weight (1 / #labels for single-label copies, else 1)


class Method(nn.Module):
    """Base class: subclasses define ``Config``, ``__init__(feature_dim, num_classes, config)``,
    ``forward``, ``loss`` and ``official_state_dict`` (to import the authors' checkpoints)."""

    Config: ClassVar[type[MethodConfig]] = MethodConfig
    name: ClassVar[str] = ""
    feature_mean: torch.Tensor  # buffers: identity unless normalize_features
    feature_std: torch.Tensor

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

    #: how many official checkpoint files make one model (CMCS: 1 early fusion, 2 late fusion)
    official_files: ClassVar[tuple[int, ...]] = (1,)

    @classmethod
    def convert_official(cls, states: list[dict[str, torch.Tensor]]) -> tuple[dict[str, torch.Tensor], int, int, dict]:
        """Official checkpoints' state dicts -> (our state dict, feature dim, class count, settings the
        tensors imply); raises KeyError naming a missing official key."""
        raise NotImplementedError

    @classmethod
    def from_official(cls, states: list[dict[str, torch.Tensor]], **settings: Any) -> Method:
        """A model holding the weights of the authors' checkpoint(s), with the widths they imply and this
        method's official settings otherwise (``settings`` override them). Raises ValueError on a key or
        shape that does not fit."""
        if len(states) not in cls.official_files:
            raise ValueError(
                f"{cls.name} takes {' or '.join(map(str, cls.official_files))} official checkpoint file(s), "
                f"got {len(states)}"
            )
        try:
            state, feature_dim, num_classes, implied = cls.convert_official(states)
        except KeyError as exc:
            raise ValueError(f"not an official {cls.name} checkpoint: key {exc} is missing") from exc
        model = cls(feature_dim, num_classes, cls.Config.from_settings({**implied, **settings}))
        ours = model.state_dict()
        for key, value in state.items():
            if ours[key].shape != value.shape:
                raise ValueError(f"{key}: shape {tuple(value.shape)} does not fit {tuple(ours[key].shape)}")
        model.load_state_dict({**ours, **state})
        return model


def topk_mean(cas: torch.Tensor, k: int) -> torch.Tensor:
    """(B, T, K) -> (B, K): mean of the k largest values over time (sorted and sliced, as the
    official code does; at least one value)."""
    return cas.sort(dim=1, descending=True).values[:, : max(1, k)].mean(dim=1)


def normalize_rows(target: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Each row divided by (its sum + eps): multi-hot labels as a distribution (all-zero rows stay 0)."""
    return target / (target.sum(dim=1, keepdim=True) + eps).clamp_min(1e-30)


def normalized_targets(labels: torch.Tensor, background: float, eps: float = 0.0) -> torch.Tensor:
    """[y, background] / (sum + eps): the video-level target over C + 1 classes."""
    return normalize_rows(torch.cat([labels, torch.full_like(labels[:, :1], background)], dim=1), eps)


def rename_official(state: dict[str, torch.Tensor], names: dict[str, str]) -> dict[str, torch.Tensor]:
    """Pick and rename an official state dict's tensors by ``{official key: our key}``; a missing key
    raises KeyError with its name, extra keys (e.g. BatchNorm counters) are ignored."""
    return {ours: state[official] for official, ours in names.items()}
