"""CMCS: completeness modeling and context separation (Liu et al., CVPR 2019), as its official code runs it.

Input-channel dropout, a shared 1x1 embedding, K classification branches (k=3 conv + linear over
C + 1 classes) whose average is the CAS, and a temporal attention that pools it into video logits.
A diversity loss (per class, the cosine similarity between branches' softmax-over-classes time
series) keeps the branches apart, a norm regularizer (per class, the L1 norm over time / T) keeps
them equally strong, and hard-negative pseudo videos teach the background class what context looks
like. Multi-label videos train as one-label copies weighted 1 / #labels; gradients of 24 videos are
summed per step. Localization: one threshold at the mean of the min-maxed softmax CAS at frame
resolution, each detection dilated by 20 frames, score = inner - outer + 0.25 x class score, no NMS.

``fusion``: ``late`` (the published I3D numbers) trains one network on each half of the features
(RGB, flow) and averages their logits at test time; ``early`` trains one network on the whole row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import WtalError
from .base import Batch, Method, MethodOutput, normalize_rows, typed
from .presets import CPU_SMALL
from .registry import register_method
from .settings import (
    AddonSettings,
    AtLeast,
    Count,
    LocalizationSettings,
    MethodConfig,
    NetworkSettings,
    Presets,
    Share,
    Sourced,
    TrainingSettings,
)


@dataclass(frozen=True)
class CMCSNetwork(NetworkSettings):
    dropout: Share = 0.5  # on whole input channels
    fusion: Literal["late", "early"] = "late"  # late: one network per feature half (RGB, flow), logits averaged
    branches: Count = 4
    embed_dim: Count = 32  # ActivityNet: 256
    branch_dim: Count = 16  # ActivityNet: 128
    attention_dim: Count = 16  # ActivityNet: 128
    diversity_weight: Annotated[float, AtLeast(0)] = 0.2
    norm_weight: Annotated[float, AtLeast(0)] = 0.2


class Backbone(nn.Module):
    """One CMCS network: (B, T, D) -> per-branch CAS (B, K, T, C + 1) and video logits (B, C + 1)."""

    def __init__(self, feature_dim: int, num_classes: int, settings: CMCSNetwork):
        super().__init__()
        self.input_dropout = nn.Dropout1d(settings.dropout)  # drops whole feature channels
        self.embed = nn.Conv1d(feature_dim, settings.embed_dim, 1)
        self.branch_convs = nn.ModuleList(
            nn.Conv1d(settings.embed_dim, settings.branch_dim, 3, padding=1) for _ in range(settings.branches)
        )
        self.branch_heads = nn.ModuleList(
            nn.Linear(settings.branch_dim, num_classes + 1) for _ in range(settings.branches)
        )
        self.attention_conv = nn.Conv1d(settings.embed_dim, settings.attention_dim, 1)
        self.attention_head = nn.Linear(settings.attention_dim, 1)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedded = F.relu(self.embed(self.input_dropout(features.transpose(1, 2))))  # (B, embed, T)
        branch_cas = torch.stack(
            [
                head(F.relu(conv(embedded)).transpose(1, 2))
                for conv, head in zip(self.branch_convs, self.branch_heads, strict=True)
            ],
            dim=1,
        )  # (B, K, T, C+1)
        attention = F.softmax(self.attention_head(F.relu(self.attention_conv(embedded)).transpose(1, 2)), dim=1)
        logits = (branch_cas.mean(1) * attention).sum(1)  # (B, C + 1)
        return branch_cas, logits


def diversity_loss(branch_cas: torch.Tensor) -> torch.Tensor:
    """Mean over samples, classes and branch pairs of the cosine similarity between two branches'
    time series of softmax-over-classes scores (official: ``dot / (|a| |b| + 1e-6)``)."""
    k = branch_cas.shape[1]
    if k < 2:
        return branch_cas.sum() * 0.0
    series = F.softmax(branch_cas, dim=3).permute(0, 3, 1, 2)  # (B, C + 1, K, T)
    norms = series.norm(p=2, dim=3, keepdim=True)  # (B, C + 1, K, 1)
    cosine = (series @ series.transpose(2, 3)) / (norms @ norms.transpose(2, 3) + 1e-6)  # (B, C + 1, K, K)
    off_diagonal = F.relu(cosine - torch.eye(k, device=cosine.device))
    return (off_diagonal.sum((2, 3)) / (k * (k - 1))).mean()


def norm_regularizer(branch_cas: torch.Tensor) -> torch.Tensor:
    """Mean absolute deviation, over branches, of each branch's per-class L1 norm over time / T."""
    norms = branch_cas.abs().sum(dim=2) / branch_cas.shape[2]  # (B, K, C + 1)
    return (norms - norms.mean(dim=1, keepdim=True)).abs().mean()


