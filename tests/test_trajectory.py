"""Training parity with the random parts on: from the same weights, on the same batches (the same videos
and sampled rows, drawn by our sampler) and with the same torch seed (so the same dropout and UM
selection masks), our trainer takes the optimizer trajectory the authors' training code took, step by
step: loss terms and every parameter. The authors' numbers are in tests/fixtures/official_trajectory.json
(PROVENANCE.md: their model, loss and train step run on CPU with these inputs); their code is not here.

Then what is random is checked to be drawn as the official code draws it: the share of rows a dropout
mask keeps, the rows UM's selection may pick, how often each video is drawn, where sampled rows fall.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from wtal_pipe.data.clicks import simulate_clicks
from wtal_pipe.data.dataset import Dataset
from wtal_pipe.data.sampling import random_perturb
from wtal_pipe.methods import get_method
from wtal_pipe.methods.base import Batch, Method
from wtal_pipe.training.train import BatchSampler, Trainer, training_entries

from . import official
from .planted import write_planted_dataset

TRAJECTORY = Path(__file__).parent / "fixtures" / "official_trajectory.json"
D, C, HIDDEN = 16, 4, 32  # feature size, classes, hidden width (the official 2048, narrowed the same way)
WEIGHTS_SEED, SAMPLER_SEED, TORCH_SEED = 11, 3, 7
#: per method: settings (the official ones but for length, batch and lr, small for a CPU test) and steps
SETUPS: dict[str, tuple[dict, int]] = {
    "um": ({"num_segments": 32, "batch_size": 4, "lr": 1e-3}, 30),
    "basnet": ({"num_segments": 32, "batch_size": 4, "lr": 1e-3}, 30),
    "backtal": ({"num_segments": 32, "batch_size": 4, "lr": 1e-3}, 20),
    "cmcs": ({"fusion": "early", "accumulate": 3, "lr": 1e-3}, 20),  # one BackboneNet, as the official code
    "case": ({"num_segments": 32, "batch_size": 4, "lr": 1e-3}, 30),  # its official widths (512, 16 clusters)
}


def trajectory_inputs(method: str, root: Path) -> tuple[Method, list[list[Batch]]]:
    """Our model holding the seeded official weights, and the batches of every step (the official side of
    the fixture was fed the same ones)."""
    cls = get_method(method)
    settings, steps = SETUPS[method]
    if not (root / "annotations.json").exists():
        write_planted_dataset(root, num_classes=C, feature_dim=D, n_train=12, n_test=0, rows=(30, 80), seed=5)
    dataset = Dataset(root, "train", classes=[f"action_{c}" for c in range(C)])
    rng = np.random.default_rng(SAMPLER_SEED)
    if cls.uses_clicks:
        for video in dataset.videos:
            video.clicks = simulate_clicks(video.segments, video.duration, video.frame_rate, rng)
    hidden = {} if method in ("cmcs", "case") else {"hidden": HIDDEN}  # their widths are fixed
    state = official.seeded_state(official.layout(method, D, C, **hidden), WEIGHTS_SEED, C, classifier_scale=1.0)
    model = cls.from_official(official.official_files(method, state), **settings)
    config = model.config
    sampler = BatchSampler(training_entries(dataset.videos, config.training.single_label_copies), config, rng)
    return model, [[sampler.draw() for _ in range(config.training.accumulate)] for _ in range(steps)]


def fingerprint(model: torch.nn.Module) -> dict[str, list[float]]:
    """Each parameter's sum and sum of squares (float64)."""
    return {
        name: [float(p.detach().double().sum()), float((p.detach().double() ** 2).sum())]
        for name, p in model.named_parameters()
    }


def our_trajectory(method: str, root: Path) -> list[dict]:
    model, batches = trajectory_inputs(method, root)
    trainer = Trainer(model, torch.device("cpu"))
    torch.manual_seed(TORCH_SEED)
    steps = []
    for step_batches in batches:
        terms = trainer.step(step_batches)
        steps.append({"loss": sum(terms.values()), "terms": terms, "params": fingerprint(model)})
    return steps


#: CMCS's attention bias shifts every time step's attention logit alike, and a softmax over time does not
#: see it: its gradient is zero in exact arithmetic, so Adam turns float32 rounding noise into steps of
#: size lr, which two implementations round differently. It is checked to have no gradient instead.
NO_GRADIENT = {"streams.0.attention_head.bias"}


def relative_gap(a: float, b: float, scale: float | None = None) -> float:
    return abs(a - b) / max(1e-8, scale if scale is not None else max(abs(a), abs(b)))


def parameter_gaps(mine: dict[str, list[float]], theirs: dict[str, list[float]]) -> list[float]:
    """Per parameter: the gap of its sum relative to its L2 norm (a sum near zero is all cancellation), and
    of its sum of squares."""
    gaps = []
    for name, (total, squares) in theirs.items():
        if name not in NO_GRADIENT:
            gaps += [relative_gap(mine[name][0], total, squares**0.5), relative_gap(mine[name][1], squares)]
    return gaps


