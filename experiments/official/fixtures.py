"""Regenerate the authors' side of ``tests/fixtures/official_trajectory.json`` (their model, loss and ``train``
step, fed the inputs ``tests/test_trajectory.py`` builds) and of ``official_parity.json`` (their loss and test
code on the inputs ``tests/test_parity.py`` names: ``golden.py``) from your own clones of their repositories.

    python experiments/official/fixtures.py --official-um ~/src/WTAL-Uncertainty-Modeling \\
        --official-basnet ~/src/BaSNet-pytorch --official-backtal ~/src/BackTAL \\
        --official-cmcs ~/src/CMCS-Temporal-Action-Localization --official-case ~/src/CASE [--check]

Each named method's entry is recomputed and written back (the others are kept as they are); ``--check`` writes
nothing and exits 1 naming each entry that differs. Patches, as PROVENANCE.md lists them: the hidden width 2048
narrowed to the test's 32 (UM's margin 100 then scaled as wtal scales it, 100 * sqrt(32 / 2048) = 12.5) and
``.cuda()`` a no-op (CMCS: its MATLAB, torchvision, logger, dataset and utils imports stubbed, unused by these steps,
and its loss module's ``device`` set to the CPU); golden.py lists what its runs stub.
"""

from __future__ import annotations

import os

# the fixtures were made where oneDNN and MKL ran AVX2 kernels on 2 threads; AVX-512 kernels or another thread
# count round some sums differently (1e-7), which moves a detection score's 7th decimal now and then
os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
os.environ.setdefault("MKL_ENABLE_INSTRUCTIONS", "AVX2")
os.environ.setdefault("OMP_NUM_THREADS", "2")

import argparse
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: tests/ defines the inputs

import backtal
import case
import cmcs
import pilhyeon
from authors import authors_modules, stub, working_copy

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures"
TRAJECTORY, PARITY = FIXTURES / "official_trajectory.json", FIXTURES / "official_parity.json"
#: their loss terms (key, weight) -> ours, the weights being their options.py defaults
TERMS: dict[str, dict[str, tuple[str, float]]] = {
    "um": {"cls": ("loss_cls", 1.0), "uncertainty": ("loss_um", 0.0005), "background": ("loss_be", 1.0)},
    "basnet": {"base": ("loss_base", 1.0), "supp": ("loss_supp", 1.0), "filter_l1": ("loss_norm", 0.0001)},
    "backtal": {"base": ("loss_base", 1.0), "supp": ("loss_supp", 1.0), "filter_l1": ("loss_norm", 0.0001)},
    "cmcs": {"cls": ("cls", 1.0), "diversity": ("div", 1.0), "norm": ("norm", 1.0)},
}
METHODS = (*TERMS, "case")  # CASE's terms are named in case.py


class _Logger:
    """Their ``logger.log_value``, keeping the last value of each term."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}

    def log_value(self, key: str, value: float, step: int) -> None:
        self.values[key] = value


def trajectory(method: str, checkout: Path, root: Path) -> list[dict[str, Any]]:
    """Per step: their total loss, their terms in our naming, and every parameter's fingerprint (our names)."""
    if method == "backtal":
        return backtal_trajectory(checkout, root)
    if method == "cmcs":
        return cmcs_trajectory(checkout, root)
    if method == "case":
        return case_trajectory(checkout, root)
    from tests import official
    from tests.test_trajectory import HIDDEN, SETUPS, TORCH_SEED, WEIGHTS_SEED, C, D, fingerprint, trajectory_inputs

    ours, batches = trajectory_inputs(method, root)
    settings, _ = SETUPS[method]
    state = official.seeded_state(official.layout(method, D, C, hidden=HIDDEN), WEIGHTS_SEED, C, classifier_scale=1.0)
    copy = working_copy(checkout, method, pilhyeon.patches(method, HIDDEN))
    with authors_modules(copy, stubs={"tensorboard_logger": stub("tensorboard_logger")}) as code:
        model_module, train_module = code.load("model"), code.load("train")
        if method == "um":
            net = model_module.Model(D, C, 9, 4)  # options.py: r_act 9, r_bkg 4
            criterion = train_module.UM_loss(0.0005, 1.0, 100 * math.sqrt(HIDDEN / 2048))
        else:
            net = model_module.BaS_Net(D, C, settings["num_segments"])
            criterion = train_module.BaS_Net_loss(0.0001)
        net.load_state_dict(state)
        optimizer = torch.optim.Adam(net.parameters(), lr=settings["lr"], betas=(0.9, 0.999), weight_decay=0.0005)

        def feed() -> Iterator[tuple[Any, ...]]:
            for [batch] in batches:
                yield batch.features, batch.labels, None, None, None

        loader_iter, logger, steps = feed(), _Logger(), []
        torch.manual_seed(TORCH_SEED)
        for step in range(1, len(batches) + 1):
            if method == "um":
                train_module.train(net, loader_iter, optimizer, criterion, logger, step)
            else:
                train_module.train(net, None, loader_iter, optimizer, criterion, logger, step)
            terms = {name: weight * logger.values[key] for name, (key, weight) in TERMS[method].items()}
            with torch.random.fork_rng():  # building our model draws its initial weights: keep their stream
                weights = type(ours).from_official([net.state_dict()], **settings)
            steps.append({"loss": logger.values["loss_total"], "terms": terms, "params": fingerprint(weights)})
    return steps


