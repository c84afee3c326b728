"""A method's settings, split by purpose, each group typed and validated in one place.

- :class:`TrainingSettings`: how the shared trainer feeds and optimizes the network;
- a method's own :class:`NetworkSettings` subclass: the network and its loss (what the weights mean);
- :class:`LocalizationSettings`: everything test time does (the input's sampling, class selection,
  proposals, NMS, the tIoU range the paper reports); a trained run can change these without retraining.

Settings are addressed by name across the groups (``--set lr=1e-3``, ``--set nms_threshold=0.5``), so
every name belongs to one group. What a method *is* (needs clicks, has a background class, outputs an
actionness score) is a class attribute of the method, never a setting. Every value is checked when a
group is made, whether it came from a flag, ``--set`` or a checkpoint: its type, its ``Literal`` choices
and its bounds (``Annotated[int, AtLeast(1)]``).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, fields
from typing import Annotated, Any, Literal

import numpy as np

from ..errors import WtalError
from ..intervals import parse_tiou


def steps(start: float, stop: float, step: float) -> tuple[float, ...]:
    """``np.arange(start, stop, step)`` as plain floats, the values the official code iterates over
    (plain floats keep checkpoints loadable with ``weights_only=True``)."""
    return tuple(float(v) for v in np.arange(start, stop, step))


@dataclass(frozen=True)
class AtLeast:
    low: float


@dataclass(frozen=True)
class Above:
    low: float


@dataclass(frozen=True)
class Below:
    high: float


@dataclass(frozen=True)
class AtMost:
    high: float


@dataclass(frozen=True)
class NonEmpty:
    """A list setting that needs at least one value."""


Count = Annotated[int, AtLeast(1)]
Share = Annotated[float, AtLeast(0), Below(1)]
TrainSampling = Literal["random", "interpolate", "whole"]
TestSampling = Literal["uniform", "uniform-if-longer", "interpolate", "whole"]


def _fits(value: Any, hint: Any) -> bool:
    """Whether a plain value fits an annotation (bool is not an int here, an int is a float)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        return _fits(value, args[0])
    if origin is Literal:
        return value in args
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


def describe(hint: Any) -> str:
    """An annotation in words, for error messages."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        return describe(args[0])
    if origin is Literal:
        return "one of " + ", ".join(map(str, args))
    if origin is tuple:
        return f"list of {describe(args[0])}s"
    if args:
        return " or ".join(describe(a) for a in args)
    return {bool: "true/false", int: "integer", float: "number", str: "text", type(None): "none"}.get(hint, str(hint))


def _bounds_error(name: str, value: Any, hint: Any) -> str | None:
    """Why ``value`` breaks the bounds its annotation states, or None (in a union: the member it fits)."""
    if typing.get_origin(hint) not in (Annotated, Literal, tuple) and typing.get_args(hint):
        member = next((a for a in typing.get_args(hint) if _fits(value, a)), None)
        return None if member is None else _bounds_error(name, value, member)
    if typing.get_origin(hint) is not Annotated or isinstance(value, bool):
        return None
    for bound in typing.get_args(hint)[1:]:
        numbers = value if isinstance(value, tuple) else (value,)
        if isinstance(bound, NonEmpty) and not value:
            return f"setting {name} needs at least one value"
        for v in numbers:
            if not isinstance(v, (int, float)):
                continue
            if isinstance(bound, AtLeast) and v < bound.low:
                return f"setting {name}={v!r} must be at least {bound.low:g}"
            if isinstance(bound, Above) and v <= bound.low:
                return f"setting {name}={v!r} must be above {bound.low:g}"
            if isinstance(bound, Below) and v >= bound.high:
                return f"setting {name}={v!r} must be below {bound.high:g}"
            if isinstance(bound, AtMost) and v > bound.high:
                return f"setting {name}={v!r} must be at most {bound.high:g}"
    return None


@dataclass(frozen=True)
class Settings:
    """Base of the three groups: every field checked against its annotation when the group is made."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self), include_extras=True)
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):  # JSON and --set give lists; settings hold tuples
                value = tuple(value)
                object.__setattr__(self, f.name, value)
            hint = hints[f.name]
            if not _fits(value, hint):
                raise WtalError(
                    f"setting {f.name}={value!r} is not a valid {describe(hint)}",
                    f"use --set {f.name}=<{describe(hint)}>",
                )
            numbers = value if isinstance(value, tuple) else (value,)
            if any(isinstance(v, float) and not math.isfinite(v) for v in numbers):
                raise WtalError(f"setting {f.name}={value!r} must be finite")
            problem = _bounds_error(f.name, value, hint)
            if problem:
                raise WtalError(problem)
            if isinstance(value, tuple):  # stored as plain floats (checkpoints load with weights_only=True)
                object.__setattr__(self, f.name, tuple(float(v) for v in value))

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def replace(self, **changes: Any) -> Any:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class TrainingSettings(Settings):
    """How the shared trainer feeds and optimizes a method (``train.py``)."""

    train_sampling: TrainSampling = "random"  # random: one random row per span (BaS-Net/UM); interpolate; whole
    batch_size: Count = 16  # videos per forward pass
    batch_order: Literal["epochs", "fresh"] = "epochs"  # how videos are drawn into batches (train.BatchSampler)
    drop_last: bool = False  # an epoch's last, short batch is skipped (PyTorch's drop_last: CASE)
    accumulate: Count = 1  # forward passes per optimizer step
    gradient_accumulation: Literal["mean", "sum"] = "mean"  # sum: gradients of the accumulated passes add up
    single_label_copies: bool = False  # a video with L labels trains as L one-label copies weighted 1/L
    iterations: Count = 1500  # optimizer steps
    epochs: Count | None = None  # when set, the steps are this many passes over the training videos instead
    lr: Annotated[float, Above(0)] = 1e-4
    lr_decay_at: Count | None = None  # after this many steps the learning rate is multiplied by lr_decay (CMCS)
    lr_decay: Annotated[float, Above(0)] = 0.1
    weight_decay: Annotated[float, AtLeast(0)] = 5e-4
    normalize_features: bool = False  # standardize each input dimension with training-set statistics

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.train_sampling == "whole" and self.batch_size != 1:
            raise WtalError("whole-video training (train_sampling whole) needs --batch-size 1")


