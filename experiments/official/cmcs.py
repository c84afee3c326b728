"""CMCS trained by its authors' code (Finspire13/CMCS-Temporal-Action-Localization): their ``train.py`` run as a
script (its training loop lives under ``__main__``), with their ``utils.get_dataset``, ``SingleVideoDataset`` and
``BackboneNet``, from a config written as their ``configs/thumos-I3D.json`` with the parity settings.

The data is written in their layout: ``<vid>-rgb.npz`` / ``<vid>-flow.npz`` (``feature``: (1, T, D / 2), each
row's halves; ``frame_cnt``) for the training videos, read as their THUMOS14 "val" subset. Our rows are already
16 frames apart, so ``sample_rate`` and ``base_sample_rate`` are both 16 (their temporal augmentation then keeps
the one sequence). The THUMOS-shaped data has no static frames, so the hard-negative folder is empty on both
sides: their network keeps its background class (``with_bg``), as ours does, and no background video trains it.

Patches, each for a run without MATLAB, CUDA or TensorBoard: ``train.py``'s and ``test.py``'s module-level
``device`` is the CPU; ``utils.py``'s ActivityNet class maps (pickled ``misc/*.npy``, never loaded here) become
empty; its THUMOS14 meta reader (a MATLAB ``.mat`` and per-class text files) is replaced by one reading DATA_DIR's
annotations, the rest of ``get_dataset`` runs as written; the third model (``both``, early fusion) is not trained -
late fusion averages the ``rgb`` and ``flow`` models, as their published I3D numbers do. MATLAB's recognition and
detection mAP (logged once at step 0 on the training set; ``detect.py``'s summary) are stubbed to 0. Their script
seeds nothing; the driver seeds ``random``, NumPy and torch with the run's seed before it starts.
"""

from __future__ import annotations

import json
import random
import runpy
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch
from authors import Patch, authors_modules, run_as_script, stub, working_copy

from wtal_pipe.layout import DataLayout, inside

#: configs/thumos-I3D.json: BackboneNet's layers and dropout, the diversity weight and the weight decay
MODEL = {
    "dropout_rate": 0.5, "cls_branch_num": 4, "base_layer_params": [[32, 1]], "cls_layer_params": [[16, 3]],
    "att_layer_params": [[16, 1]],
}  # fmt: skip
DIVERSITY_WEIGHT, WEIGHT_DECAY = 0.2, 1e-3
ROWS_APART = 16  # frames between feature rows: sample_rate and base_sample_rate of their config
NAMING = "parity"
MAPS = ("old_cls_names", "old_cls_indices", "new_cls_names", "new_cls_indices")
ANET_MAPS = [f"np.load('misc/{kind}_anet{version}.npy').item()" for kind in MAPS for version in ("12", "13")]
PATCHES: list[Patch] = [("utils.py", text, "{}") for text in ANET_MAPS] + [
    ("train.py", "device = torch.device('cuda')", "device = torch.device('cpu')"),
    ("test.py", "device = torch.device('cuda')", "device = torch.device('cpu')"),
    (
        "train.py",
        "        train(train_train_loader, train_test_loader, test_test_loader, 'both',\n              naming)\n",
        "",
    ),
]


def write_features(out: Path, vid: str, rows: np.ndarray, frame_cnt: int, source: Path | None = None) -> None:
    """One video's rows as their ``rgb/<vid>-rgb.npz`` and ``flow/<vid>-flow.npz`` under ``out`` (``feature``:
    (1, T, D / 2), each row's halves; ``frame_cnt``); ``vid`` may not leave ``out`` (``source`` names its file)."""
    half = rows.shape[1] // 2
    for stream, part in (("rgb", rows[:, :half]), ("flow", rows[:, half:])):
        (out / stream).mkdir(parents=True, exist_ok=True)
        path = inside(out / stream, f"{vid}-{stream}", ".npz", source=source)
        np.savez(path, feature=part[None], frame_cnt=np.int64(frame_cnt))


def write_layout(data: Path, out: Path) -> None:
    """The training videos of DATA_DIR as their feature files under ``out``, and ``meta.json``: per video, what
    their THUMOS14 meta reader would return (duration, frame rate, labels, annotations by class)."""
    layout = DataLayout(data)
    source = layout.annotations
    database = json.loads(source.read_text())["database"]
    classes = sorted({a["label"] for v in database.values() for a in v["annotations"]})
    meta: dict[str, dict[str, Any]] = {}
    for vid, video in sorted(database.items()):
        if video.get("subset") != "train":
            continue
        rows = np.load(layout.features(vid, source)).astype(np.float32)
        write_features(out, vid, rows, len(rows) * ROWS_APART, source)
        entry: dict[str, Any] = {"duration": video["duration"], "frame_rate": 25.0, "labels": [], "annotations": {}}
        for annotation in video["annotations"]:
            label = classes.index(annotation["label"])  # their thumos14 indices: the class names sorted
            if label not in entry["labels"]:
                entry["labels"].append(label)
                entry["annotations"][label] = []
            entry["annotations"][label].append(list(annotation["segment"]))
        meta[vid] = entry
    (out / "meta.json").write_text(json.dumps(meta))
    (out / "no_static").mkdir(exist_ok=True)


