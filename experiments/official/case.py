"""CASE trained and tested by its authors' code (Qinying-Liu/CASE): ``main_case.py``'s ``Trainer`` and
``inference_case.py``'s ``inference``, on their ``ThumosFeature`` loaders (the UM / BaS-Net data layout,
``pilhyeon.write_layout``).

What runs is theirs: ``WTALModel``, the loss code inside ``Trainer.train`` (the losses, both Sinkhorn steps, the
``cls_gt`` update), the optimizer they build, ``inference``. Changed around it: ``Config``'s fixed 2048-d features
and 20 classes set to the data's, loaders in the main process (``num_workers=0``), ``.cuda()`` a no-op, and their
``evaluate`` - which runs the test set every 50 steps and keeps the best step's weights - not run: the parity
protocol compares final steps, saved as ``best_model.pkl`` and ``cls_gt.npy`` the way ``evaluate`` saves them.
Their loss terms are local variables of ``Trainer.train``: read from its frame when it calls the optimizer's step.
No file of theirs is patched.
"""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from authors import authors_modules, run_as_script, stub, working_copy

from wtal_pipe.layout import inside

#: their loss terms (local variables of Trainer.train, with the weights main_case.py gives them) -> ours; the video
#: term is rebuilt from their criterion's two outputs, since ``cost = vid_loss; cost += ...`` adds to it in place
TERMS = {
    "attention": (("att_loss_flow", 1.0), ("att_loss_rgb", 1.0)),
    "clustering": (("clu_loss", "w_clu"),),
    "cluster_classification": (("cls_loss", "w_cls"),),
}
NUM_SEGMENTS, BATCH_SIZE = 750, 16  # config_case.py


def _evaluator() -> types.ModuleType:
    """``run_eval`` for their ``inference``: the mAP it computes after writing detections is not used here."""
    return stub("run_eval", evaluate=lambda *a, **k: (0.0, None, np.zeros(9)))


def their_config(code: types.SimpleNamespace, scratch: Path, data: Path, **changes: Any) -> Any:
    """Their ``Config`` from their command line (``--exp_name parity``, outputs under ``scratch``), with
    ``changes`` (the data's width and classes, no loader workers)."""
    config_module = code.load("config.config_case")
    argv = ["main_case.py", "--exp_name", "parity", "--output_dir", str(scratch), "--data_path", str(data)]
    with run_as_script(scratch, argv):
        config = config_module.Config(config_module.parse_args())
    for key, value in changes.items():
        setattr(config, key, value)
    return config


def terms_of(frame_locals: dict[str, Any], config: Any, video: list[torch.Tensor]) -> dict[str, float]:
    """Their loss terms, read from ``Trainer.train``'s locals (``video``: their criterion's flow and rgb values
    this step), in our naming and weighting."""
    return {"video": (0.5 * video[0] + 0.5 * video[1]).item()} | {
        name: sum(
            (getattr(config, weight) if isinstance(weight, str) else weight) * frame_locals[key].item()
            for key, weight in parts
        )
        for name, parts in TERMS.items()
    }


