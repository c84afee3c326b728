"""Pictures of what the model saw: per detected class its activation sequence over time, the
thresholds it was cut at, the detections as bars and, when given, the ground truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .cache import atomic_path
from .errors import WtalError
from .localize import VideoScores, minmax, upsample
from .methods.base import MethodConfig


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise WtalError("plots need matplotlib, which is not installed", 'pip install "wtal-pipe[plot]"')
    return plt


def plot_video(path: str | Path, title: str, scores: VideoScores, detections: list[tuple[int, float, float, float]],
               classes: list[str], config: MethodConfig, seconds_per_row: float,
               ground_truth: list[tuple[float, float, int]] | None = None, top: int = 5) -> Path:
    """One panel per class that was detected or annotated: normalized CAS, thresholds, bars."""
    plt = _pyplot()
    shown = sorted({d[0] for d in detections} | {g[2] for g in ground_truth or []})
    if not shown:
        shown = [int(np.argmax(scores.video_scores))]
    factor = max(1, config.upsample)
    time = (np.arange(scores.cas.shape[0] * factor) + 0.5) * seconds_per_row / factor
    fig, axes = plt.subplots(len(shown), 1, figsize=(11, 2.2 * len(shown) + 0.6), sharex=True, squeeze=False)
    for ax, c in zip(axes[:, 0], shown):
        cas = minmax(upsample(scores.cas[:, [c]], factor))[:, 0]
        ax.plot(time, cas, color="tab:blue", lw=1.2, label="CAS (min-max normalized)")
        if scores.actionness is not None:
            act = minmax(upsample(scores.actionness[:, None], factor))[:, 0]
            ax.plot(time, act, color="tab:purple", lw=0.8, alpha=0.6, label="actionness")
        for threshold in (min(config.cas_thresholds), max(config.cas_thresholds)):
            ax.axhline(threshold, color="grey", ls=":", lw=0.8)
        mine = sorted((d for d in detections if d[0] == c), key=lambda d: -d[1])[:top]
        for rank, (_, score, start, end) in enumerate(mine):
            y = 1.08 + 0.1 * rank
            ax.plot([start, end], [y, y], color="tab:red", lw=4, solid_capstyle="butt")
            ax.text(end, y, f" {score:.2f}", va="center", fontsize=7, color="tab:red")
        for start, end, gc in ground_truth or []:
            if gc == c:
                ax.axvspan(start, end, color="tab:green", alpha=0.18, lw=0)
        ax.set_ylim(-0.05, 1.12 + 0.1 * max(1, len(mine)))
        ax.set_ylabel(f"{classes[c]}\n(p={scores.video_scores[c]:.2f})", fontsize=8)
    axes[0, 0].set_title(f"{title}: red = top detections (score), green = ground truth, dotted = thresholds "
                         f"{min(config.cas_thresholds):g}..{max(config.cas_thresholds):g}", fontsize=9)
    axes[-1, 0].set_xlabel("seconds")
    axes[0, 0].legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)


def plot_saved_scores(scores_path: Path, detections: dict, config: MethodConfig, meta: dict, data_dir: Path,
                      subset: str, out_dir: Path) -> int:
    """One plot per video of a ``wtal test`` run, from the raw scores it saved (no model needed)."""
    from .data.dataset import Dataset

    raw = np.load(scores_path)
    dataset = Dataset(data_dir, subset, classes=meta["classes"])
    for video in dataset.videos:
        actionness = raw[f"{video.vid}/actionness"] if f"{video.vid}/actionness" in raw else None
        scores = VideoScores(raw[f"{video.vid}/video_scores"], raw[f"{video.vid}/cas"], actionness)
        dets = [(meta["classes"].index(d["label"]), d["score"], *d["segment"])
                for d in detections["results"].get(video.vid, [])]
        plot_video(Path(out_dir) / f"{video.vid}.png", video.vid, scores, dets, meta["classes"], config,
                   video.seconds_per_row, video.segments)
    return len(dataset.videos)
