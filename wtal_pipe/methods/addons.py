"""What any method can train with beyond its paper, without the method knowing: a class-agnostic
actionness head and snippet-level pseudo labels (``wtal refine``). Both attach through the method
contract (``Method.objective``), so the trainer and the localizer still never branch on method names.

The head follows ASL (Ma et al., CVPR 2021) and CASE (Liu et al., ICCV 2023): a small temporal conv net on
the input features whose sigmoid is a per-row probability of "some action here"; it learns from the rows
the method's own CAS ranks highest (action) and lowest (background) for the video's labelled classes, and
at test time it scales the CAS. The pseudo-label term follows the self-training family (RSKP, ASM-Loc,
Zhou et al. CVPR 2023): soft per-row targets for the labelled classes, supervising the method's CAS, its
per-row softmax over classes and background, or its class-agnostic foreground weight (``pseudo_label_target``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ActionnessHead(nn.Module):
    """(B, T, D) -> (B, T) logits: Conv1d(D, dim, 3) - ReLU - Conv1d(dim, 1, 1)."""

    def __init__(self, feature_dim: int, dim: int):
        super().__init__()
        self.conv1 = nn.Conv1d(feature_dim, dim, 3, padding=1)
        self.conv2 = nn.Conv1d(dim, 1, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.conv1(features.transpose(1, 2))))[:, 0]


def ranked_targets(cas: torch.Tensor, labels: torch.Tensor, share: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the head's target (1 for the top ``share`` of rows by the CAS of the labelled classes, 0
    for the bottom ``share``) and which rows have one; videos without a label have none. (B, T) each."""
    batch, length, _ = cas.shape
    k = max(1, min(length // 2, int(length * share)))
    masked = cas.detach().masked_fill(labels[:, None, :] <= 0, float("-inf"))
    evidence = masked.max(dim=2).values  # (B, T): the strongest labelled class per row
    order = evidence.argsort(dim=1, descending=True)
    target = torch.zeros(batch, length, device=cas.device)
    chosen = torch.zeros(batch, length, dtype=torch.bool, device=cas.device)
    target.scatter_(1, order[:, :k], 1.0)
    chosen.scatter_(1, order[:, :k], True)
    chosen.scatter_(1, order[:, -k:], True)
    chosen &= (labels > 0).any(dim=1, keepdim=True)
    return target, chosen


def weighted_bce(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of logits against soft targets, averaged over the elements whose 0/1 weight is 1."""
    losses = F.binary_cross_entropy_with_logits(logits, target, reduction="none") * weight
    return losses.sum() / weight.sum().clamp_min(1.0)  # no host sync; 0 when nothing has a target


def pseudo_cas_loss(snippet_logits: torch.Tensor, targets: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy between the per-row class logits (B, T, C) and the soft pseudo targets, on the
    video's labelled classes only (the video-level loss already covers the others)."""
    weight = (labels > 0).to(snippet_logits.dtype)[:, None, :].expand_as(snippet_logits)
    return weighted_bce(snippet_logits, targets, weight)


def pseudo_background_loss(row_logits: torch.Tensor, targets: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per row of a labelled video, cross-entropy of the softmax over the classes and background (B, T, C + 1)
    against each labelled class's soft target and background's ``1 -`` the largest of them, normalized:
    a row outside every pseudo segment is background, as a background click is for BackTAL."""
    action = targets * (labels[:, None, :] > 0)
    target = torch.cat([action, 1 - action.amax(dim=2, keepdim=True)], dim=2)
    target = target / target.sum(dim=2, keepdim=True)  # >= 1 before: the background share covers the largest
    rows = (labels > 0).any(dim=1, keepdim=True).to(row_logits.dtype).expand(-1, row_logits.shape[1])
    losses = -(target * F.log_softmax(row_logits, dim=2)).sum(dim=2) * rows
    return losses.sum() / rows.sum().clamp_min(1.0)


def pseudo_foreground_loss(foreground: torch.Tensor, targets: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of a method's class-agnostic foreground weight (B, T) in (0, 1) against the
    largest soft target of the labelled classes, its action and background parts averaged apart (action
    rows are the few) and summed; labelled videos only."""
    action = (targets * (labels[:, None, :] > 0)).amax(dim=2)
    rows = (labels > 0).any(dim=1, keepdim=True).to(foreground.dtype)
    positive, negative = action * rows, (1 - action) * rows
    clamped = foreground.clamp(1e-6, 1 - 1e-6)
    return -(positive * clamped.log()).sum() / positive.sum().clamp_min(1e-6) - (
        negative * (1 - clamped).log()
    ).sum() / negative.sum().clamp_min(1e-6)
