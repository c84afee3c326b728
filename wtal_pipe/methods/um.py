"""UM: uncertainty modeling through feature magnitudes (Lee et al., AAAI 2021).

Embedded features ``f`` feed a classifier without a background class. Segments with the largest
magnitudes ``||f_t||`` are pseudo action, the smallest pseudo background; the loss pushes action
magnitudes above a margin, background magnitudes to zero, and background class scores to uniform.

The margin 100 of the paper belongs to 2048-d features; it is scaled by ``sqrt(D / 2048)`` so other
feature sizes converge (measured: margin 100 on 256-d features never predicted whole classes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import Batch, Method, MethodConfig, MethodOutput, steps
from .registry import register_method


@dataclass
class UMConfig(MethodConfig):
    iterations: int = 10000
    class_threshold: float = 0.2
    actionness_thresholds: tuple[float, ...] = steps(0.4, 0.625, 0.025)
    nms_threshold: float | None = 0.6
    has_background_class: bool = False
    action_divisor: int = 9  # pseudo action = top T // 9 magnitudes
    background_divisor: int = 4  # pseudo background = bottom T // 4
    margin_2048: float = 100.0  # magnitude margin for 2048-d features, scaled with sqrt(D / 2048)
    alpha: float = 5e-4  # uncertainty (magnitude) loss weight
    beta: float = 1.0  # background entropy loss weight
    selection_dropout: float = 0.7  # random subset of segments eligible for selection while training


@register_method("um")
class UM(Method):
    Config = UMConfig

    def __init__(self, feature_dim: int, num_classes: int, config: UMConfig):
        super().__init__(feature_dim, num_classes, config)
        self.embed = nn.Conv1d(feature_dim, feature_dim, 3, padding=1)
        self.dropout = nn.Dropout(0.7)
        self.classifier = nn.Conv1d(feature_dim, num_classes, 1, bias=False)
        self.margin = config.margin_2048 * math.sqrt(feature_dim / 2048)

    def forward(self, features: torch.Tensor) -> MethodOutput:
        embedded = F.relu(self.embed(features.transpose(1, 2)))  # (B, D, T)
        cas = self.classifier(self.dropout(embedded)).transpose(1, 2)  # (B, T, C)
        embedded = embedded.transpose(1, 2)  # (B, T, D)
        magnitudes = embedded.norm(p=2, dim=2)  # (B, T)
        length = features.shape[1]
        k_act = max(1, length // self.config.action_divisor)
        k_bkg = max(1, length // self.config.background_divisor)
        eligible = torch.ones_like(magnitudes)
        if self.training:  # the paper selects among a random subset of segments
            eligible = F.dropout(eligible, self.config.selection_dropout)
        idx_act = (magnitudes * eligible).topk(k_act, dim=1).indices  # (B, k_act)
        reverse = magnitudes.max(dim=1, keepdim=True).values - magnitudes
        idx_bkg = (reverse * eligible).topk(k_bkg, dim=1).indices  # (B, k_bkg)

        def gather(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            return x.gather(1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))

        score_act = F.softmax(gather(cas, idx_act).mean(1), dim=1)  # (B, C)
        score_bkg = F.softmax(gather(cas, idx_bkg).mean(1), dim=1)
        mu_act = magnitudes.gather(1, idx_act).mean(1, keepdim=True)
        mu_bkg = magnitudes.gather(1, idx_bkg).mean(1, keepdim=True)
        actionness = ((magnitudes - mu_bkg) / (mu_act - mu_bkg).clamp_min(1e-8)).clamp(0, 1)  # (B, T)
        return MethodOutput(
            video_scores=score_act, cas=F.softmax(cas, dim=2) * actionness.unsqueeze(-1), actionness=actionness,
            internals={"score_act": score_act, "score_bkg": score_bkg,
                       "feat_act": gather(embedded, idx_act), "feat_bkg": gather(embedded, idx_bkg)})

    def loss(self, outputs: MethodOutput, batch: Batch) -> dict[str, torch.Tensor]:
        i = outputs.internals
        target = batch.labels / batch.labels.sum(1, keepdim=True).clamp_min(1e-8)
        loss_cls = F.binary_cross_entropy(i["score_act"], target)
        uniform = torch.full_like(i["score_bkg"], 1.0 / self.num_classes)
        loss_be = F.binary_cross_entropy(i["score_bkg"], uniform)
        norm_act = i["feat_act"].mean(1).norm(p=2, dim=1)  # (B,)
        norm_bkg = i["feat_bkg"].mean(1).norm(p=2, dim=1)
        loss_um = ((F.relu(self.margin - norm_act) + norm_bkg) ** 2).mean()
        return {"cls": loss_cls, "uncertainty": self.config.alpha * loss_um, "background": self.config.beta * loss_be}
