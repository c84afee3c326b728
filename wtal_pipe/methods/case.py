"""CASE: clustering-assisted foreground/background separation (Liu et al., ICCV 2023), as its official code runs it.

Each stream (the RGB and the flow half of a row) has a snippet classifier (D/2 -> 512 -> C, k=1), an encoder
(D/2 -> 512, k=1, ReLU) feeding a sigmoid attention and a cluster head: 16 unit-norm prototypes (renormalized in
place before every forward pass) scoring the L2-normalized snippet embedding, times a temperature of 10.

Training (``main_case.py``): the top ``T // 8`` rows of (softmax CAS averaged over streams + both attentions) / 3
pool each stream's CAS into video logits (a cross-entropy against the labels as a distribution); those rows of
the labelled classes are the attention's foreground targets (a generalized cross-entropy, q 0.7). Over all rows
of the batch, a Sinkhorn-Knopp step (eps 20, 3 iterations) turns the fused cluster scores and a Gaussian prior
(std 10) around each row's attention order into soft cluster labels; cluster and foreground/background prototypes
of the encoder's features then give a second Sinkhorn step, labelling each cluster foreground or background. That
(clusters x 2) table, ``cls_gt``, is kept from the last training step: it is a buffer here, so it travels in the
checkpoint as inference needs it (the official code saves it as ``cls_gt.npy`` beside the weights).

Inference (``inference_case.py``): the same pooling with each stream's cluster foreground probability
(``softmax(clusters) @ cls_gt[:, 0]``) added, / 5, is the localized signal, not normalized; classes from the
average of the streams' softmax video scores (threshold 0.25, else the top one); thresholds 0.1-0.9, outer-inner
contrast on the unthresholded signal + a share of the class score, soft-NMS (tIoU 0.4, alpha 0.35). Their config's
``gamma`` 0.15 (the class score's share) lands in ``get_proposal_oic``'s ``lambda_`` (the outer region's ratio,
0.25 elsewhere) by position, so the code runs with outer ratio 0.15 and ``gamma`` left at its default 0.2; those
are the defaults here, and ``--set outer_ratio=0.25 class_score_weight=0.15`` is what the config meant.

Official choices one may argue with, each a setting: the dynamic prior uses ``argsort(-attention)`` - which row
sits at each place of the order - where the paper means each row's place (``prior_order``: ``argsort``, or
``ranks`` for the paper's); the video target is ``labels / sum + 1e-10`` (every class gets the 1e-10).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from torch import nn

from .base import Batch, Method, MethodOutput, typed
from .registry import register_method
from .settings import (
    Above,
    AddonSettings,
    AtLeast,
    AtMost,
    Count,
    LocalizationSettings,
    MethodConfig,
    NetworkSettings,
    TrainingSettings,
    steps,
)


@dataclass(frozen=True)
class CASENetwork(NetworkSettings):
    hidden_dim: Count = 512  # width of each stream's classifier and encoder (official: 512)
    topk_divisor: Count = 8  # video logits from the top T // 8 rows of the pooled signal
    num_clusters: Count = 16
    temperature: Annotated[float, Above(0)] = 10.0  # cluster scores are cosine similarity x this
    gce_q: Annotated[float, Above(0), AtMost(1)] = 0.7  # the attention's generalized cross-entropy
    prior_std: Annotated[float, Above(0)] = 10.0  # the dynamic Gaussian prior's std
    prior_order: Literal["argsort", "ranks"] = "argsort"  # official: argsort indices; ranks: each row's place
    sinkhorn_eps: Annotated[float, Above(0)] = 20.0
    sinkhorn_iterations: Count = 3
    cluster_weight: Annotated[float, AtLeast(0)] = 1.0  # w_clu: the snippet clustering loss
    cluster_class_weight: Annotated[float, AtLeast(0)] = 0.3  # w_cls: the cluster classification loss


class ClusterHead(nn.Module):
    """Prototypes (a bias-free linear map) renormalized to unit length in place before every pass, as the
    official head does, so the optimizer steps from unit-norm prototypes; scores x temperature."""

    def __init__(self, width: int, clusters: int, temperature: float):
        super().__init__()
        self.prototypes = nn.Linear(width, clusters, bias=False)
        self.temperature = temperature

    def forward(self, embedded: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            self.prototypes.weight.copy_(F.normalize(self.prototypes.weight.clone(), dim=1))
        return self.prototypes(embedded) * self.temperature


class Stream(nn.Module):
    """One stream: CAS logits (B, T, C), attention (B, T), encoder features (B, T, H), cluster scores (B, T, K)."""

    def __init__(self, width: int, num_classes: int, settings: CASENetwork):
        super().__init__()
        hidden = settings.hidden_dim
        self.cas = nn.Sequential(nn.Conv1d(width, hidden, 1), nn.ReLU(), nn.Conv1d(hidden, num_classes, 1))
        self.encoder = nn.Conv1d(width, hidden, 1)
        self.attention = nn.Conv1d(hidden, 1, 1)
        self.clusters = ClusterHead(hidden, settings.num_clusters, settings.temperature)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = x.transpose(1, 2)  # (B, D/2, T)
        encoded = F.relu(self.encoder(x))  # (B, H, T)
        features = encoded.transpose(1, 2)
        return {
            "cas": self.cas(x).transpose(1, 2),
            "attention": torch.sigmoid(self.attention(encoded))[:, 0],
            "features": features,
            "clusters": self.clusters(F.normalize(features, dim=-1)),
        }


def normalized_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The official ``CrossEntropyLoss``: labels / their sum + 1e-10 (added after dividing) against the
    log-softmax, summed over classes, mean over videos."""
    target = labels / labels.sum(dim=1, keepdim=True).clamp_min(1e-30) + 1e-10
    return -torch.mean(torch.sum(target * F.log_softmax(logits, dim=1), dim=1), dim=0)


