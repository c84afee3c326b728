"""UM: uncertainty modeling through feature magnitudes (Lee et al., AAAI 2021), as its official code runs it.

Embedded features ``f`` (D -> hidden, k=3, ReLU) feed a classifier without a background class. The video
score of each class is the softmax of the mean of that class's own top ``T // 9`` CAS values (paper
Eq. 1). Segments with the largest magnitudes ``||f_t||`` are pseudo action, the smallest pseudo
background (chosen among a random subset while training); the loss pushes the mean action feature's
magnitude above a margin, the background one to zero, and background class scores to uniform.
Localization: softmax CAS x magnitudes normalized between the background and action means, plus a
second proposal set from the normalized magnitudes.

The margin 100 belongs to the official 2048-d embedding; with another ``hidden_dim`` it is scaled by
``sqrt(hidden_dim / 2048)`` (a 256-d embedding with margin 100 never predicts whole classes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .base import Batch, Method, MethodOutput, normalize_rows, rename_official, topk_mean, typed
from .registry import register_method
from .settings import (
    Above,
    AtLeast,
    Count,
    LocalizationSettings,
    MethodConfig,
    NetworkSettings,
    Presets,
    Share,
    Sourced,
    TrainingSettings,
    steps,
)


@dataclass(frozen=True)
class UMNetwork(NetworkSettings):
    hidden_dim: Count = 2048  # width of the embedding, whatever the input D (official: 2048)
    dropout: Share = 0.7
    action_divisor: Count = 9  # pseudo action = top T // 9 magnitudes; video score from the top T // 9 CAS
    background_divisor: Count = 4  # pseudo background = bottom T // 4
    margin: Annotated[float, Above(0)] = 100.0  # magnitude margin at hidden_dim 2048, x sqrt(hidden_dim / 2048)
    alpha: Annotated[float, AtLeast(0)] = 5e-4  # uncertainty (magnitude) loss weight
    beta: Annotated[float, AtLeast(0)] = 1.0  # background entropy loss weight
    selection_dropout: Share = 0.7  # segments are picked among a random 30% while training


@register_method("um")
class UM(Method):
    Network = UMNetwork
    training_defaults = TrainingSettings(iterations=10000)
    localization_defaults = LocalizationSettings(
        test_sampling="uniform-if-longer",
        class_threshold=0.2,
        argmax_fallback=True,
        cas_normalization="relu-minmax-clip",
        min_proposal_length=2,
        actionness_thresholds=steps(0.4, 0.625, 0.025),
        nms_threshold=0.6,
        eval_tiou="0.1:0.7:0.1",
    )
    has_background_class = False
    cas_kind = "probabilities"  # softmax CAS times the normalized magnitudes
    has_actionness = True
    presets: ClassVar[Presets] = {
        name: {"num_segments": Sourced(50, "UM paper (its code has no ActivityNet config)")}
        for name in ("activitynet1.2", "activitynet1.3")
    }
    settings: UMNetwork

    def __init__(self, feature_dim: int, num_classes: int, config: MethodConfig):
        super().__init__(feature_dim, num_classes, config)
        self.settings = settings = typed(config.network, UMNetwork)
        self.embed = nn.Conv1d(feature_dim, settings.hidden_dim, 3, padding=1)
        self.dropout = nn.Dropout(settings.dropout)
        self.classifier = nn.Conv1d(settings.hidden_dim, num_classes, 1, bias=False)
        self.selection = nn.Dropout(settings.selection_dropout)
        self.margin = settings.margin * math.sqrt(settings.hidden_dim / 2048)

    def forward(self, features: torch.Tensor) -> MethodOutput:
        embedded = F.relu(self.embed(features.transpose(1, 2)))  # (B, hidden, T)
        cas = self.classifier(self.dropout(embedded)).transpose(1, 2)  # (B, T, C)
        embedded = embedded.transpose(1, 2)  # (B, T, hidden)
        magnitudes = embedded.norm(p=2, dim=2)  # (B, T)
        length = features.shape[1]
        # at least one segment each (the official code divides by zero on videos under 9 rows)
        k_act = max(1, length // self.settings.action_divisor)
        k_bkg = max(1, length // self.settings.background_divisor)
        eligible = self.selection(torch.ones_like(magnitudes))  # 0 or 1 / (1 - p) while training, 1 at test
        idx_act = (magnitudes * eligible).sort(dim=1, descending=True).indices[:, :k_act]  # (B, k_act)
        reverse = magnitudes.max(dim=1, keepdim=True).values - magnitudes
        idx_bkg = (reverse * eligible).sort(dim=1, descending=True).indices[:, :k_bkg]  # (B, k_bkg)
        feat_act = embedded.gather(1, idx_act.unsqueeze(2).expand(-1, -1, embedded.shape[2]))
        feat_bkg = embedded.gather(1, idx_bkg.unsqueeze(2).expand(-1, -1, embedded.shape[2]))
        score_act = F.softmax(topk_mean(cas, k_act), dim=1)  # (B, C): each class its own top-k over time
        score_bkg = F.softmax(cas.gather(1, idx_bkg.unsqueeze(2).expand(-1, -1, cas.shape[2])).mean(1), dim=1)
        # localization: magnitudes scaled between the pseudo background and pseudo action means
        mu_act = feat_act.norm(dim=2).mean(1, keepdim=True)  # (B, 1)
        mu_bkg = feat_bkg.norm(dim=2).mean(1, keepdim=True)
        delta = mu_act - mu_bkg
        actionness = ((magnitudes - mu_bkg) / torch.where(delta > 0, delta, torch.ones_like(delta))).clamp(0, 1)
        return MethodOutput(
            video_scores=score_act,
            cas=F.softmax(cas, dim=2) * actionness.unsqueeze(2),
            actionness=actionness,
            internals={"score_act": score_act, "score_bkg": score_bkg, "feat_act": feat_act, "feat_bkg": feat_bkg},
        )

    def loss(self, outputs: MethodOutput, batch: Batch) -> dict[str, torch.Tensor]:
        inner = outputs.internals  # what the forward pass kept for the loss
        target = normalize_rows(batch.labels)
        uniform = torch.full_like(inner["score_bkg"], 1.0 / self.num_classes)
        norm_act = inner["feat_act"].mean(1).norm(p=2, dim=1)  # (B,) magnitude of the mean action feature
        norm_bkg = inner["feat_bkg"].mean(1).norm(p=2, dim=1)
        loss_um = ((F.relu(self.margin - norm_act) + norm_bkg) ** 2).mean()
        return {
            "cls": F.binary_cross_entropy(inner["score_act"], target),
            "uncertainty": self.settings.alpha * loss_um,
            "background": self.settings.beta * F.binary_cross_entropy(inner["score_bkg"], uniform),
        }

    def collapse(self, outputs: MethodOutput) -> str | None:
        """Feature magnitudes all equal: the pseudo action and background rows are then picked at random
        and the magnitude no longer tells action from background."""
        act = outputs.internals["feat_act"].norm(dim=2)  # (B, k_act)
        bkg = outputs.internals["feat_bkg"].norm(dim=2)
        gap, scale = float((act.mean() - bkg.mean()).abs()), float(act.mean() + bkg.mean()) / 2
        if gap <= 1e-3 * max(scale, 1e-12):
            return (
                f"the feature magnitudes are all equal (pseudo action {float(act.mean()):.4g}, pseudo background "
                f"{float(bkg.mean()):.4g}): magnitudes no longer separate action from background (lower --lr)"
            )
        return None

    @classmethod
    def convert_official(cls, states: list[dict[str, torch.Tensor]]) -> tuple[dict[str, torch.Tensor], int, int, dict]:
        ours = rename_official(
            states[0],
            {
                "cas_module.conv.0.weight": "embed.weight",
                "cas_module.conv.0.bias": "embed.bias",
                "cas_module.classifier.0.weight": "classifier.weight",
            },
        )
        hidden, feature_dim = ours["embed.weight"].shape[:2]
        return ours, int(feature_dim), int(ours["classifier.weight"].shape[0]), {"hidden_dim": int(hidden)}
