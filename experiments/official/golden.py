"""The authors' side of ``tests/fixtures/official_parity.json``: per method, their loss on a fixed batch and what
their test code reports for two held-out videos (300 and 1200 rows), all at the official widths (D = 32 features,
20 classes), from the inputs ``tests/test_parity.py`` names (seeded official-layout weights, planted features,
torch seed 7 before the train-mode forward).

What runs is theirs: UM's and BaS-Net's ``model``, loss and ``test.test`` (their ``ThumosFeature`` test loader,
their ``options``/``Config``), BackTAL's ``Network``, ``BackTALLoss`` and ``core.train_eval.evaluate``, CMCS's
``BackboneNet`` and loss functions, then its ``test.py`` (CAS files) and ``detect.py`` run as scripts. Stubbed:
the ActivityNet evaluators their test functions call after writing detections (scores unused here), MATLAB,
TensorBoard and tqdm. Their outputs are kept as they write them: detections in their order, as (class index,
score to 7 decimals, start and end in seconds to 6 decimals); video scores as floats.
"""

from __future__ import annotations

import collections
import json
import types
from pathlib import Path
from typing import Any

import case
import cmcs
import numpy as np
import torch
import torch.nn.functional as F
from authors import OFFICIAL, authors_modules, run_as_script, stub, working_copy

from tests import official
from tests.test_parity import (
    CASE_TABLE_SEED,
    CMCS_TRAIN_LABEL,
    CMCS_TRAIN_ROWS,
    CMCS_TRAIN_WEIGHT,
    TEST_FEATURES,
    TORCH_SEED,
    TRAIN_FEATURES,
    WEIGHT_SEEDS,
    C,
    D,
)

PROVENANCE = (
    "Numbers the authors' code computed on the inputs tests/test_parity.py names (weights seeded_state(layout(method, "
    "32, 20)), features planted_features), written by experiments/official/fixtures.py (golden.py) from clones of "
    + ", ".join(f"{official_code.repository} @ {official_code.commit}" for official_code in OFFICIAL.values())
    + ", run on CPU; train-mode losses after torch.manual_seed(7)."
)
TRAIN_LABELS = [[3], [5, 11]]  # the train batch's labels (CMCS: the second video's copy for label 5)
TEST_ROWS = [300, 1200]
BACKTAL_CLICKS = [[10, 400, 401, 700], [120]]  # clicked rows of the train batch
BACKTAL_FPS, CMCS_FPS, ROW_SECONDS = 30, 25.0, 0.64  # BackTAL: 19.2 frames a row; CMCS: 16, plus 5 at the end
#: their loss terms (key, weight) -> ours, the weights being their defaults (options.py, THUMOS14.yaml)
TERMS: dict[str, dict[str, tuple[str, float]]] = {
    "um": {"cls": ("loss_cls", 1.0), "background": ("loss_be", 1.0), "uncertainty": ("loss_um", 0.0005)},
    "basnet": {"base": ("loss_base", 1.0), "supp": ("loss_supp", 1.0), "filter_l1": ("loss_norm", 0.0001)},
    "backtal": {"base": ("loss_base", 1.0), "supp": ("loss_supp", 1.0), "filter_l1": ("loss_norm", 0.0001)},
}


def _detection(class_index: int, score: float, start: float, end: float) -> list[float]:
    return [class_index, round(float(score), 7), round(float(start), 6), round(float(end), 6)]


def _train_batch() -> torch.Tensor:
    return torch.from_numpy(np.stack([official.planted_features(TRAIN_FEATURES + b, 750, D, C) for b in range(2)]))


def _test_video(i: int) -> np.ndarray:
    return official.planted_features(TEST_FEATURES + i, TEST_ROWS[i], D, C)


def _multi_hot(labels: list[list[int]]) -> torch.Tensor:
    target = torch.zeros(len(labels), C)
    for b, classes in enumerate(labels):
        target[b, classes] = 1
    return target


def _entry(loss: dict[str, float], videos: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"dim": D, "classes": C, "train_labels": TRAIN_LABELS, "test_rows": TEST_ROWS, **extra, "loss": loss,
            "videos": videos}  # fmt: skip


