"""The contract every method keeps, so the trainer and the localizer never branch on method names.

A method is an ``nn.Module`` whose forward maps features (B, T, D) to a :class:`MethodOutput`, plus a
``loss(outputs, batch)`` returning named terms. Its settings come in three groups (``settings.py``):
its own :class:`NetworkSettings` subclass, and the values its official code uses for the shared
:class:`TrainingSettings` and :class:`LocalizationSettings`; every choice the official code makes that
one could argue with is a setting too (README: "Faithful by default"). What the method *is* (needs
clicks, has a background class, ...) is a class attribute.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

import torch
from torch import nn

from ..errors import WtalError
from .addons import (
    ActionnessHead,
    pseudo_background_loss,
    pseudo_cas_loss,
    pseudo_foreground_loss,
    ranked_targets,
    weighted_bce,
)
from .settings import (
    GROUPS,
    AddonSettings,
    LocalizationSettings,
    MethodConfig,
    NetworkSettings,
    Presets,
    Settings,
    TrainingSettings,
    flatten,
    owners,
)

#: settings a run of an earlier wtal-pipe recorded that are no settings now (method traits, or widths of
#: modules a method does not have); dropped when such a run is loaded
RETIRED = frozenset(
    {"uses_clicks", "has_background_class", "negatives_by_default", "hidden_dim", "leaky_slope", "dropout"}
    | {"topk_divisor"}  # BackTAL's top-k is a ratio now (its default 0.125 is 1 / 8)
)
#: setting values renamed since (named after what they do, not after a paper): old value -> new
RENAMED = {"outer_region": {"bas": "through-reach", "backtal": "before-reach", "cmcs": "one-point-minimum"}}


@dataclass
class MethodOutput:
    video_scores: torch.Tensor  # (B, C) probability of each action class, to pick classes at test time
    cas: torch.Tensor  # (B, T, C) the per-segment signal the method localizes on, before config.cas_normalization
    actionness: torch.Tensor | None  # (B, T) class-agnostic score in [0, 1] for a second proposal set, or None
    internals: dict[str, torch.Tensor] = field(default_factory=dict)  # what the method's own loss needs
    # what pseudo labels can supervise besides the CAS (wtal refine): per-row logits over the classes and
    # background (methods with a background class), and a class-agnostic foreground weight in (0, 1)
    cas_with_background: torch.Tensor | None = None  # (B, T, C + 1), background last
    foreground: torch.Tensor | None = None  # (B, T)


@dataclass
class Batch:
    features: torch.Tensor  # (B, T, D)
    labels: torch.Tensor  # (B, C) multi-hot; all zero for a background-only video
    background_only: torch.Tensor  # (B,) bool
    clicks: torch.Tensor  # (B, T) 1 where a row was clicked as background, else 0
    weights: torch.Tensor  # (B,) per-video loss weight (1 / #labels for single-label copies, else 1)
    pseudo: torch.Tensor | None = None  # (B, T, C) soft per-row targets from a previous round (wtal refine)


class Method(nn.Module):
    """Base class: subclasses set ``Network`` (their settings) and the official training and localization
    defaults, the traits below, and define ``__init__(feature_dim, num_classes, config)``, ``forward``,
    ``loss`` and ``convert_official`` (to import the authors' checkpoints)."""

    name: ClassVar[str] = ""
    Network: ClassVar[type[NetworkSettings]] = NetworkSettings
    training_defaults: ClassVar[TrainingSettings] = TrainingSettings()
    localization_defaults: ClassVar[LocalizationSettings] = LocalizationSettings()
    addon_defaults: ClassVar[AddonSettings] = AddonSettings()  # e.g. which output pseudo labels train by default
    uses_clicks: ClassVar[bool] = False  # trained with background clicks (BackTAL)
    has_background_class: ClassVar[bool] = True  # can train on background-only pseudo videos (hard negatives)
    negatives_by_default: ClassVar[bool] = False  # trains with hard negatives whenever DATA_DIR/negatives exists
    has_actionness: ClassVar[bool] = False  # outputs a class-agnostic actionness (a second proposal set)
    has_foreground: ClassVar[bool] = False  # outputs a class-agnostic foreground weight (BaS-Net's filter)
    cas_kind: ClassVar[Literal["logits", "probabilities"]] = "logits"  # what ``MethodOutput.cas`` holds
    #: per benchmark preset (``presets.py``), the settings that differ from the THUMOS14 defaults, with sources
    presets: ClassVar[Presets] = {}
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
        addons = config.addons
        self.actionness_head = (
            ActionnessHead(feature_dim, addons.actionness_head_dim) if addons.actionness_head else None
        )
        if self.actionness_head is not None:
            self.register_forward_hook(_scale_by_head)

    @classmethod
    def defaults(cls) -> MethodConfig:
        return MethodConfig(cls.training_defaults, cls.Network(), cls.localization_defaults, cls.addon_defaults)

    @classmethod
    def setting_groups(cls) -> dict[str, type[Settings]]:
        return {
            "training": TrainingSettings,
            "network": cls.Network,
            "localization": LocalizationSettings,
            "addons": AddonSettings,
        }

    @classmethod
    def configure(
        cls, changes: dict[str, Any], base: MethodConfig | None = None, only: tuple[str, ...] = GROUPS
    ) -> MethodConfig:
        """``base`` (the official defaults) with settings changed by name, e.g. ``{"lr": 1e-3,
        "nms_threshold": 0.5}``; ``only`` limits which groups may change (a trained run's network and
        training are fixed). An unknown name, one of another group, or one this method does not use is a
        one-line error."""
        config = base or cls.defaults()
        owner = owners(cls.setting_groups())
        unknown = sorted(set(changes) - set(owner))
        if unknown:
            own = ", ".join(cls.Network.names())
            raise WtalError(
                f"{cls.name} has no setting(s) {', '.join(unknown)}",
                f"its network settings: {own}; the shared training and localization settings: README, Methods",
            )
        fixed = sorted(name for name in changes if owner[name] not in only)
        if fixed:
            raise WtalError(
                f"setting(s) {', '.join(fixed)} change the trained weights' meaning, not how a run is tested",
                f"retrain with --set, or change only {' / '.join(only)} settings here",
            )
        updated = {
            group: getattr(config, group).replace(**{k: v for k, v in changes.items() if owner[k] == group})
            for group in GROUPS
        }
        made = MethodConfig(**updated)
        if made.localization.actionness_thresholds and not cls.has_actionness:
            raise WtalError(f"{cls.name} has no actionness score: actionness_thresholds would never be used")
        target = made.addons.pseudo_label_target
        if (target == "foreground" and not cls.has_foreground) or (
            target == "cas-with-background" and not cls.has_background_class
        ):
            raise WtalError(f"{cls.name} has no {target} for pseudo labels to train", "--set pseudo_label_target=cas")
        return made

    @classmethod
    def from_saved(cls, saved: dict[str, Any]) -> MethodConfig:
        """The settings a run recorded: grouped, or (runs of wtal-pipe/2) one flat dict; retired entries are
        dropped either way."""
        saved = {k: RENAMED.get(k, {}).get(v, v) if isinstance(v, str) else v for k, v in flatten(saved).items()}
        return cls.configure({k: v for k, v in saved.items() if k not in RETIRED or k in cls.Network.names()})

    def forward(self, features: torch.Tensor) -> MethodOutput:
        raise NotImplementedError

    def loss(self, outputs: MethodOutput, batch: Batch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def objective(self, outputs: MethodOutput, batch: Batch) -> dict[str, torch.Tensor]:
        """What the trainer minimizes: the method's own loss terms, plus the snippet pseudo-label term when
        the batch carries pseudo labels and the actionness head's term when the head is on."""
        terms = self.loss(outputs, batch)
        addons = self.config.addons
        own_cas = outputs.internals.get("own_cas", outputs.cas)
        labelled = (batch.labels > 0).any(dim=1, keepdim=True)  # (B, 1)
        if batch.pseudo is not None:
            terms["pseudo"] = addons.pseudo_label_weight * self._pseudo_label_term(outputs, own_cas, batch)
        head = outputs.internals.get("actionness_head")
        if head is not None:
            if batch.pseudo is not None:
                target = (batch.pseudo * (batch.labels[:, None, :] > 0)).amax(dim=2)
                chosen = labelled.expand_as(target)
            else:
                target, chosen = ranked_targets(own_cas, batch.labels, addons.actionness_head_topk)
            terms["actionness_head"] = addons.actionness_head_weight * weighted_bce(head, target, chosen.float())
        return terms

    def _pseudo_label_term(self, outputs: MethodOutput, own_cas: torch.Tensor, batch: Batch) -> torch.Tensor:
        assert batch.pseudo is not None
        target = self.config.addons.pseudo_label_target
        if target == "foreground":
            assert outputs.foreground is not None, f"{self.name} sets has_foreground but outputs none"
            return pseudo_foreground_loss(outputs.foreground, batch.pseudo, batch.labels)
        if target == "cas-with-background":
            assert outputs.cas_with_background is not None, f"{self.name} has a background class but no such CAS"
            return pseudo_background_loss(outputs.cas_with_background, batch.pseudo, batch.labels)
        logits = own_cas if self.cas_kind == "logits" else torch.logit(own_cas.clamp(1e-6, 1 - 1e-6))
        return pseudo_cas_loss(logits, batch.pseudo, batch.labels)

    def collapse(self, outputs: MethodOutput) -> str | None:
        """What, if anything, says this training batch's outputs have collapsed into a state the method
        cannot localize from (the trainer warns once); None when they look healthy."""
        return None

    #: how many official checkpoint files make one model (CMCS: 1 early fusion, 2 late fusion)
    official_files: ClassVar[tuple[int, ...]] = (1,)
    #: what to pass ``wtal import checkpoint`` (the fix when the files do not fit)
    official_hint: ClassVar[str] = "pass the .pkl/.pth the official code saved"

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
        model = cls(feature_dim, num_classes, cls.configure({**implied, **settings}))
        ours = model.state_dict()
        for key, value in state.items():
            if ours[key].shape != value.shape:
                raise ValueError(f"{key}: shape {tuple(value.shape)} does not fit {tuple(ours[key].shape)}")
        model.load_state_dict({**ours, **state})
        return model


def _scale_by_head(module: nn.Module, args: tuple[torch.Tensor, ...], outputs: MethodOutput) -> MethodOutput:
    """Forward hook of a method with the actionness head: the head's logits and the method's own CAS go to
    ``internals`` (the objective trains on them), and the CAS the localizer sees is scaled by the head's
    probability (ASL's test-time use)."""
    head = typing.cast(ActionnessHead, module.actionness_head)
    logits = head(args[0])  # args: after the input standardization
    outputs.internals["actionness_head"] = logits
    outputs.internals["own_cas"] = outputs.cas
    outputs.cas = outputs.cas * torch.sigmoid(logits).unsqueeze(2)
    return outputs


S = TypeVar("S", bound=NetworkSettings)


def typed(settings: NetworkSettings, kind: type[S]) -> S:
    """A method's network settings as its own class (a config built for another method is a bug)."""
    if not isinstance(settings, kind):
        raise TypeError(f"expected {kind.__name__}, got {type(settings).__name__}")
    return settings


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