#: largest relative gap allowed: losses and terms (measured on two CPU classes: <= 6.8e-7), and the weights'
#: fingerprints, where Adam turns the rounding of near-zero gradients into steps of size lr and the gap grows
#: with the steps (BackTAL's embed2 after 20 steps: 7.3e-7 on an AVX2 EPYC, 3.4e-5 on an AVX512 EPYC)
LOSS_TOLERANCE, WEIGHT_TOLERANCE = 1e-5, 1e-4


@pytest.mark.parametrize("method", list(SETUPS))
def test_our_trainer_takes_the_official_trajectory(method, tmp_path):
    expected = json.loads(TRAJECTORY.read_text())[method]
    ours = our_trajectory(method, tmp_path)
    assert len(ours) == len(expected["steps"]) == SETUPS[method][1]
    worst = 0.0
    for step, (mine, theirs) in enumerate(zip(ours, expected["steps"]), start=1):
        assert set(mine["params"]) == set(theirs["params"]), step
        gaps = [relative_gap(mine["loss"], theirs["loss"])]
        gaps += [relative_gap(mine["terms"][k], v) for k, v in theirs["terms"].items()]
        weights = parameter_gaps(mine["params"], theirs["params"])
        worst = max(worst, *gaps, *weights)
        assert max(gaps) <= LOSS_TOLERANCE and max(weights) <= WEIGHT_TOLERANCE, (method, step, max(gaps), max(weights))
    print(f"{method}: {len(ours)} steps, largest relative gap {worst:.1e}")


def test_the_parameter_left_out_has_no_gradient(tmp_path):
    model, batches = trajectory_inputs("cmcs", tmp_path)
    batch = batches[0][0]
    model.loss(model(batch.features), batch)["cls"].backward()
    bias = dict(model.named_parameters())["streams.0.attention_head.bias"]
    assert bias.grad is not None and abs(float(bias.grad)) < 1e-6