def activitynet(steps: int) -> dict[str, Sourced]:
    """The official ActivityNet configs (``configs/anet12-local-I3D.json``, ``anet13-...``, which differ in the
    steps only): the ``check_points`` step is the model tested, and the learning rate drops tenfold after
    ``max_step_num // 2`` steps (max_step_num = steps + 5)."""

    def official(key: str, value: object) -> Sourced:
        return Sourced(value, f"configs/anet1{{2,3}}-local-I3D.json {key}")

    return {
        "accumulate": official("batch_size", 32),
        "lr": official("learning_rate", 1e-3),
        "weight_decay": official("weight_decay", 1e-4),
        "iterations": official("check_points", steps),
        "lr_decay_at": official("learning_rate_decay (max_step_num // 2)", (steps + 5) // 2),
        "embed_dim": official("base_layer_params", 256),
        "branch_dim": official("cls_layer_params", 128),
        "attention_dim": official("att_layer_params", 128),
        "cas_thresholds": official("thrh_value (x the mean)", (1e-7,)),
    }


@register_method("cmcs")
class CMCS(Method):
    Network = CMCSNetwork
    cas_kind = "probabilities"  # softmax over the classes and background
    training_defaults = TrainingSettings(
        train_sampling="whole",
        batch_size=1,  # one whole video per forward pass
        accumulate=24,
        gradient_accumulation="sum",  # official: loss.backward() per video, one step per 24
        single_label_copies=True,
        iterations=15000,
        weight_decay=1e-3,
    )
    localization_defaults = LocalizationSettings(
        test_sampling="whole",
        class_threshold=0.1,
        cas_normalization="minmax",
        resample="starts-inclusive",
        upsample="frames",
        cas_thresholds=(1.0,),
        thresholds_relative_to_mean=True,
        mask_dilation=20,  # int(1.25 x 16) frames
        contrast_on_thresholded=False,
        outer_region="one-point-minimum",
        class_score_weight=0.25,
        nms_threshold=None,
        nms_plus_one=False,
        clip_to_duration=True,
        eval_tiou="0.1:0.5:0.1",
    )
    addon_defaults = AddonSettings(
        pseudo_label_target="cas-with-background"
    )  # held-out videos chose it (docs/methods.md)
    negatives_by_default = True
    presets: ClassVar[Presets] = {
        "activitynet1.2": activitynet(20000),
        "activitynet1.3": activitynet(30000),
        "cpu-small": {"accumulate": Sourced(2, CPU_SMALL)},  # two whole videos a step, as the demo trains
    }
    official_files = (1, 2)
    settings: CMCSNetwork

    def __init__(self, feature_dim: int, num_classes: int, config: MethodConfig):
        super().__init__(feature_dim, num_classes, config)
        self.settings = settings = typed(config.network, CMCSNetwork)
        if settings.fusion == "late" and feature_dim % 2:
            raise WtalError(
                f"late fusion splits each {feature_dim}-d row into RGB and flow halves, and {feature_dim} is odd",
                "use --set fusion=early for single-stream features",
            )
        widths = [feature_dim // 2] * 2 if settings.fusion == "late" else [feature_dim]
        self.streams = nn.ModuleList(Backbone(width, num_classes, settings) for width in widths)

    def forward(self, features: torch.Tensor) -> MethodOutput:
        outputs = [
            stream(part)
            for stream, part in zip(
                self.streams, features.split(features.shape[2] // len(self.streams), dim=2), strict=True
            )
        ]
        cas = torch.stack([branch_cas.mean(1) for branch_cas, _ in outputs]).mean(0)  # (B, T, C + 1)
        logits = torch.stack([logits for _, logits in outputs]).mean(0)  # (B, C + 1)
        internals = {f"branch_cas_{s}": branch_cas for s, (branch_cas, _) in enumerate(outputs)}
        internals |= {f"logits_{s}": stream_logits for s, (_, stream_logits) in enumerate(outputs)}
        return MethodOutput(
            video_scores=F.softmax(logits, dim=1)[:, :-1],
            cas=F.softmax(cas, dim=2)[..., :-1],
            actionness=None,
            internals=internals,
            cas_with_background=cas,
        )

    def loss(self, outputs: MethodOutput, batch: Batch) -> dict[str, torch.Tensor]:
        # one-label copies (single_label_copies) or a multi-hot target; background-only videos -> class C
        target = normalize_rows(torch.cat([batch.labels, batch.background_only.float().unsqueeze(1)], dim=1))
        zero = outputs.cas.sum() * 0.0
        terms = {"cls": zero, "diversity": zero, "norm": zero}
        for s in range(len(self.streams)):  # each stream trains on its own, as separately trained models
            logits, branch_cas = outputs.internals[f"logits_{s}"], outputs.internals[f"branch_cas_{s}"]
            cross_entropy = -(target * F.log_softmax(logits, dim=1)).sum(1)  # (B,)
            terms["cls"] = terms["cls"] + (cross_entropy * batch.weights).mean()
            weight = batch.weights.mean()  # batch_size 1 in the official code: the video's weight
            terms["diversity"] = (
                terms["diversity"] + self.settings.diversity_weight * diversity_loss(branch_cas) * weight
            )
            terms["norm"] = terms["norm"] + self.settings.norm_weight * norm_regularizer(branch_cas) * weight
        return terms

    @classmethod
    def convert_official(cls, states: list[dict[str, torch.Tensor]]) -> tuple[dict[str, torch.Tensor], int, int, dict]:
        """One official ``BackboneNet`` state dict (trained with_bg) -> early fusion; two (RGB, then
        flow) -> late fusion, as the published I3D numbers."""
        ours: dict[str, torch.Tensor] = {}
        for s, state in enumerate(states):
            ours |= backbone_from_official(state, f"streams.{s}.")
        first = "streams.0."
        settings = {
            "fusion": "late" if len(states) == 2 else "early",
            "branches": len({k.split(".")[3] for k in ours if k.startswith(first + "branch_convs.")}),
            "embed_dim": int(ours[first + "embed.weight"].shape[0]),
            "branch_dim": int(ours[first + "branch_convs.0.weight"].shape[0]),
            "attention_dim": int(ours[first + "attention_conv.weight"].shape[0]),
        }
        feature_dim = sum(int(ours[f"streams.{s}.embed.weight"].shape[1]) for s in range(len(states)))
        return ours, feature_dim, int(ours[first + "branch_heads.0.weight"].shape[0]) - 1, settings


def backbone_from_official(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Official ``BackboneNet`` names (``base.base_conv_0``, ``cls_bottoms.k.cls_bk_conv_0``, ``cls_heads.k``,
    ``att_bottom.att_conv_0``, ``att_head``) -> ours under ``prefix``."""
    names = {"base.base_conv_0": "embed", "att_bottom.att_conv_0": "attention_conv", "att_head": "attention_head"}
    branches = sorted({int(k.split(".")[1]) for k in state if k.startswith("cls_heads.")})
    if not branches:
        raise KeyError("cls_heads.0.weight")
    for k in branches:
        names[f"cls_bottoms.{k}.cls_b{k}_conv_0"] = f"branch_convs.{k}"
        names[f"cls_heads.{k}"] = f"branch_heads.{k}"
    return {
        f"{prefix}{ours}.{kind}": state[f"{official}.{kind}"]
        for official, ours in names.items()
        for kind in ("weight", "bias")
    }