def run_steps(
    code: types.SimpleNamespace,
    config: Any,
    net: torch.nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer | None,
    after_step: Callable[[dict[str, float], float, Any], None],
    cls_gt: torch.Tensor | None = None,
) -> None:
    """Their ``Trainer.train`` for one pass over ``batches`` (features, labels), from ``cls_gt`` (default: the
    uniform table their ``__init__`` makes); ``after_step(terms, total, trainer)`` after each optimizer step
    (``optimizer`` None: no step is taken)."""
    main_case = code.load("main_case")
    trainer = object.__new__(main_case.Trainer)  # their __init__ builds loaders from files; the rest as it does
    trainer.config, trainer.net = config, net
    losses = code.load("utils.loss")
    video: list[torch.Tensor] = []  # their criterion's outputs this step (flow, then rgb)

    theirs = losses.CrossEntropyLoss()

    def criterion(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        value = theirs(logits, label)
        video.append(value.detach().clone())
        return value

    trainer.criterion, trainer.Lgce = criterion, losses.GeneralizedCE(q=config.q_val)
    uniform = torch.ones((config.num_clusters, 2), dtype=torch.float) / config.num_clusters
    trainer.cls_gt = uniform if cls_gt is None else cls_gt.clone()
    trainer.step, trainer.total_loss_per_epoch, trainer.best_mAP = 0, 0, -1
    trainer.train_loader = [(x, y, None, None, None) for x, y in batches]
    trainer.evaluate = lambda epoch=0: None

    class Stepper:
        def zero_grad(self) -> None:
            if optimizer is not None:
                optimizer.zero_grad()

        def step(self) -> None:
            frame_locals = sys._getframe(1).f_locals
            terms, total = terms_of(frame_locals, config, video), frame_locals["cost"].item()
            video.clear()
            if optimizer is not None:
                optimizer.step()
            after_step(terms, total, trainer)

    trainer.optimizer = Stepper()
    config.num_epochs = 1
    net.train()
    trainer.train()


def new_network(code: types.SimpleNamespace, config: Any, state: dict[str, torch.Tensor] | None = None) -> Any:
    net = code.load("models.case_model").WTALModel(config)
    if state is not None:
        net.load_state_dict(state)
    return net


def their_optimizer(net: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    """main_case.py's Adam (betas 0.9 / 0.999, weight decay 5e-4), at ``lr``."""
    return torch.optim.Adam(net.parameters(), lr=lr, betas=(0.9, 0.999), weight_decay=0.0005)


def modules(checkout: Path) -> Any:
    """Their modules from a copy of ``checkout`` (``run_eval``'s evaluator stubbed)."""
    return authors_modules(working_copy(checkout, "case", []), stubs={"run_eval": _evaluator()})


def infer(
    code: types.SimpleNamespace, config: Any, net: torch.nn.Module, cls_gt: torch.Tensor, data: Path
) -> dict[str, list[dict[str, Any]]]:
    """Their ``inference`` over the test videos of ``data`` (their layout); the detections it writes, per video."""
    features = code.load("dataset.thumos_features")
    dataset = features.ThumosFeature(data_path=str(data), mode="test", modal=config.modal,
                                     feature_fps=config.feature_fps, num_segments=config.num_segments,
                                     len_feature=config.len_feature, seed=config.seed, sampling="uniform",
                                     supervision="strong")  # fmt: skip
    loader = torch.utils.data.DataLoader(dataset, batch_size=1, shuffle=False, num_workers=0)
    # On their GPU, ``score_supp[0, :].cpu().numpy()`` is a copy, so binarizing it to pick classes leaves the
    # probabilities their proposal scores use; on a CPU ``.cpu()`` returns the tensor itself and the binarizing
    # would reach them. ``.cpu()`` copies here, as the device transfer does.
    device_transfer = torch.Tensor.cpu
    torch.Tensor.cpu = lambda self, *args, **kwargs: self.clone()  # type: ignore[method-assign]
    try:
        _, _, written, _ = code.load("inference_case").inference(net, config, loader, cls_gt=cls_gt, model_file=None)
    finally:
        torch.Tensor.cpu = device_transfer  # type: ignore[method-assign]
    return written["results"]


def class_index(code: types.SimpleNamespace) -> dict[str, int]:
    return {name: k for k, name in code.load("dataset.thumos_features").class_dict.items()}


def train_for_parity(
    method: str, checkout: Path, data: Path, out: Path, seed: int, settings: dict[str, Any]
) -> list[Path]:
    """One parity run of their training loop (``settings``: wtal's ``epochs`` and ``lr``): set_seed, the
    network, the loaders (which reseed), Adam, ``epochs`` passes; returns their two files."""
    import pilhyeon

    layout = out / "layout"
    if not (layout / "gt.json").exists():
        pilhyeon.write_layout(data, layout)
    width = int(np.load(next((layout / "features" / "train" / "rgb").glob("*.npy"))).shape[1]) * 2
    folder = out / f"seed_{seed}"
    with modules(checkout) as code:
        config = their_config(code, folder, layout, len_feature=width, num_workers=0, seed=seed,
                              lr=settings["lr"], num_epochs=settings["epochs"])  # fmt: skip
        main_case = code.load("main_case")
        main_case.set_seed(config)
        trainer = main_case.Trainer(config)  # their __init__: the network, loaders, Adam, the first cls_gt
        trainer.evaluate = lambda epoch=0: None  # the test set every 50 steps: not run (final steps compared)
        trainer.train()
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(trainer.net.state_dict(), folder / "best_model.pkl")
        np.save(folder / "cls_gt.npy", trainer.cls_gt.detach().cpu().numpy())
    return [folder / "best_model.pkl", folder / "cls_gt.npy"]


def write_test_videos(folder: Path, videos: dict[str, np.ndarray], seconds_per_row: float) -> None:
    """Test videos in their layout (``features/test/{rgb,flow}``, ``split_test.txt``, ``gt.json``, no actions)."""
    for vid, rows in videos.items():
        half = rows.shape[1] // 2
        for stream, part in (("rgb", rows[:, :half]), ("flow", rows[:, half:])):
            (folder / "features" / "test" / stream).mkdir(parents=True, exist_ok=True)
            np.save(inside(folder / "features" / "test" / stream, vid, ".npy"), np.ascontiguousarray(part))
    (folder / "split_test.txt").write_text("".join(f"{vid}\n" for vid in videos))
    database = {vid: {"subset": "test", "duration": len(rows) * seconds_per_row, "annotations": []}
                for vid, rows in videos.items()}  # fmt: skip
    (folder / "gt.json").write_text(json.dumps({"database": database}))