@dataclass(frozen=True)
class NetworkSettings(Settings):
    """The network and its loss; each method subclasses it with its own fields (changing one changes
    what the weights mean, so a trained run's are fixed)."""

    num_segments: Count = 750  # rows per training video, and per test video where test_sampling resamples


PseudoLabelTarget = Literal["cas", "cas-with-background", "foreground"]


@dataclass(frozen=True)
class AddonSettings(Settings):
    """What any method can train with beside its own loss (``methods/addons.py``), off by default so the methods
    stay their papers'. A class-agnostic actionness head (ASL, CVPR 2021; CASE, ICCV 2023): trained on the top /
    bottom rows of the method's own CAS (or on pseudo labels in ``wtal refine``), its score scales the CAS at test
    time. The snippet pseudo-label term of ``wtal refine``, on the output ``pseudo_label_target`` names: the
    localized CAS (per labelled class), the per-row softmax over classes and background (methods with a
    background class), or the class-agnostic foreground weight (methods with one)."""

    actionness_head: bool = False
    actionness_head_dim: Count = 256
    actionness_head_weight: Annotated[float, AtLeast(0)] = 1.0
    actionness_head_topk: Annotated[float, Above(0), AtMost(0.5)] = 0.125  # share of rows taken as action / background
    pseudo_label_weight: Annotated[float, AtLeast(0)] = 1.0
    pseudo_label_target: PseudoLabelTarget = "cas"


