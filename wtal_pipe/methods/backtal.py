"""BackTAL: background-click supervision (Yang et al., 2021), as its official code runs it. A different
supervision regime: besides video labels it needs background clicks (real, or ``--simulate-clicks``).

BaS-Net whose two temporal convs (no bias) become "affinity" convs: a 32-d L2-normalized embedding of
the unsuppressed input gives, per segment, the cosine similarity with its left and right neighbour,
and those similarities scale the convolution's inputs. Features are linearly interpolated to 750 rows
at training and test time. Losses: soft cross-entropy on both branches, 1e-4 x L1 of the filter
weights, a click cross-entropy (clicked rows -> background), a score separation (video score of each
labelled class against its mean CAS at the clicks) and an affinity loss with online hard example
mining on the embedding. Localization: the suppression branch's raw logits after the official ReLU'd
min-max, resized to the frame count, plus a second proposal set from the magnitude of the first
affinity layer's features on the suppressed input.

``affinity_operator``: ``channel-thirds`` is the official code (its unfold/tiling scales the first,
middle and last third of the (channel, tap) pairs by the left, self and right similarity);
``per-tap`` is the paper (each tap scaled by its own neighbour's similarity).
Deliberate fix: a batch without clicks trains without the click terms instead of crashing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from .base import Batch, Method, MethodOutput, rename_official, topk_mean, typed
from .basnet import (
    FILTER_OFFICIAL_KEYS,
    FilterModule,
    SuppressionNetwork,
    filter_collapse,
    filter_l1,
    two_branch_targets,
)
from .registry import register_method
from .settings import (
    Above,
    AddonSettings,
    AtLeast,
    AtMost,
    Count,
    LocalizationSettings,
    MethodConfig,
    Presets,
    Sourced,
    TrainingSettings,
    steps,
)


@dataclass(frozen=True)
class BackTALNetwork(SuppressionNetwork):
    topk_ratio: Annotated[float, Above(0), AtMost(1)] = 0.125  # video score = mean of the top int(T x ratio) CAS values
    separation_topk_ratio: Annotated[float, Above(0), AtMost(1)] | None = None  # None: the video score (THUMOS14)
    embed_hidden: Count = 512
    embed_dim: Count = 32
    affinity_operator: Literal["channel-thirds", "per-tap"] = "channel-thirds"  # official code; per-tap: paper
    click_weight: Annotated[float, AtLeast(0)] = 1.0
    separation_weight: Annotated[float, AtLeast(0)] = 1.0
    affinity_weight: Annotated[float, AtLeast(0)] = 0.8
    same_set_margin: float = 0.5  # hardest cosine within foreground (or within clicks) should be >= this
    cross_set_margin: float = 0.1  # hardest cosine between foreground and clicks should be <= this
    # the base branch's rows, as its clicks are trained; on the filter or the CAS they hurt (README)


def neighbour_similarity(embedding: torch.Tensor) -> torch.Tensor:
    """(B, E, T) -> (B, 3, T): cosine of each segment's embedding with its left neighbour, itself and
    its right neighbour (a zero vector beyond the borders, so 0 there)."""
    left = F.pad(embedding, (1, 0))[..., :-1]
    right = F.pad(embedding, (0, 1))[..., 1:]
    return torch.stack([F.cosine_similarity(embedding, other, dim=1) for other in (left, embedding, right)], dim=1)


class AffinityConv(nn.Module):
    """A bias-free k=3 temporal conv whose inputs are scaled by the neighbour similarities.

    Computed as the official code does (each channel's three taps side by side, scaled, one matmul),
    which also gives its summation order and memory layout: the same dropout mask for the same seed.
    """

    def __init__(self, in_channels: int, out_channels: int, operator: str):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, 3, padding=1, bias=False)  # holds the weights
        rows = torch.arange(3 * in_channels)  # row 3c + k: input channel c at tap k (t - 1, t, t + 1)
        groups = rows // in_channels if operator == "channel-thirds" else rows % 3  # which similarity scales it
        self.groups: torch.Tensor
        self.register_buffer("groups", groups, persistent=False)

    def forward(self, x: torch.Tensor, similarity: torch.Tensor) -> torch.Tensor:
        # x: (B, C, T); similarity: (B, 3, T) -> (B, O, T)
        batch, channels, length = x.shape
        taps = torch.stack([F.pad(x, (1, 0))[..., :-1], x, F.pad(x, (0, 1))[..., 1:]], dim=2)  # (B, C, 3, T)
        taps = taps.reshape(batch, 3 * channels, length) * similarity[:, self.groups]  # (B, 3C, T)
        weight = self.conv.weight.reshape(self.conv.out_channels, -1)  # (O, 3C), same row order
        return (taps.transpose(1, 2) @ weight.T).transpose(1, 2)  # (B, T, O) viewed as (B, O, T)


def _anet12(key: str, value: object) -> Sourced:
    return Sourced(value, f"experiments/ActivityNet1.2.yaml {key}")


#: BackTAL's ActivityNet 1.2 config; it reports no 1.3 and ships no 1.3 config, so its 1.3 preset repeats these
ACTIVITYNET = {
    "num_segments": _anet12("NUM_SEGMENTS", 100),
    "batch_size": _anet12("BATCH_SIZE", 128),
    "lr": _anet12("LR", 2e-4),
    "epochs": _anet12("EPOCH_NUM", 25),
    "topk_ratio": _anet12("TOPK_K_R", 0.6),
    "separation_topk_ratio": _anet12("TOPK_K_R_FOR_LOSS", 0.2),
    "separation_weight": _anet12("C_LOSS_TOPK_BG", 0.1),
    "class_threshold": _anet12("CLS_SCORE_TH", 0.1),
    "cas_thresholds": _anet12("ACT_THRESH_MIN/MAX/STEP", steps(0.0, 0.15, 0.025)),
    "actionness_thresholds": Sourced((), "post_process/functions.py: magnitude proposals on THUMOS14 only"),
    "outer_ratio": _anet12("OUTER_LAMBDA", 20.0),
    "class_score_weight": _anet12("CONF_GAMMA", 0.6),
    "proposal_shrink": Sourced(0.02, "post_process/functions.py get_localization"),
    "whole_video_score": Sourced(0.6, "post_process/functions.py get_localization"),
    "nms_threshold": _anet12("NMS_THRESHOLD", 0.7),
}


@register_method("backtal")
class BackTAL(Method):
    Network = BackTALNetwork
    has_foreground = True
    training_defaults = TrainingSettings(
        train_sampling="interpolate",
        iterations=520,  # 40 epochs of the 200 THUMOS14 training videos, batch 16
    )
    localization_defaults = LocalizationSettings(
        test_sampling="interpolate",
        resample="centres",
        upsample="frames",
        actionness_thresholds=steps(0.3, 0.8, 0.075),
        outer_region="before-reach",
        nms_threshold=0.55,
    )
    addon_defaults = AddonSettings(pseudo_label_target="cas-with-background")  # its base branch, as clicks train it
    uses_clicks = True
    has_actionness = True
    presets: ClassVar[Presets] = {"activitynet1.2": ACTIVITYNET, "activitynet1.3": ACTIVITYNET}
    settings: BackTALNetwork

    def __init__(self, feature_dim: int, num_classes: int, config: MethodConfig):
        super().__init__(feature_dim, num_classes, config)
        self.settings = settings = typed(config.network, BackTALNetwork)
        self.filter = FilterModule(feature_dim, settings)
        self.embed1 = nn.Conv1d(feature_dim, settings.embed_hidden, 3, padding=1)
        self.embed2 = nn.Conv1d(settings.embed_hidden, settings.embed_dim, 3, padding=1)
        self.conv1 = AffinityConv(feature_dim, settings.hidden_dim, settings.affinity_operator)
        self.conv2 = AffinityConv(settings.hidden_dim, settings.hidden_dim, settings.affinity_operator)
        self.dropout = nn.Dropout(settings.dropout)
        self.classifier = nn.Conv1d(settings.hidden_dim, num_classes + 1, 1, bias=False)

    def branch(self, x: torch.Tensor, similarity: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, D, T) -> first affinity layer's features (B, hidden, T) and the CAS (B, T, C + 1)."""
        slope = self.settings.leaky_slope
        first = F.leaky_relu(self.conv1(x, similarity), slope)
        second = F.leaky_relu(self.conv2(first, similarity), slope)
        return first, self.classifier(self.dropout(second)).transpose(1, 2)

    def forward(self, features: torch.Tensor) -> MethodOutput:
        weights = self.filter(features)  # (B, T, 1)
        x = features.transpose(1, 2)  # (B, D, T)
        embedding = F.normalize(
            self.embed2(F.leaky_relu(self.embed1(x), self.settings.leaky_slope)), dim=1
        )  # (B, E, T)
        similarity = neighbour_similarity(embedding)
        _, cas_base = self.branch(x, similarity)
        first_supp, cas_supp = self.branch((weights * features).transpose(1, 2), similarity)
        k = self.top_k(features.shape[1], self.settings.topk_ratio)
        logits_base, logits_supp = topk_mean(cas_base, k), topk_mean(cas_supp, k)  # (B, C + 1)
        magnitude = first_supp.norm(p=2, dim=1)  # (B, T)
        low = magnitude.min(1, keepdim=True).values.clamp_min(0)
        high = magnitude.max(1, keepdim=True).values.clamp_min(0)
        delta = torch.where(high - low > 0, high - low, torch.ones_like(high))
        return MethodOutput(
            video_scores=F.softmax(logits_supp, dim=1)[:, :-1],
            cas=cas_supp[..., :-1],
            actionness=((magnitude - low) / delta).clamp(0, 1),
            internals={
                "logits_base": logits_base,
                "logits_supp": logits_supp,
                "weights": weights,
                "cas_base": cas_base,
                "cas_supp": cas_supp,
                "embedding": embedding,
            },
            cas_with_background=cas_base,
            foreground=weights[..., 0],
        )

    def loss(self, outputs: MethodOutput, batch: Batch) -> dict[str, torch.Tensor]:
        inner = outputs.internals  # what the forward pass kept for the loss
        target_base, target_supp, has_action = two_branch_targets(batch, eps=1e-10)
        supp = -(target_supp * F.log_softmax(inner["logits_supp"], dim=1)).sum(1)
        terms = {
            "base": -(target_base * F.log_softmax(inner["logits_base"], dim=1)).sum(1).mean(),
            "supp": supp[has_action].sum() / max(1, int(has_action.sum())),
            "filter_l1": self.settings.filter_l1_weight * filter_l1(inner["weights"]),
        }
        clicked = batch.clicks > 0  # (B, T)
        zero = inner["cas_base"].sum() * 0.0
        terms |= {"click": zero, "separation": zero, "affinity": zero}
        if clicked.any():
            log_probs = F.log_softmax(inner["cas_base"], dim=2)  # (B, T, C + 1)
            terms["click"] = self.settings.click_weight * -log_probs[..., self.num_classes][clicked].mean()
        separation, affinity = [], []
        length = inner["cas_supp"].shape[1]
        k = self.top_k(length, self.settings.topk_ratio)
        ratio = self.settings.separation_topk_ratio  # ActivityNet: a top-k mean of its own, not the video score
        foreground_scores = (
            inner["logits_base"] if ratio is None else topk_mean(inner["cas_base"], self.top_k(length, ratio))
        )
        for b in (clicked.any(1) & has_action).nonzero().flatten().tolist():
            clicks = clicked[b].nonzero().flatten()
            labelled = batch.labels[b].nonzero().flatten()
            at_clicks = inner["cas_base"][b][clicks][:, labelled].mean(0)  # (L,)
            pairs = torch.stack([foreground_scores[b, labelled], at_clicks], dim=1)  # (L, 2)
            separation.append(-F.log_softmax(pairs, dim=1)[:, 0].mean())
            foreground = inner["cas_supp"][b][:, labelled].topk(k, dim=0).indices.T.flatten()  # per class, concatenated
            affinity.append(self.affinity_loss(inner["embedding"][b].T, foreground, clicks))
        if separation:
            terms["separation"] = self.settings.separation_weight * torch.stack(separation).mean()
            terms["affinity"] = self.settings.affinity_weight * torch.stack(affinity).mean()
        return terms

    def collapse(self, outputs: MethodOutput) -> str | None:
        return filter_collapse(outputs.internals["weights"])

    @staticmethod
    def top_k(length: int, ratio: float) -> int:
        """The official ``int(T x ratio)`` (at least one row)."""
        return max(1, int(length * ratio))

    def affinity_loss(self, embedding: torch.Tensor, foreground: torch.Tensor, clicks: torch.Tensor) -> torch.Tensor:
        """Online hard example mining on one video's embedding (T, E): the least similar pair within the
        foreground rows and within the clicked rows should reach ``same_set_margin``, the most similar
        foreground-click pair (both directions) stay under ``cross_set_margin``."""
        fg, bg = embedding[foreground], embedding[clicks]

        def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return (a @ b.T) / (a.norm(dim=1, keepdim=True) * b.norm(dim=1, keepdim=True).T).clamp(min=1e-8)

        same, cross = self.settings.same_set_margin, self.settings.cross_set_margin
        fg_bg = cosine(fg, bg)
        return (
            F.relu(same - cosine(fg, fg).min(1).values).mean()
            + F.relu(same - cosine(bg, bg).min(1).values).mean()
            + F.relu(fg_bg.max(1).values - cross).mean()
            + F.relu(fg_bg.max(0).values - cross).mean()
        )

    @classmethod
    def convert_official(cls, states: list[dict[str, torch.Tensor]]) -> tuple[dict[str, torch.Tensor], int, int, dict]:
        ours = rename_official(
            states[0],
            FILTER_OFFICIAL_KEYS
            | {
                "embedding_module.conv_1.weight": "embed1.weight",
                "embedding_module.conv_1.bias": "embed1.bias",
                "embedding_module.conv_2.weight": "embed2.weight",
                "embedding_module.conv_2.bias": "embed2.bias",
                "base_module.conv_1.weight": "conv1.conv.weight",
                "base_module.conv_2.weight": "conv2.conv.weight",
                "classifier_module.conv.weight": "classifier.weight",
            },
        )
        hidden, feature_dim = ours["conv1.conv.weight"].shape[:2]
        settings = {
            "hidden_dim": int(hidden),
            "filter_dim": int(ours["filter.conv1.weight"].shape[0]),
            "embed_hidden": int(ours["embed1.weight"].shape[0]),
            "embed_dim": int(ours["embed2.weight"].shape[0]),
        }
        return ours, int(feature_dim), int(ours["classifier.weight"].shape[0]) - 1, settings
