"""BackTAL trained by its authors' code (VividLe/BackTAL): their ``BackTALDataset``, ``Network``, ``BackTALLoss`` and
``core.train_eval.train`` (one epoch), driven as their ``tools/train.py`` drives them.

The driver does what ``tools/train.py`` does around those (their THUMOS14.yaml, then ``fix_random_seed``, the
loader, the network, Adam with their betas and weight decay, one ``train`` call per epoch) except evaluating on
the test set after every epoch to keep the best one: the final epoch's weights are saved, as
``save_best_model`` saves them. The repository ships features already interpolated to 750 rows and no code for
it; the driver writes them as the README of this tool states BackTAL's input (``F.interpolate``, linear,
``align_corners=False``; a click at t seconds marks row ``min(749, int(t / duration * 750))``, other rows -100).
Patches: the hidden width 2048 in ``lib/models/network.py``; ``.cuda()`` is a no-op; the loader runs in the
main process (their dataset draws nothing at random, so this changes no number).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from authors import Patch, authors_modules, working_copy

from wtal_pipe.layout import DataLayout, inside

NUM_SEGMENTS = 750
#: lib/models/network.py's hidden width, each occurrence
WIDTH_TEXTS = (
    "FEAT_DIM, out_channels=2048, kernel_size=3",
    "self.conv_1_att = AttentionConv1d(kernel_size=3, out_channels=2048)",
    "in_channels=2048, out_channels=2048, kernel_size=3",
    "self.conv_2_att = AttentionConv1d(kernel_size=3, out_channels=2048)",
    "in_channels=2048, out_channels=cfg.DATASET.CLS_NUM + 1",
)


def patches(hidden: int) -> list[Patch]:
    return [("lib/models/network.py", text, text.replace("2048", str(hidden))) for text in WIDTH_TEXTS]


def write_layout(data: Path, out: Path, classes: list[str]) -> int:
    """The training videos of DATA_DIR as their ``<split>/<vid>.npz`` (``feat_spa`` and ``feat_tem``: each row's
    halves, (D / 2, 750); ``cls_label``; ``point_label``: 20 on clicked rows, -100 elsewhere); returns D."""
    layout = DataLayout(data)
    source = layout.annotations
    database = json.loads(source.read_text())["database"]
    clicks = json.loads(layout.clicks().read_text())
    folder = out / "val"
    folder.mkdir(parents=True, exist_ok=True)
    width = 0
    for vid, video in sorted(database.items()):
        if video.get("subset") != "train":
            continue
        rows = torch.from_numpy(np.load(layout.features(vid, source))).T[None]  # (1, D, T)
        feature = F.interpolate(rows, size=NUM_SEGMENTS, mode="linear", align_corners=False)[0].numpy()
        width, half = feature.shape[0], feature.shape[0] // 2
        label = np.zeros(len(classes), np.float32)
        for annotation in video["annotations"]:
            label[classes.index(annotation["label"])] = 1
        point = np.full(NUM_SEGMENTS, -100, np.int64)
        seconds = np.asarray(clicks.get(vid, []), np.float64)
        point[np.minimum(NUM_SEGMENTS - 1, (seconds / video["duration"] * NUM_SEGMENTS).astype(np.int64))] = len(
            classes
        )
        np.savez(
            inside(folder, vid, ".npz", source=source), feat_spa=feature[:half], feat_tem=feature[half:],
            cls_label=label, point_label=point, vid_name=vid,
        )  # fmt: skip
    return width


def train_official(
    checkout: Path, layout: Path, width: int, out: Path, *, seed: int, epochs: int, lr: float, hidden: int
) -> Path:
    copy = working_copy(checkout, "backtal", patches(hidden))
    with authors_modules(copy, "lib") as code:
        default, dataset = code.load("config.default"), code.load("dataset.dataset")
        network, train_eval, loss, utils = (
            code.load(m) for m in ("models.network", "core.train_eval", "criterion.loss", "utils.utils")
        )
        default.update_config(str(copy / "experiments" / "THUMOS14.yaml"))
        cfg = default.config
        cfg.BASIC.ROOT_DIR, cfg.DATASET.DATA_DIR, cfg.BASIC.SEED = str(copy), str(layout), seed
        cfg.NETWORK.FEAT_DIM, cfg.TRAIN.LR, cfg.TRAIN.EPOCH_NUM = width, lr, epochs
        utils.fix_random_seed(cfg.BASIC.SEED)  # prepare_env's first step; the rest makes folders
        train_set = dataset.BackTALDataset(cfg, cfg.DATASET.TRAIN_SPLIT)
        loader = torch.utils.data.DataLoader(train_set, batch_size=cfg.TRAIN.BATCH_SIZE, shuffle=True, num_workers=0)
        model = network.Network(cfg)
        optimizer = torch.optim.Adam(
            model.parameters(), lr=cfg.TRAIN.LR, betas=cfg.TRAIN.BETAS, weight_decay=cfg.TRAIN.WEIGHT_DECAY
        )
        criterion = loss.BackTALLoss(cfg)
        for _ in range(cfg.TRAIN.EPOCH_NUM):
            train_eval.train(cfg, loader, model, optimizer, criterion)
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"THUMOS14_seed_{seed}.pth"
        torch.save({"epoch": cfg.TRAIN.EPOCH_NUM, "state_dict": model.state_dict()}, path)
    return path


def train_for_parity(
    method: str, checkout: Path, data: Path, out: Path, seed: int, settings: dict[str, Any]
) -> list[Path]:
    """One parity run with wtal's ``settings`` (hidden_dim, epochs, lr) on DATA_DIR with its clicks.json."""
    layout = out / "layout"
    classes = sorted({a["label"] for v in json.loads((data / "annotations.json").read_text())["database"].values()
                      for a in v["annotations"]})  # fmt: skip
    if not (layout / "val").is_dir():
        write_layout(data, layout, classes)
    width = sum(np.load(next((layout / "val").glob("*.npz")))[k].shape[0] for k in ("feat_spa", "feat_tem"))
    path = train_official(
        checkout, layout, width, out, seed=seed, epochs=settings["epochs"], lr=settings["lr"],
        hidden=settings["hidden_dim"],
    )  # fmt: skip
    return [path]