def backtal_trajectory(checkout: Path, root: Path) -> list[dict[str, Any]]:
    """BackTAL's steps: their ``core.train_eval.train`` runs one epoch over the steps' batches (their layout:
    each half of the rows as (B, D / 2, T), clicked rows labelled CLS_NUM, others -100); each step is read from
    their criterion's terms and from the weights after their optimizer's step."""
    from tests import official
    from tests.test_trajectory import HIDDEN, SETUPS, TORCH_SEED, WEIGHTS_SEED, C, D, fingerprint, trajectory_inputs

    ours, batches = trajectory_inputs("backtal", root)
    settings, _ = SETUPS["backtal"]
    state = official.seeded_state(
        official.layout("backtal", D, C, hidden=HIDDEN), WEIGHTS_SEED, C, classifier_scale=1.0
    )
    copy = working_copy(checkout, "backtal", backtal.patches(HIDDEN))
    steps: list[dict[str, Any]] = []
    with authors_modules(copy, "lib") as code:
        default, network, train_eval, loss = (
            code.load(m) for m in ("config.default", "models.network", "core.train_eval", "criterion.loss")
        )
        default.update_config(str(copy / "experiments" / "THUMOS14.yaml"))
        cfg = default.config
        cfg.NETWORK.FEAT_DIM, cfg.DATASET.CLS_NUM, cfg.DATASET.NUM_SEGMENTS = D, C, settings["num_segments"]
        net = network.Network(cfg)
        net.load_state_dict(state)
        criterion = loss.BackTALLoss(cfg)
        optimizer = torch.optim.Adam(
            net.parameters(), lr=settings["lr"], betas=cfg.TRAIN.BETAS, weight_decay=cfg.TRAIN.WEIGHT_DECAY
        )
        terms: dict[str, float] = {}

        def criterion_read(*args: Any) -> Any:
            total, parts = criterion(*args)
            terms.clear()
            terms.update({key: part.item() for key, part in parts.items()})
            return total, parts

        def step_read() -> None:
            taken(optimizer)
            with torch.random.fork_rng():  # building our model draws its initial weights: keep their stream
                weights = type(ours).from_official([net.state_dict()], **settings)
            named = {name: weight * terms[key] for name, (key, weight) in TERMS["backtal"].items()}
            steps.append({"loss": terms["loss_total"], "terms": named, "params": fingerprint(weights)})

        taken = type(optimizer).step
        optimizer.step = step_read  # type: ignore[method-assign]
        half = D // 2
        loader = [
            (
                batch.features[..., :half].transpose(1, 2), batch.features[..., half:].transpose(1, 2), batch.labels,
                torch.where(batch.clicks > 0, C, -100), [""] * len(batch.labels),
            )
            for [batch] in batches
        ]  # fmt: skip
        torch.manual_seed(TORCH_SEED)
        train_eval.train(cfg, loader, net, optimizer, criterion_read)
    return steps


