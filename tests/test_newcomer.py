"""A newcomer's own clips on a CPU: a runnable small-run preset whose sampled rows follow the data, progress that
speaks at once, a divergence warning, one home for the weights, help text that prints what it means."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from wtal_pipe.features.weights import MODELS_RULE

from .planted import write_planted_dataset
from .test_bad_input import one_line_error

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("newcomer") / "data"
    write_planted_dataset(root, num_classes=2, feature_dim=16, n_train=6, n_test=2, rows=(10, 14), seed=3)
    return root


def test_the_cpu_preset_samples_as_many_rows_as_the_videos_have_and_says_so(data, tmp_path, run_cli):
    code, out, err = run_cli(
        "train", "--method", "um", "--data", data, "--out", tmp_path / "r", "--preset", "cpu-small", "--device", "cpu"
    )
    assert code == 0, err
    meta = json.loads((tmp_path / "r" / "config.json").read_text())
    lengths = [np.load(p).shape[0] for p in sorted((data / "features").glob("train_*.npy"))]
    rows = meta["config"]["network"]["num_segments"]
    assert rows == int(np.median(lengths)) and meta["config"]["network"]["hidden_dim"] == 256
    assert f"{rows} rows per video (the training videos' median length; preset cpu-small)" in out
    assert meta["config"]["training"]["iterations"] == 100 and meta["preset"] == "cpu-small"  # 100 epochs, 1 batch
    code, _, err = run_cli(
        "train", "--method", "um", "--data", data, "--out", tmp_path / "r2", "--preset", "cpu-small",
        "--num-segments", "32", "--iters", "2", "--device", "cpu",
    )  # fmt: skip
    assert (
        code == 0
        and json.loads((tmp_path / "r2" / "config.json").read_text())["config"]["network"]["num_segments"] == 32
    )


def test_progress_speaks_at_the_first_step_with_the_time_left(data, tmp_path, run_cli):
    code, out, err = run_cli(
        "train", "--method", "um", "--data", data, "--out", tmp_path / "r", "--iters", "25", "--lr", "1e-3",
        "--set", "hidden_dim=16", "--num-segments", "8", "--device", "cpu",
    )  # fmt: skip
    assert code == 0, err
    steps = [line for line in out.splitlines() if line.startswith("step ")]
    assert re.match(r"step +1/25 +loss [0-9.]+ .*\[eta \d+s\]$", steps[0])
    assert [int(line.split()[1].split("/")[0]) for line in steps] == [1, 10, 20, 25]  # and every 10 s, were it slow
    assert out.index("um on 6 'train' videos") < out.index("step      1/25")


def test_a_diverging_run_is_warned_about_once(data, tmp_path, run_cli):
    code, _, err = run_cli(
        "train", "--method", "um", "--data", data, "--out", tmp_path / "r", "--iters", "30", "--lr", "1",
        "--set", "hidden_dim=16", "--num-segments", "8", "--device", "cpu",
    )  # fmt: skip
    warnings = [line for line in err.splitlines() if "training is diverging" in line]
    assert len(warnings) == 1 and "lower --lr (now 1)" in warnings[0] and "x its lowest" in warnings[0]
    assert code in (0, 2)  # it may also end in a NaN, which is a one-line error


def test_one_hard_batch_is_not_divergence_but_a_sustained_rise_is():
    """The demo's CMCS steps (two videos) jump from 0.17 to 1.8 on one hard batch; a diverging run stays up."""
    import warnings

    from wtal_pipe.training.train import LossWatch, TrainingWarning

    def warned(losses: list[float]) -> list[str]:
        watch = LossWatch("cmcs")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for step, loss in enumerate(losses, 1):
                watch(loss, step, 1e-3)
        return [str(w.message) for w in caught if w.category is TrainingWarning]

    spiky = [0.2 if step % 17 else 1.8 for step in range(1, 400)]
    assert warned(spiky) == []
    rising = [1.0] * 20 + [1.0 + 5 * k for k in range(1, 15)]
    [message] = warned(rising)
    assert "at step 24:" in message and "(median of 5 steps)" in message and "lower --lr (now 0.001)" in message


def test_the_weights_rule_is_said_once_and_everywhere_the_same(tmp_path, run_cli, monkeypatch, make_clip):
    monkeypatch.setenv("WTAL_MODELS_DIR", str(tmp_path / "models"))
    code, out, _ = run_cli("weights")
    assert code == 0 and f"looking in {tmp_path / 'models'} ({MODELS_RULE})" in out and "rgb_imagenet" in out
    code, _, err = run_cli("extract", make_clip(), "--data", tmp_path / "d", "--rgb-weights", "rgb_imagenet")
    assert code == 2 and one_line_error(err, MODELS_RULE)
    from wtal_pipe.cli.app import random_weights_warning

    random_weights_warning("the features")
    for document in (ROOT / "README.md", ROOT / "models" / "README.md", ROOT / "examples" / "own_videos.sh"):
        text = document.read_text()
        assert "$WTAL_MODELS_DIR" in text and "~/.cache/wtal-pipe/models" in text, document
        assert "in models/" not in text and "random-seed0" not in text, document


def test_random_weights_are_named_with_the_rule(capsys):
    from wtal_pipe.cli.app import random_weights_warning

    random_weights_warning("the features")
    assert MODELS_RULE in capsys.readouterr().err.replace("\n", " ")


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (["train", "--help"], ["pipe[tb]"]),
        (["extract", "--help"], ["pipe[dask]"]),
        (["test", "--help"], ["else the CPU", "[default: cpu]"]),
        (["annotate", "--help"], ["--data"]),
    ],
)
def test_help_prints_what_it_means(run_cli, args, shown):
    code, out, _ = run_cli(*args)
    assert code == 0 and all(words in " ".join(out.split()) for words in shown), out


def test_a_wrong_choice_names_the_choices_without_a_validator_prefix(run_cli):
    code, _, err = run_cli("train", "--method", "xyz")
    assert code == 2 and one_line_error(err, "'xyz' is not one of 'basnet', 'um', 'cmcs', 'backtal'")
    assert "Value error" not in err


def test_sample_clips_per_class_come_with_their_labels(tmp_path, run_cli):
    code, out, err = run_cli("make-sample", tmp_path / "videos", "--classes", "2", "--per-class", "3", "--seconds", "3")
    assert code == 0, err
    rows = (tmp_path / "videos" / "labels.csv").read_text().splitlines()
    assert rows[0] == "video,label,subset,start,end" and len(rows) == 7
    tests = [row.split(",") for row in rows[1:] if ",test," in row]
    assert len(tests) == 2 and all(0 <= float(r[3]) < float(r[4]) <= 3 for r in tests)
    assert len(list((tmp_path / "videos").glob("*/*.mp4"))) == 6
