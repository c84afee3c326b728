"""Plain, loop-by-loop transcriptions of what the four official implementations compute, written from
reading them (Pilhyeon/BaSNet-pytorch, Pilhyeon/WTAL-Uncertainty-Modeling, VividLe/BackTAL,
Finspire13/CMCS-Temporal-Action-Localization), in the official checkpoint key layout.

They are deliberately written the slow, obvious way (Python loops over thresholds, proposals and
segments, NMS as in the papers' code) so that wtal-pipe's vectorized implementation is checked against
an independent statement of the same arithmetic; tests/fixtures/official_parity.json holds numbers the
official code itself produced on the same seeded inputs (see PROVENANCE.md), which pins these
transcriptions to the real thing.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from scipy.interpolate import interp1d

# ---------------------------------------------------------------------------------------------------
# weights in the official layouts, filled from a numpy generator (identical on every platform)


def layout(method: str, dim: int, classes: int, hidden: int = 2048) -> list[tuple[str, tuple[int, ...]]]:
    """(key, shape) of an official checkpoint, in its state_dict order."""
    if method == "basnet":
        return [
            ("filter_module.conv_1.0.weight", (512, dim, 1)),
            ("filter_module.conv_1.0.bias", (512,)),
            ("filter_module.conv_2.0.weight", (1, 512, 1)),
            ("filter_module.conv_2.0.bias", (1,)),
            ("cas_module.conv_1.0.weight", (hidden, dim, 3)),
            ("cas_module.conv_1.0.bias", (hidden,)),
            ("cas_module.conv_2.0.weight", (hidden, hidden, 3)),
            ("cas_module.conv_2.0.bias", (hidden,)),
            ("cas_module.conv_3.0.weight", (classes + 1, hidden, 1)),
        ]
    if method == "um":
        return [
            ("cas_module.conv.0.weight", (hidden, dim, 3)),
            ("cas_module.conv.0.bias", (hidden,)),
            ("cas_module.classifier.0.weight", (classes, hidden, 1)),
        ]
    if method == "backtal":
        return [
            ("filter_module.conv_1.0.weight", (512, dim, 1)),
            ("filter_module.conv_1.0.bias", (512,)),
            ("filter_module.conv_2.0.weight", (1, 512, 1)),
            ("filter_module.conv_2.0.bias", (1,)),
            ("base_module.conv_1.weight", (hidden, dim, 3)),
            ("base_module.conv_2.weight", (hidden, hidden, 3)),
            ("classifier_module.conv.weight", (classes + 1, hidden, 1)),
            ("embedding_module.conv_1.weight", (512, dim, 3)),
            ("embedding_module.conv_1.bias", (512,)),
            ("embedding_module.conv_2.weight", (32, 512, 3)),
            ("embedding_module.conv_2.bias", (32,)),
        ]
    if method == "cmcs":  # one BackboneNet trained with the background class, THUMOS14 widths
        keys = [("base.base_conv_0.weight", (32, dim, 1)), ("base.base_conv_0.bias", (32,))]
        for k in range(4):
            keys += [
                (f"cls_bottoms.{k}.cls_b{k}_conv_0.weight", (16, 32, 3)),
                (f"cls_bottoms.{k}.cls_b{k}_conv_0.bias", (16,)),
            ]
        for k in range(4):
            keys += [(f"cls_heads.{k}.weight", (classes + 1, 16)), (f"cls_heads.{k}.bias", (classes + 1,))]
        return [
            *keys,
            ("att_bottom.att_conv_0.weight", (16, 32, 1)),
            ("att_bottom.att_conv_0.bias", (16,)),
            ("att_head.weight", (1, 16)),
            ("att_head.bias", (1,)),
        ]
    if method == "case":  # WTALModel: its widths are fixed at 512 and 16 prototypes (``hidden`` is not used)
        half = dim // 2
        keys = []
        for stream in ("rgb", "flow"):
            keys += [
                (f"cas_module_{stream}.0.weight", (512, half, 1)),
                (f"cas_module_{stream}.0.bias", (512,)),
                (f"cas_module_{stream}.2.weight", (classes, 512, 1)),
                (f"cas_module_{stream}.2.bias", (classes,)),
            ]
        keys += [(f"base_module_{stream}.0.{kind}", (512, half, 1)[: 3 if kind == "weight" else 1])
                 for stream in ("rgb", "flow") for kind in ("weight", "bias")]  # fmt: skip
        keys += [(f"att_module_{stream}.{kind}", (1, 512, 1)[: 3 if kind == "weight" else 1])
                 for stream in ("rgb", "flow") for kind in ("weight", "bias")]  # fmt: skip
        return [*keys, ("clu_head_flow.prototypes.weight", (16, 512)), ("clu_head_rgb.prototypes.weight", (16, 512))]
    raise ValueError(method)


def cluster_table(seed: int | None, clusters: int = 16) -> torch.Tensor:
    """CASE's ``cls_gt`` (each cluster's foreground and background probability): uniform 1 / clusters as its
    training starts (``seed`` None), else seeded rows of a softmax."""
    if seed is None:
        return torch.ones(clusters, 2) / clusters
    logits = torch.from_numpy(np.random.default_rng(seed).standard_normal((clusters, 2)).astype(np.float32) * 2)
    return logits.softmax(dim=1)


def official_files(method: str, state: dict, table_seed: int | None = None) -> list[dict]:
    """What ``wtal import checkpoint`` takes for ``method``: the state dict, and for CASE its ``cls_gt.npy``."""
    return [state, {"cls_gt": cluster_table(table_seed)}] if method == "case" else [state]


def seeded_state(keys: list[tuple[str, tuple[int, ...]]], seed: int, classes: int, classifier_scale: float = 12.0):
    """Weights ~ N(0, 1 / fan_in) (classifiers x ``classifier_scale``, so that some classes pass their
    thresholds), biases ~ N(0, 0.01)."""
    rng = np.random.default_rng(seed)
    state = {}
    for key, shape in keys:
        if key.endswith("weight") and len(shape) >= 2:
            scale = classifier_scale if shape[0] in (classes, classes + 1) else 1.0
            values = rng.standard_normal(shape) * scale / np.sqrt(np.prod(shape[1:]))
        else:
            values = rng.standard_normal(shape) * 0.1
        state[key] = torch.from_numpy(values.astype(np.float32))
    return state


def planted_features(seed: int, length: int, dim: int, classes: int) -> np.ndarray:
    """Noise with a few stretches of class prototypes, so the CAS has structure to localize."""
    rng = np.random.default_rng(seed)
    prototypes = np.random.default_rng(1000).standard_normal((classes, dim)) * 1.5
    x = rng.standard_normal((length, dim)) * 0.5
    for c in rng.choice(classes, size=2, replace=False):
        start = int(rng.integers(0, max(1, length - 4)))
        x[start : start + int(rng.integers(2, max(3, length // 4)))] += prototypes[c]
    return x.astype(np.float32)


# ---------------------------------------------------------------------------------------------------
# forward passes (official key layout; features (B, T, D))


def _conv(h, state, name, padding=0, bias=True):
    return F.conv1d(h, state[f"{name}.weight"], state.get(f"{name}.bias") if bias else None, padding=padding)


def _topk_mean(cas: torch.Tensor, k: int) -> torch.Tensor:  # (B, T, K) -> (B, K)
    return cas.sort(dim=1, descending=True)[0][:, :k].mean(dim=1)


def basnet_forward(state, x, train=False):
    h = x.transpose(1, 2)
    weights = torch.sigmoid(
        _conv(F.leaky_relu(_conv(h, state, "filter_module.conv_1.0")), state, "filter_module.conv_2.0")
    )

    def cas_module(inp):
        out = F.leaky_relu(_conv(inp, state, "cas_module.conv_1.0", 1))
        out = F.leaky_relu(_conv(out, state, "cas_module.conv_2.0", 1))
        return _conv(F.dropout(out, 0.7, train), state, "cas_module.conv_3.0", bias=False).transpose(1, 2)

    cas_base, cas_supp = cas_module(h), cas_module(h * weights)
    k = x.shape[1] // 8
    return {
        "score_base": F.softmax(_topk_mean(cas_base, k), 1),
        "score_supp": F.softmax(_topk_mean(cas_supp, k), 1),
        "cas_supp": cas_supp,
        "weights": weights.transpose(1, 2),
    }


def basnet_loss(out, labels):
    ones, zeros = torch.ones_like(labels[:, :1]), torch.zeros_like(labels[:, :1])
    base = torch.cat([labels, ones], 1)
    supp = torch.cat([labels, zeros], 1)
    return {
        "base": F.binary_cross_entropy(out["score_base"], base / base.sum(1, keepdim=True)),
        "supp": F.binary_cross_entropy(out["score_supp"], supp / supp.sum(1, keepdim=True)),
        "filter_l1": 1e-4 * out["weights"].abs().sum(1).mean(),
    }


def um_forward(state, x, train=False):
    features = F.relu(_conv(x.transpose(1, 2), state, "cas_module.conv.0", 1))  # (B, 2048, T)
    cas = _conv(F.dropout(features, 0.7, train), state, "cas_module.classifier.0", bias=False).transpose(1, 2)
    features = features.transpose(1, 2)
    magnitudes = features.norm(p=2, dim=2)
    k_act, k_bkg = x.shape[1] // 9, x.shape[1] // 4
    select = F.dropout(torch.ones_like(magnitudes), 0.7, train)
    idx_act = (magnitudes * select).sort(dim=1, descending=True)[1][:, :k_act]
    reverse = magnitudes.max(dim=1, keepdim=True)[0] - magnitudes
    idx_bkg = (reverse * select).sort(dim=1, descending=True)[1][:, :k_bkg]
    feat_act = torch.stack([features[b, idx_act[b]] for b in range(x.shape[0])])
    feat_bkg = torch.stack([features[b, idx_bkg[b]] for b in range(x.shape[0])])
    score_bkg = torch.stack([cas[b, idx_bkg[b]].mean(0) for b in range(x.shape[0])])
    return {
        "score_act": F.softmax(_topk_mean(cas, k_act), 1),
        "score_bkg": F.softmax(score_bkg, 1),
        "feat_act": feat_act,
        "feat_bkg": feat_bkg,
        "features": features,
        "cas_softmax": F.softmax(cas, 2),
    }


def um_loss(out, labels, margin=100.0):
    uniform = torch.full_like(out["score_bkg"], 1.0 / labels.shape[1])
    act = (margin - out["feat_act"].mean(1).norm(p=2, dim=1)).clamp(min=0)
    bkg = out["feat_bkg"].mean(1).norm(p=2, dim=1)
    return {
        "cls": F.binary_cross_entropy(out["score_act"], labels / labels.sum(1, keepdim=True)),
        "uncertainty": 5e-4 * ((act + bkg) ** 2).mean(),
        "background": F.binary_cross_entropy(out["score_bkg"], uniform),
    }


def backtal_forward(state, x, train=False, topk_ratio=0.125):
    """x: (B, 750, D) already interpolated. The affinity conv written per output row from its definition
    in the official code: unfold rows (channel c, tap k) -> index 3c + k, the first third of those rows
    scaled by the left similarity, the second by the self similarity, the last by the right one."""
    h = x.transpose(1, 2)  # (B, D, T)
    weights = torch.sigmoid(
        _conv(F.leaky_relu(_conv(h, state, "filter_module.conv_1.0")), state, "filter_module.conv_2.0")
    )
    emb = _conv(F.leaky_relu(_conv(h, state, "embedding_module.conv_1", 1)), state, "embedding_module.conv_2", 1)
    emb = F.normalize(emb, p=2, dim=1)
    left, right = torch.zeros_like(emb), torch.zeros_like(emb)
    left[:, :, 1:], right[:, :, :-1] = emb[:, :, :-1], emb[:, :, 1:]
    sims = [F.cosine_similarity(emb, other, dim=1) for other in (left, emb, right)]  # each (B, T)

    def affinity(inp, weight):
        batch, channels, length = inp.shape
        padded = F.pad(inp, (1, 1))
        rows = torch.stack([padded[:, c, k : k + length] for c in range(channels) for k in range(3)], 1)  # (B, 3C, T)
        scale = torch.stack([sims[r // channels] for r in range(3 * channels)], 1)
        out = (rows * scale).transpose(1, 2) @ weight.reshape(weight.shape[0], -1).t()  # (B, T, O)
        return out.transpose(1, 2)

    def branch(inp):
        first = F.leaky_relu(affinity(inp, state["base_module.conv_1.weight"]))
        second = F.dropout(F.leaky_relu(affinity(first, state["base_module.conv_2.weight"])), 0.7, train)
        return first, F.conv1d(second, state["classifier_module.conv.weight"])  # (B, C + 1, T)

    _, cas_base = branch(h)
    first_supp, cas_supp = branch(h * weights)
    k = int(x.shape[1] * topk_ratio)  # int(NUM_SEGMENTS * TOPK_K_R)
    return {
        "score_base": cas_base.topk(k, dim=2)[0].mean(2),
        "score_supp": cas_supp.topk(k, dim=2)[0].mean(2),
        "cas_base": cas_base,
        "cas_supp": cas_supp,
        "embedding": emb,
        "weights": weights,
        "first_supp": first_supp,
    }


def backtal_loss(out, labels, clicks, activitynet=False, topk_ratio=0.125):
    """clicks: list per video of clicked rows. ``activitynet``: the official ActivityNet1.2 branch (the click
    separation against a top-20% CAS mean, weighted 0.1)."""
    classes = labels.shape[1]
    length = out["cas_base"].shape[2]

    def soft_ce(scores, target):
        target = target / (target.sum(1, keepdim=True) + 1e-10)
        return -(target * F.log_softmax(scores, 1)).sum(1).mean()

    ones, zeros = torch.ones_like(labels[:, :1]), torch.zeros_like(labels[:, :1])
    terms = {
        "base": soft_ce(out["score_base"], torch.cat([labels, ones], 1)),
        "supp": soft_ce(out["score_supp"], torch.cat([labels, zeros], 1)),
        "filter_l1": 1e-4 * out["weights"].abs().sum(2).mean(),
    }
    target = torch.full(out["cas_base"].shape[::2], -100, dtype=torch.long)
    for b, rows in enumerate(clicks):
        target[b, rows] = classes
    terms["click"] = F.cross_entropy(out["cas_base"], target, ignore_index=-100)
    separation, affinity = [], []
    k = int(length * topk_ratio)
    foreground = out["score_base"]
    if activitynet:
        foreground = torch.mean(torch.topk(out["cas_base"], int(length * 0.2), dim=2)[0], dim=2)
    for b, rows in enumerate(clicks):
        if not rows:
            continue
        pairs = []
        for c in torch.nonzero(labels[b]).flatten().tolist():
            pair = torch.stack([foreground[b, c], out["cas_base"][b, c, rows].mean()])
            pairs.append(-F.log_softmax(pair, 0)[0])
        separation.append(torch.stack(pairs).mean())
        emb = out["embedding"][b].t()  # (T, 32)
        fg_rows = [
            i for c in torch.nonzero(labels[b]).flatten().tolist() for i in out["cas_supp"][b, c].topk(k)[1].tolist()
        ]
        fg, bg = emb[fg_rows], emb[rows]

        def cos(a, c):
            return a @ c.t() / (a.norm(dim=1, keepdim=True) * c.norm(dim=1, keepdim=True).t()).clamp(min=1e-8)

        loss = (0.5 - cos(fg, fg).min(1)[0]).clamp(min=0).mean() + (0.5 - cos(bg, bg).min(1)[0]).clamp(min=0).mean()
        loss = (
            loss + (cos(fg, bg).max(1)[0] - 0.1).clamp(min=0).mean() + (cos(fg, bg).max(0)[0] - 0.1).clamp(min=0).mean()
        )
        affinity.append(loss)
    terms["separation"] = (0.1 if activitynet else 1.0) * torch.stack(separation).mean()
    terms["affinity"] = 0.8 * torch.stack(affinity).mean()
    return terms


def cmcs_forward(state, x, train=False):
    """One BackboneNet; x (1, T, D) -> (avg_score (T, C + 1), global logits (C + 1,), branch scores list)."""
    h = F.dropout2d(x.transpose(1, 2).unsqueeze(3), 0.5, train).squeeze(3)
    base = F.relu(_conv(h, state, "base.base_conv_0"))
    branches = []
    for k in range(4):
        feat = F.relu(_conv(base, state, f"cls_bottoms.{k}.cls_b{k}_conv_0", 1))
        branches.append(F.linear(feat.transpose(1, 2), state[f"cls_heads.{k}.weight"], state[f"cls_heads.{k}.bias"]))
    avg = torch.stack(branches).mean(0)
    att = F.relu(_conv(base, state, "att_bottom.att_conv_0"))
    att = F.softmax(F.linear(att.transpose(1, 2), state["att_head.weight"], state["att_head.bias"]), dim=1)
    return avg, (avg * att).sum(1), branches


def cmcs_loss(branches, logits, label, weight):
    k = len(branches)
    total_div = 0.0
    soft = [F.softmax(s, 2)[0] for s in branches]  # each (T, C + 1)
    n_classes = soft[0].shape[1]
    for c in range(n_classes):  # per class, mean cosine over ordered pairs of distinct branches
        for i in range(k):
            for j in range(k):
                if i != j:
                    a, b = soft[i][:, c], soft[j][:, c]
                    total_div = total_div + (a @ b) / (a.norm() * b.norm() + 1e-6)
    diversity = total_div / (k * (k - 1)) / n_classes
    norms = torch.stack([s[0].abs().sum(0) / s.shape[1] for s in branches])  # (K, C + 1)
    norm_reg = (norms - norms.mean(0, keepdim=True)).abs().mean()
    cls = F.cross_entropy(logits, torch.tensor([label])) * weight
    return {"cls": cls, "diversity": 0.2 * diversity * weight, "norm": 0.2 * norm_reg * weight}


# ---------------------------------------------------------------------------------------------------
# test-time post-processing (numpy, loops)


def _relu_minmax(cas: np.ndarray, clip: bool = False) -> np.ndarray:  # over time, float32 as the torch code
    high = np.maximum(cas.max(0, keepdims=True), 0)
    low = np.maximum(cas.min(0, keepdims=True), 0)
    delta = high - low
    delta[delta <= 0] = 1
    out = (cas - low) / delta
    return np.clip(out, 0, 1) if clip else out


def _groups(positions: np.ndarray) -> list[np.ndarray]:
    return np.split(positions, np.where(np.diff(positions) != 1)[0] + 1) if positions.size else []


def _nms_plus_one(props: list[list[float]], threshold: float) -> list[list[float]]:
    """props: [score, start, end]."""
    if not props:
        return []
    p = np.array(props)
    areas = p[:, 2] - p[:, 1] + 1
    order = p[:, 0].argsort()[::-1]
    keep = []
    while order.size:
        i = order[0]
        keep.append(p[i].tolist())
        inter = np.maximum(0.0, np.minimum(p[i, 2], p[order[1:], 2]) - np.maximum(p[i, 1], p[order[1:], 1]) + 1)
        iou = inter / (areas[i] + areas[order[1:]] - inter)
        order = order[1:][iou < threshold]
    return keep


def _oic(
    column: np.ndarray,
    positions: np.ndarray,
    gamma_score: float,
    t_factor: float,
    min_length: int,
    score_on: np.ndarray,
) -> list[list[float]]:
    """BaS-Net/UM get_proposal_oic for one class."""
    out = []
    for group in _groups(positions):
        if len(group) < min_length:
            continue
        inner = score_on[group].mean()
        lo = max(0, int(group[0] - 0.25 * len(group)))
        hi = min(len(column) - 1, int(group[-1] + 0.25 * len(group)))
        outer_idx = list(range(lo, group[0])) + list(range(group[-1] + 1, hi + 1))
        outer = score_on[outer_idx].mean() if outer_idx else 0.0
        out.append([inner - outer + 0.2 * gamma_score, group[0] * t_factor, (group[-1] + 1) * t_factor])
    return out


def _upgrade(signal: np.ndarray, scale: int = 24) -> np.ndarray:
    return interp1d(np.arange(signal.shape[0]), signal, kind="linear", axis=0, fill_value="extrapolate")(
        np.arange(0, signal.shape[0], 1 / scale)
    )


def basnet_detections(score_supp: np.ndarray, cas_supp: np.ndarray, rows: int) -> list[tuple]:
    """score_supp (C + 1,) softmax, cas_supp (750, C + 1) raw logits of a test video of ``rows`` rows."""
    scores = score_supp[:-1]
    selected = [c for c in range(scores.size) if scores[c] >= 0.25]
    cas = _relu_minmax(cas_supp)
    t_in = cas.shape[0]
    t_factor = (16 * rows) / (24 * t_in * 25)
    detections = []
    for c in selected:
        up = _upgrade(cas[:, c])
        props = []
        for th in np.arange(0.0, 0.25, 0.025):
            col = up.copy()
            col[col < th] = 0
            props += _oic(col, np.where(col > 0)[0], 1.0, t_factor, 1, col)  # class score binarized to 1
        detections += [(c, *p) for p in _nms_plus_one(props, 0.7)]
    return detections


def um_detections(out: dict, rows: int) -> list[tuple]:
    """``out`` from um_forward on one test video (eval)."""
    scores = out["score_act"][0].numpy()
    selected = [c for c in range(scores.size) if scores[c] >= 0.2] or [int(np.argmax(scores))]
    mu_act = out["feat_act"][0].norm(dim=1).mean().item()
    mu_bkg = out["feat_bkg"][0].norm(dim=1).mean().item()
    magnitudes = out["features"][0].norm(p=2, dim=1).numpy()
    delta = np.float32(mu_act) - np.float32(mu_bkg)
    magnitudes = np.clip((magnitudes - np.float32(mu_bkg)) / (delta if delta > 0 else np.float32(1)), 0, 1)
    cas = _relu_minmax(out["cas_softmax"][0].numpy() * magnitudes[:, None], clip=True)
    t_in = cas.shape[0]
    t_factor = (16 * rows) / (24 * t_in * 25)
    up_mag = _upgrade(magnitudes)
    detections = []
    for c in selected:
        up = _upgrade(cas[:, c])
        props = []
        for th in np.arange(0.0, 0.25, 0.025):
            col = up.copy()
            col[col < th] = 0
            props += _oic(col, np.where(col > 0)[0], float(scores[c]), t_factor, 2, col)
        for th in np.arange(0.4, 0.625, 0.025):
            mag = up_mag.copy()
            mag[mag < th] = 0
            props += _oic(up, np.where(mag > 0)[0], float(scores[c]), t_factor, 2, up)
        detections += [(c, *p) for p in _nms_plus_one(props, 0.6)]
    return detections


def backtal_detections(out: dict, frame_num: int, duration: float, activitynet: bool = False) -> list[tuple]:
    """``out`` from backtal_forward on one test video (eval, interpolated rows). ``activitynet``: the official
    ActivityNet1.2 config and branches (no magnitude proposals, every proposal shrunk by 2% at each end and
    followed by a whole-video proposal of score 0.6)."""
    th_class, th_max, lam, gamma, nms_th = (0.1, 0.15, 20, 0.6, 0.7) if activitynet else (0.25, 0.25, 0.25, 0.2, 0.55)
    scores = F.softmax(out["score_supp"], 1)[0, :-1].numpy()
    cas = _relu_minmax(out["cas_supp"][0].numpy().T)  # (750, C + 1)
    magnitude = _relu_minmax(out["first_supp"][0].norm(p=2, dim=0).numpy()[:, None], clip=True)[:, 0]
    mag_frames = cv2.resize(magnitude[None].astype(np.float32), (frame_num, 1), interpolation=cv2.INTER_LINEAR)[0]

    def proposals(positions, values, score):
        found = []
        for group in _groups(positions):
            inner = values[group].mean()
            lo = max(0, int(group[0] - lam * len(group)))
            hi = min(frame_num, int(group[-1] + lam * len(group)))
            outer_idx = list(range(lo, group[0])) + list(range(group[-1] + 1, hi))
            outer = values[outer_idx].mean() if outer_idx else 0.0
            start, end = group[0] / frame_num * duration, (group[-1] + 1) / frame_num * duration
            if activitynet:
                cut = end - start
                start, end = start + cut * 0.02, end - cut * 0.02
            found.append([inner - outer + gamma * score, start, end])
            if activitynet:
                found.append([0.6, 0, duration])
        return found

    detections = []
    for c in [c for c in range(scores.size) if scores[c] >= th_class]:
        frames = cv2.resize(cas[:, c][None].astype(np.float32), (frame_num, 1), interpolation=cv2.INTER_LINEAR)[0]
        props = []
        for th in np.arange(0.0, th_max, 0.025):
            col = frames.copy()
            col[col < th] = 0
            props += proposals(np.where(col > 0)[0], col, float(scores[c]))
        for th in [] if activitynet else np.arange(0.3, 0.8, 0.075):
            mag = mag_frames.copy()
            mag[mag < th] = 0
            props += proposals(np.where(mag > 0)[0], frames, float(scores[c]))
        detections += [(c, *p) for p in _nms_plus_one(props, nms_th)]
    return detections


def cmcs_detections(avg_score: np.ndarray, global_logits: np.ndarray, frame_cnt: int, fps: float) -> list[tuple]:
    """avg_score (T, C + 1) logits, global_logits (C + 1,), from detect.py's thresholds."""
    global_score = F.softmax(torch.from_numpy(global_logits), 0).numpy()
    duration = frame_cnt / fps
    rows = avg_score.shape[0]
    detections = []
    for c in range(global_score.size - 1):
        if global_score[c] <= 0.1:
            continue
        metric = F.softmax(torch.from_numpy(avg_score), 1).numpy()[:, c]
        metric = metric - metric.min()
        metric = metric / metric.max()
        ticks = np.arange(rows) * 16
        metric = interp1d(ticks, metric, kind="linear")(np.arange(ticks[-1] + 1))
        mask = metric > metric.mean()
        # skimage dilation with a 20-frame column footprint: 10 frames before, 9 after
        mask = ndimage.binary_dilation(mask, structure=np.ones(20, bool))
        labels, count = ndimage.label(mask)
        for region in range(1, count + 1):
            where = np.where(labels == region)[0]
            start, end = where.min(), where.max() + 1
            length = end - start
            left = min(int(start - length * 0.25), start - 1)
            right = max(int(end + length * 0.25), end + 1)
            outer = np.concatenate([metric[left:start], metric[end:right]])
            score = metric[where].mean() - (outer.mean() if outer.size else 0.0) + global_score[c] * 0.25
            detections.append((c, score, min(duration, max(0.0, start / fps)), min(duration, max(0.0, end / fps))))
    return detections
