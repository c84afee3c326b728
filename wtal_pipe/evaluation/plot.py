"""Pictures of what the model saw: per detected class its activation sequence over time, the
thresholds it was cut at, the detections as bars and, when given, the ground truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..cache import atomic_path
from ..data.dataset import Dataset
from ..errors import WtalError
from ..inference.detections import DetectionTable
from ..inference.localize import localization_signals, shown_classes
from ..inference.pipeline import Localized
from ..layout import inside
from ..methods.settings import LocalizationSettings


def pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise WtalError("plots need matplotlib, which is not installed", 'pip install "wtal-pipe[plot]"') from exc
    return plt


def plot_video(
    path: str | Path,
    *,
    title: str,
    localized: Localized,
    classes: list[str],
    settings: LocalizationSettings,
    truth: list[tuple[float, float, int]] | None = None,
    top: int = 5,
) -> Path:
    """One panel per class that was selected, detected or annotated: the signal the localizer thresholds
    (normalized and resampled as the settings say), its thresholds, the detections as bars, the truth."""
    plt = pyplot()
    scores, detections = localized.scores, localized.detections
    shown = shown_classes(scores.video_scores, settings, [d[0] for d in detections] + [g[2] for g in truth or []])
    cas, actionness, grid_time = localization_signals(scores, settings, localized.timing, shown)
    time = grid_time(np.arange(cas.shape[0]) + 0.5)
    fig, axes = plt.subplots(len(shown), 1, figsize=(11, 2.2 * len(shown) + 0.6), sharex=True, squeeze=False)
    for column, (ax, c) in enumerate(zip(axes[:, 0], shown, strict=True)):
        ax.plot(time, cas[:, column], color="tab:blue", lw=1.2, label=f"CAS ({settings.cas_normalization})")
        if actionness is not None:
            ax.plot(time, actionness, color="tab:purple", lw=0.8, alpha=0.6, label="actionness")
        if not settings.thresholds_relative_to_mean:
            for threshold in (min(settings.cas_thresholds), max(settings.cas_thresholds)):
                ax.axhline(threshold, color="grey", ls=":", lw=0.8)
        mine = sorted((d for d in detections if d[0] == c), key=lambda d: -d[1])[:top]
        for rank, (_, score, start, end) in enumerate(mine):
            y = 1.08 + 0.1 * rank
            ax.plot([start, end], [y, y], color="tab:red", lw=4, solid_capstyle="butt")
            ax.text(end, y, f" {score:.2f}", va="center", fontsize=7, color="tab:red")
        for start, end, gc in truth or []:
            if gc == c:
                ax.axvspan(start, end, color="tab:green", alpha=0.18, lw=0)
        ax.set_ylim(-0.05, 1.12 + 0.1 * max(1, len(mine)))
        ax.set_ylabel(f"{classes[c]}\n(p={scores.video_scores[c]:.2f})", fontsize=8)
    axes[0, 0].set_title(
        f"{title}: red = top detections (score), green = ground truth, dotted = threshold range", fontsize=9
    )
    axes[-1, 0].set_xlabel("seconds")
    axes[0, 0].legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)


def plot_saved_scores(
    scores_path: Path,
    detections: DetectionTable,
    *,
    settings: LocalizationSettings,
    classes: list[str],
    dataset: Dataset,
    out_dir: Path,
) -> int:
    """One plot per video of a ``wtal test`` run, from the raw scores it saved (no model needed)."""
    from ..inference.pipeline import load_scores

    scores, timings = load_scores(scores_path)
    per_video = dict(detections.per_video())
    for video in dataset.videos:
        dets = per_video.get(video.vid, [])
        plot_video(
            inside(out_dir, video.vid, ".png"),
            title=video.vid,
            localized=Localized(scores[video.vid], timings[video.vid], dets),
            classes=classes,
            settings=settings,
            truth=video.segments,
        )
    return len(dataset.videos)
