"""UM and BaS-Net trained by their authors' code (Pilhyeon/WTAL-Uncertainty-Modeling, Pilhyeon/BaSNet-pytorch): the
two repositories share their data layout and the shape of their ``main.py`` loop.

What runs is theirs: ``ThumosFeature`` (sampling), ``Model`` / ``BaS_Net``, ``UM_loss`` / ``BaS_Net_loss`` and
``train``; the driver does what their ``main.py`` does around them (the seed, the two loaders built in its
order - each constructor reseeds -, Adam with their betas and weight decay, the step loop, a new iterator per
epoch as UM does or the one BaS-Net keeps) except testing on the test set at every step to keep the best one:
the final step's weights are saved (the parity protocol compares final steps). Patches: the hidden width 2048
in ``model.py`` (a CPU run), nothing else; ``.cuda()`` is a no-op; loaders run in the main process
(``num_workers=0``: with workers, their ``worker_init_fn = np.random.seed(seed)`` is None and every worker
draws the same rows).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from authors import Patch, authors_modules, stub, working_copy

from wtal_pipe.layout import DataLayout, inside

#: how each repository names its pieces, and its defaults (options.py) that the parity runs keep
MODULES = {
    "um": {"model": "Model", "loss": "UM_loss", "file": "model_seed_{seed}.pkl"},
    "basnet": {"model": "BaS_Net", "loss": "BaS_Net_loss", "file": "BaS_Net_model_seed_{seed}.pkl"},
}
NUM_SEGMENTS, BATCH_SIZE, FEATURE_FPS = 750, 16, 25  # config.py / options.py


def patches(method: str, hidden: int) -> list[Patch]:
    """The hidden width 2048 of ``model.py``, narrowed to ``hidden`` (each occurrence spelled out)."""
    texts = {
        "um": ("out_channels=2048, kernel_size=3", "in_channels=2048, out_channels=num_classes"),
        "basnet": (
            "in_channels=self.len_feature, out_channels=2048",
            "in_channels=2048, out_channels=2048",
            "in_channels=2048, out_channels=num_classes + 1",
        ),
    }[method]
    return [("model.py", text, text.replace("2048", str(hidden))) for text in texts]


def write_layout(data: Path, out: Path) -> int:
    """DATA_DIR (wtal's layout, THUMOS14 class names) in theirs: ``features/{train,test}/{rgb,flow}/<vid>.npy``
    (each row's first and second halves), ``split_{train,test}.txt`` and ``gt.json``; returns the row width."""
    layout = DataLayout(data)
    source = layout.annotations
    database = json.loads(source.read_text())["database"]
    width = 0
    for subset in ("train", "test"):
        vids = sorted(vid for vid, video in database.items() if video.get("subset") == subset)
        for vid in vids:
            rows = np.load(layout.features(vid, source))
            width, half = rows.shape[1], rows.shape[1] // 2
            for stream, part in (("rgb", rows[:, :half]), ("flow", rows[:, half:])):
                folder = out / "features" / subset / stream
                folder.mkdir(parents=True, exist_ok=True)
                np.save(inside(folder, vid, ".npy", source=source), np.ascontiguousarray(part))
        (out / f"split_{subset}.txt").write_text("".join(f"{vid}\n" for vid in vids))
    (out / "gt.json").write_text(json.dumps({"database": database}))
    return width


def train_official(
    method: str, checkout: Path, layout: Path, width: int, out: Path, *, seed: int, iterations: int, lr: float,
    hidden: int, margin: float | None = None,
) -> Path:  # fmt: skip
    """Their training loop for ``iterations`` steps from ``seed``; returns the state dict file their main.py
    would write (the final step's weights)."""
    copy = working_copy(checkout, method, patches(method, hidden))
    logger = type("Logger", (), {"__init__": lambda self, *a: None, "log_value": lambda self, *a, **k: None})
    with authors_modules(copy, stubs={"tensorboard_logger": stub("tensorboard_logger", Logger=logger)}) as code:
        utils, features, model_module = code.load("utils"), code.load("thumos_features"), code.load("model")
        train_module = code.load("train")
        utils.set_seed(seed)  # main.py's order: the seed, the network, then the loaders (each reseeds)
        names = MODULES[method]
        if method == "um":
            net = getattr(model_module, names["model"])(width, 20, 9, 4)  # options.py: r_act 9, r_bkg 4
            criterion = getattr(train_module, names["loss"])(0.0005, 1.0, margin if margin is not None else 100)
        else:
            net = getattr(model_module, names["model"])(width, 20, NUM_SEGMENTS)
            criterion = getattr(train_module, names["loss"])(0.0001)
        extra = {"len_feature": width} if method == "basnet" else {"supervision": "weak"}
        loaders = [
            torch.utils.data.DataLoader(
                features.ThumosFeature(
                    data_path=str(layout), mode=mode, modal="all", feature_fps=FEATURE_FPS, num_segments=NUM_SEGMENTS,
                    seed=seed, sampling=sampling, **extra,
                ),
                batch_size=BATCH_SIZE if mode == "train" else 1, shuffle=mode == "train", num_workers=0,
            )
            for mode, sampling in (("train", "random"), ("test", "uniform"))
        ]  # fmt: skip
        train_loader = loaders[0]
        optimizer = torch.optim.Adam(net.parameters(), lr=lr, betas=(0.9, 0.999), weight_decay=0.0005)
        log = logger()
        loader_iter = iter(train_loader)
        for step in range(1, iterations + 1):
            if method == "um":
                if (step - 1) % len(train_loader) == 0:
                    loader_iter = iter(train_loader)
                train_module.train(net, loader_iter, optimizer, criterion, log, step)
            else:
                train_module.train(net, train_loader, loader_iter, optimizer, criterion, log, step)
        out.mkdir(parents=True, exist_ok=True)
        path = out / names["file"].format(seed=seed)
        torch.save(net.state_dict(), path)
    return path


def train_for_parity(
    method: str, checkout: Path, data: Path, out: Path, seed: int, settings: dict[str, Any]
) -> list[Path]:
    """One parity run: ``settings`` are wtal's (hidden_dim, iterations, lr); UM's margin 100 scaled by
    sqrt(hidden / 2048) as wtal scales it."""
    layout = out / "layout"
    if not (layout / "gt.json").exists():
        write_layout(data, layout)
    width = int(np.load(next((layout / "features" / "train" / "rgb").glob("*.npy"))).shape[1]) * 2
    hidden = settings["hidden_dim"]
    margin = 100 * math.sqrt(hidden / 2048) if method == "um" else None
    path = train_official(
        method, checkout, layout, width, out, seed=seed, iterations=settings["iterations"], lr=settings["lr"],
        hidden=hidden, margin=margin,
    )  # fmt: skip
    return [path]