def config(shipped: Path, subset: str, folder: Path, half: int, steps: int, lr: float) -> dict[str, Any]:
    """Their ``configs/thumos-I3D.json`` with the parity settings and ``subset``'s feature folders under ``folder``
    (its empty ``no_static`` the hard-negative folder); nothing else changed."""
    settings = json.loads(shipped.read_text())
    settings.update(
        experiment_naming=NAMING, sample_rate=ROWS_APART, train_run_num=1, feature_dim=half, learning_rate=lr,
        max_step_num=steps, check_points=[steps], log_freq=steps + 1,
    )  # fmt: skip
    settings["base_sample_rate"]["thumos14"]["i3d"] = ROWS_APART
    streams = {"rgb": str(folder / "rgb"), "flow": str(folder / "flow")}
    settings["file_paths"]["thumos14"][subset].update(
        bg_mask_dir=str(folder / "no_static"), feature_dir={"i3d-oversample": streams, "i3d-resize": streams}
    )
    return settings


def authors_stubs() -> dict[str, types.ModuleType]:
    """MATLAB (its evaluation kit scores 0), torchvision (imported, unused) and the TensorBoard logger."""
    engine = type("Engine", (), {"addpath": lambda self, path: None, "TH14evalRecog_clspr": lambda self, *a: 0.0,
                                 "TH14evalDet": lambda self, *a: [0.0]})  # fmt: skip
    matlab = stub("matlab", double=list, engine=stub("matlab.engine", start_matlab=engine))
    vision = stub("torchvision", models=stub("torchvision.models"))
    logger = type("Logger", (), {"__init__": lambda self, *a: None, "scalar_summary": lambda self, *a: None})
    return {"matlab": matlab, "matlab.engine": matlab.engine, "torchvision": vision,
            "torchvision.models": vision.models, "logger": stub("logger", Logger=logger)}  # fmt: skip


def run_script(
    copy: Path,
    script: str,
    arguments: list[str],
    folder: Path,
    meta: dict[str, dict[str, Any]],
    seed: int | None = None,
) -> dict[str, Any]:
    """Their ``script`` run as ``__main__`` in ``folder`` with ``arguments``, its THUMOS14 meta reader returning
    ``meta`` (as written by ``write_layout``), after seeding ``random``, NumPy and torch when ``seed`` is given;
    returns the script's globals."""
    with authors_modules(copy, stubs=authors_stubs()) as code:
        utils = code.load("utils")
        utils.__dict__["__get_thumos14_meta"] = lambda meta_file, anno_dir: {
            vid: {**entry, "annotations": {int(k): v for k, v in entry["annotations"].items()}}
            for vid, entry in meta.items()
        }
        if seed is not None:
            random.seed(seed)
            np.random.seed(seed)
            torch.manual_seed(seed)
        with run_as_script(folder, [script, *arguments]):
            return runpy.run_path(str(copy / script), run_name="__main__")


def train_official(checkout: Path, layout: Path, out: Path, *, seed: int, steps: int, lr: float) -> list[Path]:
    """Their ``train.py`` for ``steps`` steps; returns the ``rgb`` and ``flow`` state dicts it saves."""
    half = np.load(next((layout / "rgb").glob("*.npz")))["feature"].shape[2]
    copy = working_copy(checkout, "cmcs", PATCHES)
    settings = config(copy / "configs" / "thumos-I3D.json", "val", layout, half, steps, lr)
    (copy / "parity.json").write_text(json.dumps(settings))
    arguments = ["--config-file", str(copy / "parity.json"), "--train-subset-name", "val", "--test-subset-name",
                 "test", "--no-test-log"]  # fmt: skip
    run = out / f"seed_{seed}"
    run_script(copy, "train.py", arguments, run, json.loads((layout / "meta.json").read_text()), seed)
    saved = run / "models" / f"{NAMING}-run-0"
    return [saved / f"model-{stream}-{steps}" for stream in ("rgb", "flow")]


def train_for_parity(
    method: str, checkout: Path, data: Path, out: Path, seed: int, settings: dict[str, Any]
) -> list[Path]:
    """One parity run with wtal's ``settings`` (iterations, lr) on DATA_DIR: the rgb and flow models."""
    layout = out / "layout"
    if not (layout / "meta.json").exists():
        write_layout(data, layout)
    return train_official(checkout, layout, out, seed=seed, steps=settings["iterations"], lr=settings["lr"])