def cmcs_trajectory(checkout: Path, root: Path) -> list[dict[str, Any]]:
    """CMCS's steps: their ``BackboneNet``, ``get_diversity_loss`` and ``get_norm_regularization``, in the
    per-video loop of their ``train.py`` (which sits under its ``__main__``, so it is followed here, not
    imported): each video's loss backpropagated alone, one optimizer step per ``accumulate`` videos, the terms
    averaged over them as it prints them."""
    from tests import official
    from tests.test_trajectory import SETUPS, TORCH_SEED, WEIGHTS_SEED, C, D, fingerprint, trajectory_inputs

    ours, batches = trajectory_inputs("cmcs", root)
    settings, _ = SETUPS["cmcs"]
    state = official.seeded_state(official.layout("cmcs", D, C), WEIGHTS_SEED, C, classifier_scale=1.0)
    copy = working_copy(checkout, "cmcs", [])
    matlab, vision = (
        stub("matlab", engine=stub("matlab.engine")),
        stub("torchvision", models=stub("torchvision.models")),
    )
    stubs = {  # imported at the top of model.py and train.py, used only by their data loading, test and MATLAB code
        "matlab": matlab, "matlab.engine": matlab.engine, "torchvision": vision, "torchvision.models": vision.models,
        "logger": stub("logger", Logger=None), "dataset": stub("dataset", SingleVideoDataset=None),
        "utils": stub("utils", get_dataset=None, eval_thumos_recog=None, load_config_file=None),
    }  # fmt: skip
    steps: list[dict[str, Any]] = []
    with authors_modules(copy, stubs=stubs) as code:
        model_module, train_module = code.load("model"), code.load("train")
        train_module.device = torch.device("cpu")  # a module global their losses move tensors to
        net = model_module.BackboneNet(in_features=D, class_num=C + 1, **cmcs.MODEL)
        net.load_state_dict(state)
        optimizer = torch.optim.Adam(net.parameters(), lr=settings["lr"], weight_decay=cmcs.WEIGHT_DECAY)
        optimizer.zero_grad()
        criterion = torch.nn.CrossEntropyLoss(reduction="mean")  # their 'elementwise_mean', its old name
        torch.manual_seed(TORCH_SEED)
        for step_batches in batches:
            terms = {"cls": 0.0, "div": 0.0, "norm": 0.0}
            for batch in step_batches:
                net.train()
                label = torch.tensor([C if bool(batch.background_only[0]) else int(batch.labels[0].argmax())])
                weight = batch.weights.float()
                _, _, out, scores, _ = net(batch.features.transpose(2, 1))
                parts = {
                    "cls": criterion(out, label) * weight,
                    "div": train_module.get_diversity_loss(scores) * weight * cmcs.DIVERSITY_WEIGHT,
                    "norm": train_module.get_norm_regularization(scores) * weight * cmcs.DIVERSITY_WEIGHT,
                }
                for key, part in parts.items():
                    terms[key] += part.item() / len(step_batches)
                (parts["cls"] + parts["div"] + parts["norm"]).backward()
            optimizer.step()
            optimizer.zero_grad()
            with torch.random.fork_rng():  # building our model draws its initial weights: keep their stream
                weights = type(ours).from_official([net.state_dict()], **settings)
            named = {name: weight * terms[key] for name, (key, weight) in TERMS["cmcs"].items()}
            steps.append({"loss": sum(named.values()), "terms": named, "params": fingerprint(weights)})
    return steps


def case_trajectory(checkout: Path, root: Path) -> list[dict[str, Any]]:
    """CASE's steps: their ``Trainer.train`` over the steps' batches, from the uniform ``cls_gt`` it starts
    with; each step read from its loss terms and from the weights after their Adam's step."""
    from tests import official
    from tests.test_trajectory import SETUPS, TORCH_SEED, WEIGHTS_SEED, C, D, fingerprint, trajectory_inputs

    ours, batches = trajectory_inputs("case", root)
    settings, _ = SETUPS["case"]
    state = official.seeded_state(official.layout("case", D, C), WEIGHTS_SEED, C, classifier_scale=1.0)
    steps: list[dict[str, Any]] = []
    with case.modules(checkout) as code:
        config = case.their_config(code, root / "official", root, len_feature=D, num_classes=C,
                                   num_segments=settings["num_segments"], num_workers=0)  # fmt: skip
        net = case.new_network(code, config, state)
        optimizer = case.their_optimizer(net, settings["lr"])

        def read(terms: dict[str, float], total: float, trainer: Any) -> None:
            with torch.random.fork_rng():  # building our model draws its initial weights: keep their stream
                weights = type(ours).from_official([net.state_dict(), {"cls_gt": trainer.cls_gt}], **settings)
            steps.append({"loss": total, "terms": terms, "params": fingerprint(weights)})

        torch.manual_seed(TORCH_SEED)
        case.run_steps(code, config, net, [(batch.features, batch.labels) for [batch] in batches], optimizer, read)
    return steps


def main() -> int:
    import tempfile

    import golden

    from wtal_pipe.cache import atomic_write_text

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for method in METHODS:
        parser.add_argument(f"--official-{method}", type=Path, help=f"your clone of the {method} repository")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 naming each entry that differs")
    args = parser.parse_args()
    fixtures = {path: json.loads(path.read_text()) for path in (TRAJECTORY, PARITY)}
    differing = []
    for method in METHODS:
        checkout = getattr(args, f"official_{method}")
        if checkout is None:
            continue
        for path in fixtures:
            with tempfile.TemporaryDirectory() as scratch:
                if path == TRAJECTORY:
                    made = {"steps": trajectory(method, checkout.resolve(), Path(scratch))}
                else:
                    made = golden.entry(method, checkout.resolve(), Path(scratch))
            if made != fixtures[path].get(method):
                differing.append(f"{path.name} {method}")
            fixtures[path][method] = made
    for name in differing:
        print(f"{'differs' if args.check else 'changed'}: {name}")
    if not args.check:
        fixtures[PARITY]["_provenance"] = golden.PROVENANCE
        for path, fixture in fixtures.items():
            atomic_write_text(path, json.dumps(fixture, separators=(",", ":")) + ("\n" if path == PARITY else ""))
    return 1 if args.check and differing else 0


if __name__ == "__main__":
    sys.exit(main())
