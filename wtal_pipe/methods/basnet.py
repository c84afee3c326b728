"""BaS-Net: background suppression (Lee et al., AAAI 2020).

A filtering module predicts per-segment foreground weights ``w``; one CAS module scores the raw
input (base branch, trained with the background class on) and the suppressed input ``w * x``
(suppression branch, background off). Localization uses the suppression branch.

Deliberate fixes of the published code: the class score enters the proposal score as a probability
(the official test binarizes it, turning the 0.2 term into a constant); a video whose only predicted
class has index 0 is localized (``if pred.any()`` dropped it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import Batch, Method, MethodConfig, MethodOutput, normalized_targets, topk_mean
from .registry import register_method


@dataclass
class BaSNetConfig(MethodConfig):
    topk_divisor: int = 8  # video score = mean of the top T // 8 CAS values
    filter_l1_weight: float = 1e-4


class CASModule(nn.Module):
    """Two temporal convs, dropout and a bias-free classifier over C + 1 classes."""

    def __init__(self, feature_dim: int, num_classes: int, dropout: float = 0.7):
        super().__init__()
        self.conv1 = nn.Conv1d(feature_dim, feature_dim, 3, padding=1)
        self.conv2 = nn.Conv1d(feature_dim, feature_dim, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv1d(feature_dim, num_classes + 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)  # (B, D, T)
        x = F.leaky_relu(self.conv1(x), 0.2)
        x = F.leaky_relu(self.conv2(x), 0.2)
        return self.classifier(self.dropout(x)).transpose(1, 2)  # (B, T, C + 1)


class FilterModule(nn.Module):
    def __init__(self, feature_dim: int):
        super().__init__()
        self.conv1 = nn.Conv1d(feature_dim, 512, 1)
        self.conv2 = nn.Conv1d(512, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.conv1(x.transpose(1, 2)), 0.2)
        return torch.sigmoid(self.conv2(h)).transpose(1, 2)  # (B, T, 1)


def two_branch_loss(outputs: MethodOutput, batch: Batch, l1_weight: float, soft_ce: bool) -> dict:
    """Base branch target [y, 1], suppression branch [y, 0]; background-only videos train the base
    branch only (their suppression target would be empty)."""
    base, supp = outputs.internals["score_base"], outputs.internals["score_supp"]
    target_base = normalized_targets(batch.labels, 1.0)
    target_supp = normalized_targets(batch.labels, 0.0)
    has_action = ~batch.background_only
    if soft_ce:
        loss_base = -(target_base * torch.log(base.clamp_min(1e-8))).sum(1).mean()
        loss_supp = (-(target_supp * torch.log(supp.clamp_min(1e-8))).sum(1))[has_action].sum()
    else:
        loss_base = F.binary_cross_entropy(base, target_base)
        loss_supp = F.binary_cross_entropy(supp[has_action], target_supp[has_action], reduction="sum") / supp.shape[1]
    loss_supp = loss_supp / max(1, int(has_action.sum()))
    return {"base": loss_base, "supp": loss_supp,
            "filter_l1": l1_weight * outputs.internals["weights"].abs().mean()}


@register_method("basnet")
class BaSNet(Method):
    Config = BaSNetConfig

    def __init__(self, feature_dim: int, num_classes: int, config: BaSNetConfig):
        super().__init__(feature_dim, num_classes, config)
        self.filter = FilterModule(feature_dim)
        self.cas_module = CASModule(feature_dim, num_classes)

    def forward(self, features: torch.Tensor) -> MethodOutput:
        weights = self.filter(features)  # (B, T, 1)
        cas_base = self.cas_module(features)  # (B, T, C + 1)
        cas_supp = self.cas_module(weights * features)
        score_base = F.softmax(topk_mean(cas_base, self.config.topk_divisor), dim=1)  # (B, C + 1)
        score_supp = F.softmax(topk_mean(cas_supp, self.config.topk_divisor), dim=1)
        return MethodOutput(video_scores=score_supp[:, :-1], cas=F.softmax(cas_supp, dim=2)[..., :-1],
                            actionness=None,
                            internals={"score_base": score_base, "score_supp": score_supp, "weights": weights})

    def loss(self, outputs: MethodOutput, batch: Batch) -> dict[str, torch.Tensor]:
        return two_branch_loss(outputs, batch, self.config.filter_l1_weight, soft_ce=False)