def generalized_cross_entropy(probabilities: torch.Tensor, target: torch.Tensor, q: float) -> torch.Tensor:
    """The official ``GeneralizedCE`` (Zhang & Sabuncu 2018): (1 - p^q) / q on the target rows and on the
    others with 1 - p, each averaged over its rows per video, then over videos."""
    positives = torch.sum(target, dim=1) + 1e-7
    negatives = torch.sum(1 - target, dim=1) + 1e-7
    first = torch.mean(torch.sum(((1 - (probabilities + 1e-7) ** q) / q) * target, dim=1) / positives)
    second = torch.mean(torch.sum(((1 - (1 - probabilities + 1e-7) ** q) / q) * (1 - target), dim=1) / negatives)
    return first + second


def soft_cross_entropy(target: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    return -torch.mean(torch.sum(target * F.log_softmax(logits, dim=1), dim=1))


@register_method("case")
class CASE(Method):
    Network = CASENetwork
    # main_case.py: 300 epochs of batch 16 (drop_last: 12 steps over THUMOS14's 200 videos), Adam lr 1e-4, wd 5e-4
    training_defaults = TrainingSettings(epochs=300, drop_last=True)
    localization_defaults = LocalizationSettings(
        class_threshold=0.25,
        argmax_fallback=True,
        cas_normalization="none",
        cas_thresholds=steps(0.1, 1.0, 0.1),
        contrast_on_thresholded=False,
        outer_ratio=0.15,  # their gamma 0.15, passed where get_proposal_oic takes lambda_ (the outer ratio)
        class_score_weight=0.2,  # ... so the class score keeps get_proposal_oic's default gamma 0.2
        nms_threshold=0.4,
        soft_nms_alpha=0.35,
        eval_tiou="0.1:0.7:0.1",
    )
    # wtal refine's target: the fused attention, chosen on held-out videos over the CAS (experiments/case_choices.py)
    addon_defaults = AddonSettings(pseudo_label_target="foreground")
    has_background_class = False
    has_foreground = True  # the streams' attention
    cas_kind = "probabilities"
    official_files = (2,)
    official_hint = "pass best_model.pkl and cls_gt.npy from the official output folder"
    # ActivityNet: no preset values - its ActivityNet settings were never released (the paper reports results),
    # so every one is the THUMOS14 value, marked so by wtal presets
    settings: CASENetwork
    cls_gt: torch.Tensor

    def __init__(self, feature_dim: int, num_classes: int, config: MethodConfig):
        super().__init__(feature_dim, num_classes, config)
        self.settings = settings = typed(config.network, CASENetwork)
        half = feature_dim // 2
        self.rgb = Stream(half, num_classes, settings)
        self.flow = Stream(feature_dim - half, num_classes, settings)
        # each cluster's (foreground, background) probability, from the last training step; uniform at first
        self.register_buffer("cls_gt", torch.ones(settings.num_clusters, 2) / settings.num_clusters)

    def forward(self, features: torch.Tensor) -> MethodOutput:
        half = self.feature_dim // 2
        rgb, flow = self.rgb(features[..., :half]), self.flow(features[..., half:])
        cues = [flow["attention"][..., None], rgb["attention"][..., None]]
        if not self.training:  # clustering-assisted inference: each stream's cluster foreground probability
            cues += [(s["clusters"].softmax(-1) @ self.cls_gt)[..., :1] for s in (flow, rgb)]
        probabilities = 0.5 * flow["cas"].softmax(-1) + 0.5 * rgb["cas"].softmax(-1)
        pooled = (probabilities + sum(cues)) / (1 + len(cues))  # (B, T, C), the official summation order
        k = max(1, features.shape[1] // self.settings.topk_divisor)
        topk = torch.topk(pooled, k, dim=1).indices  # (B, k, C)
        top_flow = torch.gather(flow["cas"], 1, topk).mean(dim=1)
        top_rgb = torch.gather(rgb["cas"], 1, topk).mean(dim=1)
        return MethodOutput(
            video_scores=0.5 * top_rgb.softmax(1) + 0.5 * top_flow.softmax(1),
            cas=pooled,
            actionness=None,
            internals={
                f"{name}_{key}": value
                for name, stream in (("rgb", rgb), ("flow", flow))
                for key, value in stream.items()
            }
            | {"topk": topk, "rgb_top": top_rgb, "flow_top": top_flow},
            foreground=0.5 * rgb["attention"] + 0.5 * flow["attention"],
        )

    def loss(self, outputs: MethodOutput, batch: Batch) -> dict[str, torch.Tensor]:
        inner, s, labels = outputs.internals, self.settings, batch.labels
        video = 0.5 * normalized_cross_entropy(inner["flow_top"], labels) + 0.5 * normalized_cross_entropy(
            inner["rgb_top"], labels
        )
        # foreground targets: the top rows of each labelled class
        picked = torch.zeros_like(inner["rgb_cas"]).scatter_(1, inner["topk"], 1.0)
        foreground = (picked * (labels[:, None, :] > 0)).amax(dim=2)  # (B, T)
        attention = generalized_cross_entropy(inner["flow_attention"], foreground, s.gce_q) + generalized_cross_entropy(
            inner["rgb_attention"], foreground, s.gce_q
        )
        # snippet clustering: every row of the batch, labelled by optimal transport under the dynamic prior
        fused_attention = 0.5 * inner["rgb_attention"].reshape(-1) + 0.5 * inner["flow_attention"].reshape(-1)
        order = torch.argsort(-fused_attention)
        place = order if s.prior_order == "argsort" else torch.argsort(order)
        clusters = {name: inner[f"{name}_clusters"].reshape(-1, s.num_clusters) for name in ("rgb", "flow")}
        fused_clusters = (0.5 * clusters["rgb"] + 0.5 * clusters["flow"]).detach()
        cluster_labels = self._sinkhorn(fused_clusters, prior=self._prior(place.float()))
        clustering = soft_cross_entropy(cluster_labels, clusters["rgb"]) + soft_cross_entropy(
            cluster_labels, clusters["flow"]
        )
        # cluster classification: cluster prototypes against foreground and background prototypes
        split = foreground.reshape(-1)
        split = torch.stack((split, 1 - split), dim=-1)  # (N, 2)
        logits = {}
        for name in ("rgb", "flow"):
            rows = inner[f"{name}_features"].reshape(-1, s.hidden_dim)  # (N, H)
            cluster_prototypes = F.normalize(torch.einsum("nk,nc->kc", cluster_labels, rows), dim=-1)
            split_prototypes = F.normalize(torch.einsum("nk,nc->kc", split, rows), dim=-1)
            logits[name] = torch.einsum("mc,nc->mn", cluster_prototypes, split_prototypes) * s.temperature
        cls_gt = self._sinkhorn((0.5 * logits["flow"] + 0.5 * logits["rgb"]).detach(), marginal=split.mean(dim=0))
        classification = soft_cross_entropy(cls_gt, logits["rgb"]) + soft_cross_entropy(cls_gt, logits["flow"])
        if self.training:  # what inference uses: the last training step's table
            self.cls_gt.copy_(cls_gt)
        return {
            "video": video,
            "attention": attention,
            "clustering": s.cluster_weight * clustering,
            "cluster_classification": s.cluster_class_weight * classification,
        }

    def collapse(self, outputs: MethodOutput) -> str | None:
        """The fused attention near 0 or near 1 on 99% of the batch's rows: its foreground targets then pick rows
        at random, the clusters cannot be told apart, and the localized signal is flat."""
        assert outputs.foreground is not None
        flat = outputs.foreground.detach().float().flatten()
        low, high = (float(q) for q in torch.quantile(flat, torch.tensor([0.01, 0.99], device=flat.device)))
        if high < 0.05 or low > 0.95:
            return (
                f"the attention is near {0 if high < 0.05 else 1} on almost every row (1st-99th percentile "
                f"{low:.4f}-{high:.4f}): it no longer separates foreground from background (lower --lr)"
            )
        return None

    def _prior(self, place: torch.Tensor) -> torch.Tensor:
        """(N, clusters): a Gaussian in the distance between a row's place in the attention order (as a share of
        N) and each cluster's background probability, normalized to sum 1."""
        std = self.settings.prior_std
        distance = torch.abs((place[:, None] + 1) / place.shape[0] - (1.0 - self.cls_gt[:, 0]))
        prior = torch.exp(-(distance**2) / (2 * std**2)) / (std * math.sqrt(2 * math.pi))
        return prior / torch.sum(prior)

    @torch.no_grad()
    def _sinkhorn(
        self, scores: torch.Tensor, prior: torch.Tensor | float = 1.0, marginal: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The official ``OT``: Sinkhorn-Knopp on exp(scores / temperature x eps) x prior; columns sum to the
        uniform (or ``marginal``) distribution, each row to 1."""
        q = scores.div(self.settings.temperature).mul(self.settings.sinkhorn_eps).exp().mul(prior).t()
        k, n = q.shape
        q /= torch.sum(q)
        for _ in range(self.settings.sinkhorn_iterations):
            q /= torch.sum(q, dim=1, keepdim=True)
            q = q / k if marginal is None else q * marginal.unsqueeze(1)
            q /= torch.sum(q, dim=0, keepdim=True)
            q /= n
        return q.t() * n

    @classmethod
    def convert_official(cls, states: list[dict[str, torch.Tensor]]) -> tuple[dict[str, torch.Tensor], int, int, dict]:
        network = next((state for state in states if "cas_module_rgb.0.weight" in state), None)
        if network is None:
            raise KeyError("cas_module_rgb.0.weight")
        tables = [state for state in states if state is not network]
        if len(tables) != 1 or len(tables[0]) != 1:
            raise KeyError("cls_gt (the cls_gt.npy saved beside best_model.pkl)")
        ours = {"cls_gt": next(iter(tables[0].values())).float()}
        for stream in ("rgb", "flow"):
            for official, mine in (
                (f"cas_module_{stream}.0", f"{stream}.cas.0"),
                (f"cas_module_{stream}.2", f"{stream}.cas.2"),
                (f"base_module_{stream}.0", f"{stream}.encoder"),
                (f"att_module_{stream}", f"{stream}.attention"),
            ):
                for kind in ("weight", "bias"):
                    ours[f"{mine}.{kind}"] = network[f"{official}.{kind}"]
            ours[f"{stream}.clusters.prototypes.weight"] = network[f"clu_head_{stream}.prototypes.weight"]
        hidden, half = ours["rgb.cas.0.weight"].shape[:2]
        settings = {"hidden_dim": int(hidden), "num_clusters": int(ours["rgb.clusters.prototypes.weight"].shape[0])}
        feature_dim = int(half) + int(ours["flow.cas.0.weight"].shape[1])
        return ours, feature_dim, int(ours["rgb.cas.2.weight"].shape[0]), settings
