"""CMCS: completeness modeling and context separation (Liu et al., CVPR 2019).

Several classification branches share an embedding; a diversity loss keeps their class activation
sequences apart (so together they cover whole actions), and hard-negative pseudo videos built from
static frames teach the background class what context looks like.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Batch, Method, MethodConfig, MethodOutput
from .registry import register_method


@dataclass
class CMCSConfig(MethodConfig):
    num_segments: int | None = None  # one whole video per forward pass
    batch_size: int = 1
    accumulate: int = 24  # gradients summed over 24 videos per step
    iterations: int = 15000
    weight_decay: float = 1e-3
    class_threshold: float = 0.1
    # The published code keeps every proposal because it makes one proposal set (CAS > its mean); the
    # shared localizer makes one per threshold, whose near-duplicates NMS must remove (measured on a
    # planted set: mAP@0.5 33 without NMS, 64 with 0.6).
    nms_threshold: float | None = 0.6
    negatives_by_default: bool = True
    branches: int = 4
    input_dropout: float = 0.5
    diversity_weight: float = 0.2
    norm_weight: float = 0.2


class Branch(nn.Module):
    def __init__(self, num_classes: int):
        super().__init__()
        self.conv = nn.Conv1d(32, 16, 3, padding=1)
        self.classifier = nn.Linear(16, num_classes + 1)

    def forward(self, embedded: torch.Tensor) -> torch.Tensor:  # (B, 32, T) -> (B, T, C + 1)
        return self.classifier(F.relu(self.conv(embedded)).transpose(1, 2))


@register_method("cmcs")
class CMCS(Method):
    Config = CMCSConfig

    def __init__(self, feature_dim: int, num_classes: int, config: CMCSConfig):
        super().__init__(feature_dim, num_classes, config)
        self.input_dropout = nn.Dropout1d(config.input_dropout)
        self.embed = nn.Conv1d(feature_dim, 32, 1)
        self.branches = nn.ModuleList(Branch(num_classes) for _ in range(config.branches))
        self.attention_conv = nn.Conv1d(32, 16, 1)
        self.attention_out = nn.Linear(16, 1)

    def forward(self, features: torch.Tensor) -> MethodOutput:
        x = self.input_dropout(features.transpose(1, 2))  # (B, D, T), whole feature channels dropped
        embedded = F.relu(self.embed(x))  # (B, 32, T)
        branch_cas = torch.stack([branch(embedded) for branch in self.branches], dim=1)  # (B, K, T, C + 1)
        cas = branch_cas.mean(1)  # (B, T, C + 1)
        attention = self.attention_out(F.relu(self.attention_conv(embedded)).transpose(1, 2))  # (B, T, 1)
        attention = F.softmax(attention, dim=1)
        logits = (attention * cas).sum(1)  # (B, C + 1)
        probs = F.softmax(logits, dim=1)
        return MethodOutput(video_scores=probs[:, :-1], cas=F.softmax(cas, dim=2)[..., :-1], actionness=None,
                            internals={"logits": logits, "branch_cas": branch_cas})

    def loss(self, outputs: MethodOutput, batch: Batch) -> dict[str, torch.Tensor]:
        logits, branch_cas = outputs.internals["logits"], outputs.internals["branch_cas"]
        # multi-label videos count as single-label copies weighted 1 / #labels; background-only -> class C
        background = batch.background_only.float().unsqueeze(1)
        target = torch.cat([batch.labels, background], dim=1)
        target = target / target.sum(1, keepdim=True).clamp_min(1e-8)
        loss_cls = -(target * F.log_softmax(logits, dim=1)).sum(1).mean()

        over_time = F.softmax(branch_cas, dim=2)  # (B, K, T, C + 1): each branch's CAS as a distribution in time
        pairs = list(combinations(range(branch_cas.shape[1]), 2))
        diversity = torch.stack([F.cosine_similarity(over_time[:, a], over_time[:, b], dim=1).mean()
                                 for a, b in pairs]).mean()
        norms = branch_cas.flatten(2).norm(p=2, dim=2)  # (B, K)
        norm_reg = (norms - norms.mean(1, keepdim=True)).abs().mean()
        return {"cls": loss_cls, "diversity": self.config.diversity_weight * diversity,
                "norm": self.config.norm_weight * norm_reg}
