"""BaS-Net: background suppression (Lee et al., AAAI 2020), as its official code runs it.

A filtering module predicts per-segment foreground weights ``w``; one CAS module scores the raw
input (base branch, trained with the background class on) and the suppressed input ``w * x``
(suppression branch, background off). Localization thresholds the suppression branch's raw logits
after the official ReLU'd min-max. Video score: softmax of the mean of the top ``T // 8`` CAS values.
Loss: BCE on both branches + 1e-4 x (sum over time of |w|, mean over the batch).

Official choices one may argue with, each a setting: the class score enters a proposal's score
binarized (``binarize_class_score``), NMS adds 1 to lengths (``nms_plus_one``), the CAS is
interpolated at chunk starts (``resample``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import nn

from .base import Batch, Method, MethodOutput, normalized_targets, rename_official, topk_mean, typed
from .registry import register_method
from .settings import (
    AddonSettings,
    AtLeast,
    Count,
    LocalizationSettings,
    MethodConfig,
    NetworkSettings,
    Share,
    TrainingSettings,
)


@dataclass(frozen=True)
class SuppressionNetwork(NetworkSettings):
    """What BaS-Net and BackTAL share: temporal layers behind a filtering module."""

    hidden_dim: Count = 2048  # width of the temporal layers, whatever the input D (official: 2048)
    leaky_slope: Annotated[float, AtLeast(0)] = 0.01  # nn.LeakyReLU() default, as the official code uses
    dropout: Share = 0.7
    filter_dim: Count = 512  # hidden width of the filtering module
    filter_l1_weight: Annotated[float, AtLeast(0)] = 1e-4  # x sum over time of |w|, mean over the batch


@dataclass(frozen=True)
class BaSNetNetwork(SuppressionNetwork):
    topk_divisor: Count = 8  # video score = mean of the top T // 8 CAS values


class CASModule(nn.Module):
    """Two temporal convs (D -> hidden -> hidden, k=3), dropout and a bias-free classifier over C + 1."""

    def __init__(self, feature_dim: int, num_classes: int, settings: SuppressionNetwork):
        super().__init__()
        self.conv1 = nn.Conv1d(feature_dim, settings.hidden_dim, 3, padding=1)
        self.conv2 = nn.Conv1d(settings.hidden_dim, settings.hidden_dim, 3, padding=1)
        self.dropout = nn.Dropout(settings.dropout)
        self.classifier = nn.Conv1d(settings.hidden_dim, num_classes + 1, 1, bias=False)
        self.slope = settings.leaky_slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, T, C + 1)
        h = F.leaky_relu(self.conv1(x.transpose(1, 2)), self.slope)  # (B, hidden, T)
        h = F.leaky_relu(self.conv2(h), self.slope)
        return self.classifier(self.dropout(h)).transpose(1, 2)


class FilterModule(nn.Module):
    """Per-segment foreground weight in (0, 1): Conv1d(D, 512, 1) - LeakyReLU - Conv1d(512, 1, 1) - sigmoid."""

    def __init__(self, feature_dim: int, settings: SuppressionNetwork):
        super().__init__()
        self.conv1 = nn.Conv1d(feature_dim, settings.filter_dim, 1)
        self.conv2 = nn.Conv1d(settings.filter_dim, 1, 1)
        self.slope = settings.leaky_slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, T, 1)
        h = F.leaky_relu(self.conv1(x.transpose(1, 2)), self.slope)
        return torch.sigmoid(self.conv2(h)).transpose(1, 2)


#: the filtering module's official key names (BaS-Net and BackTAL) -> ours
FILTER_OFFICIAL_KEYS = {
    f"filter_module.conv_{i}.0.{kind}": f"filter.conv{i}.{kind}" for i in (1, 2) for kind in ("weight", "bias")
}


def filter_l1(weights: torch.Tensor) -> torch.Tensor:
    """L1 norm of the foreground weights over time, mean over the batch (official ``loss_norm``)."""
    return weights.abs().sum(dim=1).mean()


def filter_collapse(weights: torch.Tensor) -> str | None:
    """The filtering module's foreground weights near 0 almost everywhere (the suppression branch then sees
    only zeros and scores every video alike) or near 1 almost everywhere (nothing is suppressed). "Almost":
    99% of the batch's weights, so a few stray rows do not hide a collapse (the held-out one had a mean of
    0.004 with rows above 0.05)."""
    flat = weights.detach().float().flatten()
    low, high = (float(q) for q in torch.quantile(flat, torch.tensor([0.01, 0.99], device=flat.device)))
    if high < 0.05 or low > 0.95:
        return (
            f"the filtering module's foreground weights are near {0 if high < 0.05 else 1} almost everywhere "
            f"(mean {float(flat.mean()):.4f}, 1st-99th percentile {low:.4f}-{high:.4f}): the suppression branch "
            "cannot localize (lower --lr, or --set filter_l1_weight=1e-5)"
        )
    return None


def two_branch_targets(batch: Batch, eps: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Targets [y, 1] (base) and [y, 0] (suppression), normalized; and which videos hold an action.
    Background-only pseudo videos (hard negatives, not in the official code) train the base branch
    only: their suppression target would be empty."""
    return (
        normalized_targets(batch.labels, 1.0, eps),
        normalized_targets(batch.labels, 0.0, eps),
        ~batch.background_only,
    )