@dataclass(frozen=True)
class LocalizationSettings(Settings):
    """Everything test time does, from the model's input to the detections (``pipeline.py``,
    ``localize.py``)."""

    test_sampling: TestSampling = "uniform"  # uniform to num_segments; uniform-if-longer; interpolate; whole
    class_threshold: Annotated[float, AtLeast(0), Below(1)] = 0.25  # video score a class needs
    argmax_fallback: bool = False  # localize the top class when none passes the threshold (UM)
    cas_normalization: Literal["relu-minmax", "relu-minmax-clip", "minmax", "none"] = "relu-minmax"  # per class
    resample: Literal["starts-extrapolated", "starts-inclusive", "centres"] = "starts-extrapolated"  # grid geometry
    upsample: Count | Literal["frames"] = 24  # grid points per input row, or one per video frame
    cas_thresholds: Annotated[tuple[float, ...], NonEmpty(), AtLeast(0)] = steps(0.0, 0.25, 0.025)
    thresholds_relative_to_mean: bool = False  # threshold = value x mean of the signal (CMCS)
    mask_dilation: Annotated[int, AtLeast(0)] = 0  # grid points a thresholded mask is dilated by (CMCS: 20 frames)
    min_proposal_length: Count = 1  # grid points (UM skips single-point proposals)
    actionness_thresholds: Annotated[
        tuple[float, ...], AtLeast(0)
    ] = ()  # second proposal set (methods with actionness)
    contrast_on_thresholded: bool = True  # score CAS proposals on the CAS with values below threshold zeroed
    outer_ratio: Annotated[float, AtLeast(0)] = 0.25  # outer region length / proposal length
    # where the outer region's right side stops (localize.outer_bounds): through int(end + r L) (BaS-Net, UM),
    # just before it (BackTAL), or through it with at least one point each side and no left side past the
    # video's start (CMCS)
    outer_region: Literal["through-reach", "before-reach", "one-point-minimum"] = "through-reach"
    class_score_weight: Annotated[float, AtLeast(0)] = 0.2  # weight of the video-level score in a proposal's
    binarize_class_score: bool = False  # BaS-Net's test code scores with 1 instead of the probability
    proposal_shrink: Annotated[float, AtLeast(0), Below(0.5)] = (
        0.0  # share of a proposal cut at each end, after scoring
    )
    whole_video_score: float | None = None  # a class with proposals also proposes the whole video at this score
    nms_threshold: Annotated[float, Above(0)] | None = 0.7  # per-class NMS tIoU; None keeps every proposal
    nms_plus_one: bool = True  # the official NMS adds 1 to lengths and overlaps (meant for frame indices)
    # soft-NMS (CASE): what NMS would drop is kept with its score x exp(-tIoU^2 / alpha); None drops it
    soft_nms_alpha: Annotated[float, Above(0)] | None = None
    clip_to_duration: bool = False  # clip segments to [0, duration] (CMCS)
    eval_tiou: str = "0.1:0.9:0.1"  # the tIoU range the paper reports (wtal test's default)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.nms_threshold is not None and self.nms_threshold > 1:
            raise WtalError(f"setting nms_threshold={self.nms_threshold!r} must lie in (0, 1], or be none")
        try:
            parse_tiou(self.eval_tiou)  # checked when a run is trained, not first when it is tested
        except WtalError as exc:
            raise WtalError(f"setting eval_tiou={self.eval_tiou!r}: {exc.what}", exc.fix) from None
        absolute = () if self.thresholds_relative_to_mean else self.cas_thresholds
        if any(v > 1 for v in absolute + self.actionness_thresholds):
            raise WtalError(
                "thresholds on a min-max normalized signal above 1 never select anything",
                "use values in [0, 1], e.g. --set cas_thresholds=[0.1,0.2]",
            )


GROUPS = ("training", "network", "localization", "addons")


@dataclass(frozen=True)
class MethodConfig:
    """A method's setting groups."""

    training: TrainingSettings
    network: NetworkSettings
    localization: LocalizationSettings
    addons: AddonSettings

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {group: dataclasses.asdict(getattr(self, group)) for group in GROUPS}

    def values(self) -> dict[str, Any]:
        """Every setting by name (names are unique across the groups: :func:`owners`)."""
        return flatten(self.to_dict())


def flatten(saved: dict[str, Any]) -> dict[str, Any]:
    """Settings as a run records them, grouped (or, in runs of wtal-pipe/2, flat) -> every setting by name."""
    if set(saved) <= set(GROUPS):
        return {name: value for group in saved.values() if isinstance(group, dict) for name, value in group.items()}
    return dict(saved)


def owners(groups: dict[str, type[Settings]]) -> dict[str, str]:
    """Setting name -> the group that owns it, for groups that share one ``--set`` namespace; a name in two
    groups is a bug (``--set`` could not tell them apart), caught here, the one place names meet."""
    owner: dict[str, str] = {}
    for group, settings in groups.items():
        for name in settings.names():
            if owner.setdefault(name, group) != group:
                raise ValueError(f"setting {name!r} belongs to both {owner[name]} and {group}")
    return owner


@dataclass(frozen=True)
class Sourced:
    """A preset value and where it comes from (an official config file, a paper)."""

    value: Any
    source: str


Presets = dict[str, dict[str, Sourced]]  # preset name -> setting -> value with its source