def test_the_masks_keep_the_official_share_and_selection_picks_kept_rows():
    torch.manual_seed(0)
    model = get_method("um")(D, C, get_method("um").configure({"hidden_dim": HIDDEN})).train()
    kept = model.selection(torch.ones(64, 750))
    assert torch.allclose(kept[kept > 0], torch.full_like(kept[kept > 0], 1 / 0.3))
    assert abs(float((kept > 0).float().mean()) - 0.3) < 0.01  # official: nn.Dropout(p=0.7) on ones
    out = model(torch.randn(2, 90, D))
    magnitudes = out.internals["feat_act"].norm(dim=2)  # (B, k_act): the picked action rows
    assert magnitudes.shape == (2, 90 // 9)
    # in eval mode every row is eligible: the picked rows are the top-k magnitudes
    model.eval()
    x = torch.randn(1, 90, D)
    with torch.no_grad():
        out = model(x)
        embedded = torch.relu(model.embed(x.transpose(1, 2))).transpose(1, 2)[0]
    top = embedded.norm(dim=1).sort(descending=True).values[: 90 // 9]
    assert torch.allclose(out.internals["feat_act"][0].norm(dim=1), top)


def official_random_perturb(length: int, num_segments: int, rng: np.random.Generator) -> np.ndarray:
    """BaS-Net/UM ``random_perturb``, loop by loop (their np.random.choice over each span)."""
    samples = np.arange(num_segments) * length / num_segments
    out = np.zeros(num_segments, np.int64)
    for i in range(num_segments):
        if i < num_segments - 1:
            low, high = int(samples[i]), int(samples[i + 1])
            out[i] = rng.choice(range(low, high + 1)) if low != high else low
        else:
            low = int(samples[i])
            out[i] = rng.choice(range(low, length)) if low < length - 1 else low
    return out


@pytest.mark.parametrize(("length", "segments"), [(50, 750), (749, 750), (1000, 750), (3000, 750), (97, 32)])
def test_sampled_rows_follow_the_official_distribution(length, segments):
    ours = np.stack([random_perturb(length, segments, np.random.default_rng(s)) for s in range(400)])
    theirs = np.stack(
        [official_random_perturb(length, segments, np.random.default_rng(10_000 + s)) for s in range(400)]
    )
    for i in range(segments):  # the same rows reachable at every position, each about as often
        assert set(np.unique(ours[:, i])) == set(np.unique(theirs[:, i])), i
    assert abs(ours.mean() - theirs.mean()) < 0.01 * length + 0.5
    assert np.all(np.diff(ours, axis=1) >= 0)  # in time order


def _drawn(batch_order: str, videos: int, batch_size: int, steps: int, drop_last: bool = False) -> list[list[int]]:
    config = get_method("um").configure({"batch_size": batch_size, "batch_order": batch_order, "drop_last": drop_last})
    sampler = BatchSampler([object()] * videos, config, np.random.default_rng(0))  # type: ignore[list-item]
    return [sampler._draw() for _ in range(steps)]


def test_epochs_draw_each_video_once_and_end_on_a_short_batch():
    batches = _drawn("epochs", videos=200, batch_size=16, steps=26)  # UM, BackTAL: two epochs of 13 batches
    assert [len(b) for b in batches] == [16] * 12 + [8] + [16] * 12 + [8]
    for epoch in (batches[:13], batches[13:]):
        assert sorted(i for b in epoch for i in b) == list(range(200))


def test_drop_last_skips_the_short_batch_and_counts_whole_batches_as_case_does():
    from wtal_pipe.training.train import with_epochs

    batches = _drawn("epochs", videos=200, batch_size=16, steps=24, drop_last=True)  # CASE: 12 whole batches
    assert [len(b) for b in batches] == [16] * 24
    for epoch in (batches[:12], batches[12:]):
        assert len({i for b in epoch for i in b}) == 192  # each epoch: 192 different videos, 8 left out
    assert [len(b) for b in _drawn("epochs", videos=6, batch_size=16, steps=3, drop_last=True)] == [6, 6, 6]
    case = get_method("case")
    assert with_epochs(case.defaults(), 200).training.iterations == 300 * 12  # the official 3600 steps
    assert with_epochs(case.configure({"epochs": 2}), 6).training.iterations == 2  # fewer videos than a batch


def test_fresh_batches_after_the_first_epoch_as_basnet_draws_them():
    batches = _drawn("fresh", videos=200, batch_size=16, steps=13 + 2000)
    assert sorted(i for b in batches[:13] for i in b) == list(range(200))  # one whole epoch first
    later = batches[13:]
    assert all(len(b) == 16 == len(set(b)) for b in later)  # no repeat within a batch
    counts = np.bincount([i for b in later for i in b], minlength=200)
    assert counts.sum() == 32000 and counts.min() > 110 and counts.max() < 210  # 160 each on average


def test_a_collapsed_filter_is_reported_once_with_its_step(tmp_path):
    from wtal_pipe.training.train import TrainingWarning

    model, batches = trajectory_inputs("basnet", tmp_path)
    with torch.no_grad():  # every foreground weight near 0: sigmoid(-20)
        model.filter.conv2.bias.fill_(-20.0)
    trainer = Trainer(model, torch.device("cpu"))
    with pytest.warns(
        TrainingWarning, match=r"basnet at step 1: .*foreground weights are near 0 almost everywhere"
    ) as seen:
        for step_batches in batches[:3]:
            trainer.step(step_batches)
    assert len([w for w in seen if issubclass(w.category, TrainingWarning)]) == 1


def test_equal_um_magnitudes_are_reported(tmp_path):
    from wtal_pipe.training.train import TrainingWarning

    model, batches = trajectory_inputs("um", tmp_path)
    with torch.no_grad():  # the embedding ignores the input: every row has the same magnitude
        model.embed.weight.zero_()
    with pytest.warns(TrainingWarning, match="feature magnitudes are all equal"):
        Trainer(model, torch.device("cpu")).step(batches[0])


def test_no_class_above_threshold_is_explained(tmp_path, run_cli):
    write_planted_dataset(tmp_path / "data", num_classes=3, feature_dim=16, n_train=4, n_test=3)
    code, _, err = run_cli(
        "train", "--method", "basnet", "--data", tmp_path / "data", "--out", tmp_path / "r", "--iters", "1",
        "--set", "hidden_dim=16", "--num-segments", "16", "--device", "cpu",
    )  # fmt: skip
    assert code == 0, err
    code, out, err = run_cli(
        "test", "--run", tmp_path / "r", "--data", tmp_path / "data", "--out", tmp_path / "d.json",
        "--set", "class_threshold=0.99",
    )  # fmt: skip
    assert code == 0 and "(0 detections in 3 videos" in out
    assert "no class reached class_threshold 0.99 in any video (highest video score there 0." in err
    assert "try --set class_threshold=0." in err


def test_a_filter_collapse_is_seen_through_stray_rows():
    from wtal_pipe.methods.basnet import filter_collapse

    rng = np.random.default_rng(0)
    collapsed = np.full((16, 750), 0.004)
    collapsed.flat[rng.choice(collapsed.size, 60, replace=False)] = 0.3  # 0.5% stray rows
    assert "near 0 almost everywhere (mean 0.0055" in filter_collapse(torch.tensor(collapsed))
    saturated = 1 - collapsed
    assert "near 1 almost everywhere" in filter_collapse(torch.tensor(saturated))
    healthy = np.where(rng.random((16, 750)) < 0.16, 0.95, 0.01)  # a trained BaS-Net: ~16% of rows foreground
    assert filter_collapse(torch.tensor(healthy)) is None


def test_a_saturated_case_attention_is_reported(tmp_path):
    from wtal_pipe.training.train import TrainingWarning

    model, batches = trajectory_inputs("case", tmp_path)
    with torch.no_grad():  # every row's attention near 1 in both streams: sigmoid(20)
        for stream in (model.rgb, model.flow):
            stream.attention.bias.fill_(20.0)
    with pytest.warns(TrainingWarning, match=r"case at step 1: the attention is near 1 on almost every row"):
        Trainer(model, torch.device("cpu")).step(batches[0])
    healthy, batches = trajectory_inputs("case", tmp_path)
    assert healthy.collapse(healthy.train()(batches[0][0].features)) is None
