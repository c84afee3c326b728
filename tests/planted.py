"""Planted-action feature datasets for the tests: known intervals in (T, D) features."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wtal_pipe.cache import atomic_save_npy, atomic_write_json
from wtal_pipe.layout import DataLayout


def write_planted_dataset(
    data_dir: str | Path,
    num_classes: int = 3,
    feature_dim: int = 64,
    n_train: int = 24,
    n_test: int = 12,
    rows: tuple[int, int] = (60, 140),
    seconds_per_row: float = 16 / 25,
    strength: float = 1.5,
    seed: int = 0,
    class_names: list[str] | None = None,
) -> dict:
    """Write DATA_DIR/features/*.npy + annotations.json with 1-3 planted actions per video.

    Background rows are Gaussian noise around a per-video context vector; action rows add a class
    prototype of norm ``strength * sqrt(D)``-ish. Returns the annotation database.
    """
    rng = np.random.default_rng(seed)
    layout = DataLayout(Path(data_dir))
    names = class_names or [f"action_{c}" for c in range(num_classes)]
    prototypes = rng.normal(0, 1, (num_classes, feature_dim)) * strength
    database = {}
    for index in range(n_train + n_test):
        subset = "train" if index < n_train else "test"
        vid = f"{subset}_{index:04d}"
        length = int(rng.integers(*rows))
        context = rng.normal(0, 0.3, feature_dim)
        features = rng.normal(0, 1, (length, feature_dim)) + context
        annotations = []
        labels = rng.choice(num_classes, size=int(rng.integers(1, 3)), replace=False)
        cursor = int(rng.integers(3, 10))
        for _ in range(int(rng.integers(1, 4))):
            c = int(rng.choice(labels))
            span = int(rng.integers(6, 18))
            if cursor + span + 3 >= length:
                break
            features[cursor : cursor + span] += prototypes[c]
            annotations.append(
                {
                    "label": names[c],
                    "segment": [round(cursor * seconds_per_row, 3), round((cursor + span) * seconds_per_row, 3)],
                }
            )
            cursor += span + int(rng.integers(5, 20))
        if not annotations:  # a video too short for its first plan still gets one action
            c = int(labels[0])
            features[2:8] += prototypes[c]
            annotations.append(
                {"label": names[c], "segment": [round(2 * seconds_per_row, 3), round(8 * seconds_per_row, 3)]}
            )
        atomic_save_npy(layout.features(vid), features.astype(np.float32))
        atomic_write_json(
            layout.provenance(vid),
            {"seconds_per_row": seconds_per_row, "shape": list(features.shape), "synthetic": True},
        )
        database[vid] = {"subset": subset, "duration": round(length * seconds_per_row, 3), "annotations": annotations}
    atomic_write_json(layout.annotations, {"database": database})
    return database