def pilhyeon(method: str, checkout: Path, scratch: Path) -> dict[str, Any]:
    """UM or BaS-Net: their loss on the train batch, then their ``test.test`` over the two videos written in
    their layout (``features/test/{rgb,flow}``, ``split_test.txt``, ``gt.json``)."""
    data = scratch / "data"
    vids = [f"video_test_{i}" for i in range(len(TEST_ROWS))]
    for i, vid in enumerate(vids):
        rows = _test_video(i)
        for stream, part in (("rgb", rows[:, : D // 2]), ("flow", rows[:, D // 2 :])):
            (data / "features" / "test" / stream).mkdir(parents=True, exist_ok=True)
            np.save(data / "features" / "test" / stream / f"{vid}.npy", part)
    (data / "split_test.txt").write_text("".join(f"{vid}\n" for vid in vids))
    database = {vid: {"subset": "test", "duration": rows * ROW_SECONDS, "annotations": []}
                for vid, rows in zip(vids, TEST_ROWS, strict=True)}  # fmt: skip
    (data / "gt.json").write_text(json.dumps({"database": database}))
    evaluator = type("ANETdetection", (), {"__init__": lambda self, *a, **k: None,
                                           "evaluate": lambda self: (np.zeros(10), 0.0)})  # fmt: skip
    stubs = {"tensorboard_logger": stub("tensorboard_logger"), "tqdm": stub("tqdm", tqdm=lambda x, *a, **k: x),
             "eval": stub("eval"),
             "eval.eval_detection": stub("eval.eval_detection", ANETdetection=evaluator)}  # fmt: skip
    copy = working_copy(checkout, method, [])
    with authors_modules(copy, stubs=stubs) as code:
        model_module, train_module, test_module = code.load("model"), code.load("train"), code.load("test")
        features, config, options = code.load("thumos_features"), code.load("config"), code.load("options")
        if method == "um":
            net = model_module.Model(D, C, 9, 4)  # options.py: r_act 9, r_bkg 4
            criterion = train_module.UM_loss(0.0005, 1.0, 100)
        else:
            net = model_module.BaS_Net(D, C, 750)
            criterion = train_module.BaS_Net_loss(0.0001)
        net.load_state_dict(official.seeded_state(official.layout(method, D, C), WEIGHT_SEEDS[method], C))
        torch.manual_seed(TORCH_SEED)
        out = net.train()(_train_batch())
        inputs = (out[0], out[1], out[2], out[3]) if method == "um" else (out[0], out[2], out[4])
        _, terms = criterion(*inputs, _multi_hot(TRAIN_LABELS))
        loss = {name: weight * terms[key].item() for name, (key, weight) in TERMS[method].items()}
        paths = {f"--{kind}_path": str(scratch / kind) for kind in ("model", "output", "log")}
        with run_as_script(scratch, ["main.py", "--data_path", str(data), *sum(paths.items(), ())]):
            settings = config.Config(options.parse_args())
        extra = {"len_feature": D} if method == "basnet" else {"supervision": "weak"}
        dataset = features.ThumosFeature(data_path=str(data), mode="test", modal="all", feature_fps=25,
                                         num_segments=750, sampling="uniform", **extra)  # fmt: skip
        scores = []
        with torch.no_grad():
            for i in range(len(vids)):
                out = net.eval()(torch.as_tensor(dataset[i][0])[None])
                scores.append((out[0][0] if method == "um" else out[2][0, :-1]).tolist())
        loader = torch.utils.data.DataLoader(dataset, batch_size=1, shuffle=False, num_workers=0)
        logger = types.SimpleNamespace(log_value=lambda *a: None)
        test_module.test(net, settings, logger, loader, collections.defaultdict(list), 0)
        written = json.loads(next((scratch / "output").glob("*.json")).read_text())["results"]
        index = {name: k for k, name in config.class_dict.items()}
    videos = [
        {"rows": rows, "video_scores": scores[i],
         "detections": [_detection(index[d["label"]], d["score"], *d["segment"]) for d in written[vids[i]]]}
        for i, rows in enumerate(TEST_ROWS)
    ]  # fmt: skip
    return _entry(loss, videos)


def backtal(checkout: Path, scratch: Path) -> dict[str, Any]:
    """BackTAL: their loss on the train batch with its clicks, then their ``evaluate`` over the two videos (rows
    interpolated to 750 as their data ships them)."""
    copy = working_copy(checkout, "backtal", [])
    with authors_modules(copy, "lib") as code:
        default, network, train_eval, loss_module = (
            code.load(m) for m in ("config.default", "models.network", "core.train_eval", "criterion.loss")
        )
        default.update_config(str(copy / "experiments" / "THUMOS14.yaml"))
        cfg = default.config
        cfg.BASIC.ROOT_DIR, cfg.NETWORK.FEAT_DIM, cfg.TEST.RESULT_DIR = str(copy), D, str(scratch)
        net = network.Network(cfg)
        net.load_state_dict(official.seeded_state(official.layout("backtal", D, C), WEIGHT_SEEDS["backtal"], C))
        clicks = torch.full((len(BACKTAL_CLICKS), 750), -100, dtype=torch.long)
        for b, rows in enumerate(BACKTAL_CLICKS):
            clicks[b, rows] = C
        torch.manual_seed(TORCH_SEED)
        out = net.train()(_train_batch().transpose(1, 2), is_train=True)
        total, terms = loss_module.BackTALLoss(cfg)(cfg, *out, _multi_hot(TRAIN_LABELS), clicks, [""] * len(clicks))
        loss = {name: weight * terms[key].item() for name, (key, weight) in TERMS["backtal"].items()}
        loss["total"] = total.item()
        loader, scores, timing = [], [], []
        for i, rows in enumerate(TEST_ROWS):
            frame_num = rows * BACKTAL_FPS * 16 // 25
            duration = frame_num / BACKTAL_FPS
            feature = F.interpolate(
                torch.from_numpy(_test_video(i)).T[None], size=750, mode="linear", align_corners=False
            )
            with torch.no_grad():
                scores.append(net.eval()(feature, is_train=False)[0][0, :-1].tolist())
            loader.append((feature[:, : D // 2], feature[:, D // 2 :], [f"v{i}"], torch.tensor(frame_num),
                           torch.tensor(float(BACKTAL_FPS)), torch.zeros(1, C), torch.tensor(duration)))  # fmt: skip
            timing.append((frame_num, duration))
        written = json.loads(Path(train_eval.evaluate(cfg, loader, net, 0)).read_text())["results"]
        activities = json.loads((copy / cfg.DATASET.GT_FILE).read_text())["activity_list"]
    videos = [
        {"rows": rows, "frame_num": timing[i][0], "duration": timing[i][1], "video_scores": scores[i],
         "detections": [_detection(activities.index(d["label"]), d["score"], *d["segment"]) for d in written[f"v{i}"]]}
        for i, rows in enumerate(TEST_ROWS)
    ]  # fmt: skip
    return _entry(loss, videos, clicks=BACKTAL_CLICKS)


def entry(method: str, checkout: Path, scratch: Path) -> dict[str, Any]:
    """``method``'s entry of official_parity.json from the authors' code in ``checkout``."""
    if method == "backtal":
        return backtal(checkout, scratch)
    if method == "cmcs":
        return cmcs_entry(checkout, scratch)
    if method == "case":
        return case_entry(checkout, scratch)
    return pilhyeon(method, checkout, scratch)


def cmcs_entry(checkout: Path, scratch: Path) -> dict[str, Any]:
    """CMCS (late fusion): their loss terms for one video through the rgb and flow networks, summed over the two;
    then their ``test.py`` writes each video's CAS file and ``detect.py`` detects on the late-fusion ones."""
    states = [official.seeded_state(official.layout("cmcs", D // 2, C), WEIGHT_SEEDS["cmcs"] + s, C) for s in (0, 1)]
    copy = working_copy(checkout, "cmcs", cmcs.PATCHES)
    with authors_modules(copy, stubs=cmcs.authors_stubs()) as code:
        model_module, train_module = code.load("model"), code.load("train")
        nets = [model_module.BackboneNet(in_features=D // 2, class_num=C + 1, **cmcs.MODEL) for _ in states]
        for net, state in zip(nets, states, strict=True):
            net.load_state_dict(state)
        x = torch.from_numpy(official.planted_features(TRAIN_FEATURES, CMCS_TRAIN_ROWS, D, C))[None].transpose(1, 2)
        label, weight, diversity = torch.tensor([CMCS_TRAIN_LABEL]), CMCS_TRAIN_WEIGHT, cmcs.DIVERSITY_WEIGHT
        torch.manual_seed(TORCH_SEED)
        outputs = [net.train()(part) for net, part in zip(nets, x.split(D // 2, dim=1), strict=True)]
        criterion = torch.nn.CrossEntropyLoss(reduction="mean")  # their 'elementwise_mean', its old name
        raw = [
            {
                "cls": criterion(logits, label).item(),
                "diversity": train_module.get_diversity_loss(branches).item(),
                "norm": train_module.get_norm_regularization(branches).item(),
            }
            for _, _, logits, branches, _ in outputs
        ]
        scale = {"cls": weight, "diversity": weight * diversity, "norm": weight * diversity}
        loss = {name: sum(scale[name] * terms[name] for terms in raw) for name in scale}  # the two networks' sum
    vids = [f"video_test_{i}" for i in range(len(TEST_ROWS))]
    frame_counts = [rows * cmcs.ROWS_APART + 5 for rows in TEST_ROWS]
    meta: dict[str, dict[str, Any]] = {}
    for i, (vid, frame_cnt) in enumerate(zip(vids, frame_counts, strict=True)):
        cmcs.write_features(scratch / "data", vid, _test_video(i), frame_cnt)
        meta[vid] = {"duration": frame_cnt / CMCS_FPS, "frame_rate": CMCS_FPS, "labels": [], "annotations": {}}
    (scratch / "data" / "no_static").mkdir()
    settings = cmcs.config(copy / "configs" / "thumos-I3D.json", "test", scratch / "data", D // 2, 1, 0.0)
    (copy / "golden.json").write_text(json.dumps(settings))
    models = scratch / "run" / "models" / f"{cmcs.NAMING}-run-0"
    models.mkdir(parents=True)
    both = official.seeded_state(official.layout("cmcs", D, C), WEIGHT_SEEDS["cmcs"] + 2, C)  # test.py loads it too
    for stream, state in zip(("rgb", "flow", "both"), (*states, both), strict=True):
        torch.save(state, models / f"model-{stream}-1")
    arguments = ["--config-file", str(copy / "golden.json"), "--train-subset-name", "val", "--test-subset-name",
                 "test", "--no-include-train"]  # fmt: skip
    cmcs.run_script(copy, "test.py", arguments, scratch / "run", meta)
    script = cmcs.run_script(copy, "detect.py", arguments, scratch / "run", meta)
    detected = script["test_outs"]  # its last modality: late fusion
    utils = script["get_dataset"].__globals__  # their class maps: detect.py writes THUMOS14's old class ids
    old_names, index = utils["thumos14_old_cls_names"], utils["new_cls_indices"]["thumos14"]
    videos = []
    for i, vid in enumerate(vids):
        cas = np.load(scratch / "run" / "cas-features" / f"{cmcs.NAMING}-run-0-1-late-fusion" / f"{vid}.npz")
        video_scores = F.softmax(torch.from_numpy(cas["global_score"]), dim=0)[:C].tolist()
        found = [_detection(index[old_names[int(d[3])]], d[4], d[1], d[2]) for d in detected if d[0] == vid]
        videos.append({"rows": TEST_ROWS[i], "frame_cnt": frame_counts[i], "fps": CMCS_FPS,
                       "video_scores": video_scores, "detections": found})  # fmt: skip
    return _entry(loss, videos)


def case_entry(checkout: Path, scratch: Path) -> dict[str, Any]:
    """CASE: the loss terms and the ``cls_gt`` that their ``Trainer.train`` computes on the train batch (starting
    from the seeded table, no step taken), then their ``inference`` over the two videos with that seeded table."""
    state = official.seeded_state(official.layout("case", D, C), WEIGHT_SEEDS["case"], C)
    table = official.cluster_table(CASE_TABLE_SEED)
    data = scratch / "data"
    vids = {f"video_test_{i}": _test_video(i) for i in range(len(TEST_ROWS))}
    case.write_test_videos(data, vids, ROW_SECONDS)
    found: dict[str, Any] = {}
    with case.modules(checkout) as code:
        config = case.their_config(code, scratch, data, len_feature=D, num_classes=C, num_workers=0)
        net = case.new_network(code, config, state)
        torch.manual_seed(TORCH_SEED)

        def keep(terms: dict[str, float], total: float, trainer: Any) -> None:
            found.update(loss=terms, cls_gt=trainer.cls_gt.tolist())

        case.run_steps(code, config, net, [(_train_batch(), _multi_hot(TRAIN_LABELS))], None, keep, cls_gt=table)
        written = case.infer(code, config, net.eval(), table, data)
        index = case.class_index(code)
    videos = [
        {"rows": rows, "detections": [_detection(index[d["label"]], d["score"], *d["segment"])
                                      for d in written.get(vid, [])]}
        for vid, rows in zip(vids, TEST_ROWS, strict=True)
    ]  # fmt: skip
    return _entry(found["loss"], videos, cls_gt=found["cls_gt"])
