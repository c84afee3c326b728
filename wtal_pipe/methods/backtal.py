"""BackTAL: background-click supervision (Yang et al., 2021). A different supervision regime:
besides video labels it needs one click per background run (real or ``--simulate-clicks``).

BaS-Net plus a 32-d embedding of the unsuppressed input whose cosine similarities modulate the
temporal convolutions ("affinity" convs), a click cross-entropy, a score-separation loss and an
affinity loss on the embedding.

Deliberate fix of the published code: a batch in which no video has clicks trains without the
click terms instead of crashing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import Batch, Method, MethodConfig, MethodOutput, topk_mean
from .basnet import FilterModule, two_branch_loss
from .registry import register_method


@dataclass
class BackTALConfig(MethodConfig):
    nms_threshold: float | None = 0.55
    upsample: int = 16  # localize at frame resolution (16 frames per row)
    uses_clicks: bool = True
    topk_divisor: int = 8
    filter_l1_weight: float = 1e-4
    click_weight: float = 1.0
    separation_weight: float = 1.0
    affinity_weight: float = 0.8
    same_set_margin: float = 0.5  # cosine between two foreground (or two clicked) rows >= this
    cross_set_margin: float = 0.1  # cosine between a foreground and a clicked row <= this


class AffinityConv(nn.Module):
    """Conv1d(k=3) whose neighbour taps are scaled by the cosine similarity of the embeddings."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, sim_prev: torch.Tensor, sim_next: torch.Tensor) -> torch.Tensor:
        # x: (B, D, T); sim_*: (B, 1, T) cosine of row t with t-1 / t+1 (0 at the borders)
        w = self.conv.weight  # (D, D, 3)
        prev = F.pad(x, (1, 0))[..., :-1]  # row t sees t - 1 (zero at t = 0)
        nxt = F.pad(x, (0, 1))[..., 1:]
        out = F.conv1d(x, w[..., 1:2], self.conv.bias)
        return out + sim_prev * F.conv1d(prev, w[..., 0:1]) + sim_next * F.conv1d(nxt, w[..., 2:3])


class AffinityCAS(nn.Module):
    def __init__(self, feature_dim: int, num_classes: int):
        super().__init__()
        self.conv1 = AffinityConv(feature_dim)
        self.conv2 = AffinityConv(feature_dim)
        self.dropout = nn.Dropout(0.7)
        self.classifier = nn.Conv1d(feature_dim, num_classes + 1, 1, bias=False)

    def forward(self, x: torch.Tensor, sim_prev: torch.Tensor, sim_next: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.conv1(x.transpose(1, 2), sim_prev, sim_next), 0.2)
        h = F.leaky_relu(self.conv2(h, sim_prev, sim_next), 0.2)
        return self.classifier(self.dropout(h)).transpose(1, 2)  # (B, T, C + 1)


@register_method("backtal")
class BackTAL(Method):
    Config = BackTALConfig

    def __init__(self, feature_dim: int, num_classes: int, config: BackTALConfig):
        super().__init__(feature_dim, num_classes, config)
        self.filter = FilterModule(feature_dim)
        self.embed1 = nn.Conv1d(feature_dim, 512, 3, padding=1)
        self.embed2 = nn.Conv1d(512, 32, 3, padding=1)
        self.cas_module = AffinityCAS(feature_dim, num_classes)

    def forward(self, features: torch.Tensor) -> MethodOutput:
        embedding = self.embed2(F.leaky_relu(self.embed1(features.transpose(1, 2)), 0.2))  # (B, 32, T)
        embedding = F.normalize(embedding, dim=1)
        sim_next = (embedding[..., :-1] * embedding[..., 1:]).sum(1, keepdim=True)  # (B, 1, T - 1)
        sim_prev = F.pad(sim_next, (1, 0))  # row t with t - 1
        sim_next = F.pad(sim_next, (0, 1))  # row t with t + 1
        weights = self.filter(features)
        cas_base = self.cas_module(features, sim_prev, sim_next)
        cas_supp = self.cas_module(weights * features, sim_prev, sim_next)
        k = self.config.topk_divisor
        logits_base = topk_mean(cas_base, k)
        score_base = F.softmax(logits_base, dim=1)
        score_supp = F.softmax(topk_mean(cas_supp, k), dim=1)
        return MethodOutput(video_scores=score_supp[:, :-1], cas=F.softmax(cas_supp, dim=2)[..., :-1],
                            actionness=None,
                            internals={"score_base": score_base, "score_supp": score_supp, "weights": weights,
                                       "cas_base": cas_base, "logits_base": logits_base,
                                       "embedding": embedding.transpose(1, 2)})

    def loss(self, outputs: MethodOutput, batch: Batch) -> dict[str, torch.Tensor]:
        terms = two_branch_loss(outputs, batch, self.config.filter_l1_weight, soft_ce=True)
        i = outputs.internals
        clicked = batch.clicks > 0  # (B, T)
        zero = i["cas_base"].sum() * 0.0
        terms.update(click=zero, separation=zero, affinity=zero)
        if not clicked.any():
            return terms
        background = self.num_classes
        log_probs = F.log_softmax(i["cas_base"], dim=2)  # (B, T, C + 1)
        terms["click"] = self.config.click_weight * -log_probs[..., background][clicked].mean()

        separation, affinity = [], []
        k = max(1, i["cas_base"].shape[1] // self.config.topk_divisor)
        for b in clicked.any(1).nonzero().flatten():
            clicks = clicked[b].nonzero().flatten()
            emb = i["embedding"][b]  # (T, 32)
            for c in (batch.labels[b] > 0).nonzero().flatten():
                at_clicks = i["cas_base"][b, clicks, c].mean()
                pair = torch.stack([i["logits_base"][b, c], at_clicks])
                separation.append(-F.log_softmax(pair, dim=0)[0])
                fg = i["cas_base"][b, :, c].topk(k).indices
                sim_ff = emb[fg] @ emb[fg].T
                sim_bb = emb[clicks] @ emb[clicks].T
                sim_fb = emb[fg] @ emb[clicks].T
                affinity.append(F.relu(self.config.same_set_margin - sim_ff).mean()
                                + F.relu(self.config.same_set_margin - sim_bb).mean()
                                + F.relu(sim_fb - self.config.cross_set_margin).mean())
        if separation:
            terms["separation"] = self.config.separation_weight * torch.stack(separation).mean()
            terms["affinity"] = self.config.affinity_weight * torch.stack(affinity).mean()
        return terms