@register_method("basnet")
class BaSNet(Method):
    Network = BaSNetNetwork
    # official main.py: after the first epoch every step takes the first batch of a new shuffle
    training_defaults = TrainingSettings(batch_order="fresh")
    has_foreground = True
    localization_defaults = LocalizationSettings(binarize_class_score=True)  # official test.py scores with 1
    addon_defaults = AddonSettings(pseudo_label_target="foreground")  # a pilot's choice, unmeasured (docs/methods.md)
    settings: BaSNetNetwork

    def __init__(self, feature_dim: int, num_classes: int, config: MethodConfig):
        super().__init__(feature_dim, num_classes, config)
        self.settings = typed(config.network, BaSNetNetwork)
        self.filter = FilterModule(feature_dim, self.settings)
        self.cas_module = CASModule(feature_dim, num_classes, self.settings)

    def forward(self, features: torch.Tensor) -> MethodOutput:
        weights = self.filter(features)  # (B, T, 1)
        cas_base = self.cas_module(features)  # (B, T, C + 1)
        cas_supp = self.cas_module(weights * features)
        k = features.shape[1] // self.settings.topk_divisor
        score_base = F.softmax(topk_mean(cas_base, k), dim=1)  # (B, C + 1)
        score_supp = F.softmax(topk_mean(cas_supp, k), dim=1)
        return MethodOutput(
            video_scores=score_supp[:, :-1],
            cas=cas_supp[..., :-1],
            actionness=None,
            internals={"score_base": score_base, "score_supp": score_supp, "weights": weights},
            cas_with_background=cas_base,
            foreground=weights[..., 0],
        )

    def loss(self, outputs: MethodOutput, batch: Batch) -> dict[str, torch.Tensor]:
        inner = outputs.internals  # what the forward pass kept for the loss
        target_base, target_supp, has_action = two_branch_targets(batch)
        loss_supp = F.binary_cross_entropy(inner["score_supp"][has_action], target_supp[has_action], reduction="sum")
        return {
            "base": F.binary_cross_entropy(inner["score_base"], target_base),
            "supp": loss_supp / max(1, target_supp[has_action].numel()),
            "filter_l1": self.settings.filter_l1_weight * filter_l1(inner["weights"]),
        }

    def collapse(self, outputs: MethodOutput) -> str | None:
        return filter_collapse(outputs.internals["weights"])

    @classmethod
    def convert_official(cls, states: list[dict[str, torch.Tensor]]) -> tuple[dict[str, torch.Tensor], int, int, dict]:
        ours = rename_official(
            states[0],
            FILTER_OFFICIAL_KEYS
            | {
                "cas_module.conv_1.0.weight": "cas_module.conv1.weight",
                "cas_module.conv_1.0.bias": "cas_module.conv1.bias",
                "cas_module.conv_2.0.weight": "cas_module.conv2.weight",
                "cas_module.conv_2.0.bias": "cas_module.conv2.bias",
                "cas_module.conv_3.0.weight": "cas_module.classifier.weight",
            },
        )
        hidden, feature_dim = ours["cas_module.conv1.weight"].shape[:2]
        settings = {"hidden_dim": int(hidden), "filter_dim": int(ours["filter.conv1.weight"].shape[0])}
        return ours, int(feature_dim), int(ours["cas_module.classifier.weight"].shape[0]) - 1, settings
