"""Months of runs in one folder: importers, refine, seeds and report never lose or mix work (hardening 3).

One test per case of the hostile review (#30): what ``--force`` may replace (a run of the kind the command
makes; feature files and annotations only when asked), what a resumed command may reuse (a finished run
recorded exactly as the one asked for), splits that never move, and bad files that end in one line."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from wtal_pipe.data.annotations import load_annotations

from .planted import write_planted_dataset
from .test_bad_input import one_line_error
from .test_releases import _objects, _wtalc_release

QUICK = ["--lr", "1e-3", "--num-segments", "32", "--set", "hidden_dim=16", "--device", "cpu"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("safety") / "data"
    write_planted_dataset(root, num_classes=3, feature_dim=16, n_train=12, n_test=4, rows=(30, 50), seed=5)
    return root


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """A finished UM run (seed 0)."""
    from typer.testing import CliRunner

    from wtal_pipe.cli import app

    run = tmp_path_factory.mktemp("trained") / "run"
    result = CliRunner().invoke(
        app, ["train", "--method", "um", "--data", str(data), "--out", str(run), "--iters", "4", *QUICK]
    )
    assert result.exit_code == 0, result.output
    return run


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- importers: data loss -----------------------------------------------------------------------------------


def _extracted_like(data: Path) -> None:
    """Give every feature file the kind of record wtal extract writes (its timing lives there)."""
    from wtal_pipe.features.config import ExtractionConfig

    for path in (data / "features").glob("*.npy"):
        path.with_suffix(".json").write_text(json.dumps({"extraction": ExtractionConfig().to_dict()}))


def test_importing_features_never_replaces_extracted_ones_or_their_records_unasked(tmp_path, run_cli):
    data = tmp_path / "data"
    write_planted_dataset(data, num_classes=2, feature_dim=8, n_train=3, n_test=1, rows=(30, 40))
    _extracted_like(data)
    before = _snapshot(data)
    other = tmp_path / "other"
    other.mkdir()
    np.save(other / "train_0000.npy", np.ones((20, 8), np.float32))
    timing = ["--fps", "30", "--frames-per-row", "16"]
    code, _, err = run_cli("import", "features", other, "--data", data, *timing)
    assert code == 2 and one_line_error(err, "would replace 1 feature file(s) already there: train_0000.npy", "--force")
    assert _snapshot(data) == before
    code, _, err = run_cli("import", "features", other, "--data", data, *timing, "--force")
    assert code == 0, err
    assert np.load(data / "features" / "train_0000.npy").shape == (20, 8)
    assert not (data / "features" / "train_0000.json").exists()  # the replaced file's record went with it
    kept = sorted(p.name for p in (data / "features").glob("*.json") if p.name != "timing.json")
    assert kept == ["test_0003.json", "train_0001.json", "train_0002.json"]  # records of files it did not copy


def test_importing_a_datasets_own_features_declares_timing_and_keeps_every_record(tmp_path, run_cli):
    """What wtal train's own error suggests for a file without a record: import DATA_DIR/features into DATA_DIR."""
    data = tmp_path / "data"
    write_planted_dataset(data, num_classes=2, feature_dim=8, n_train=3, n_test=1, rows=(30, 40))
    _extracted_like(data)
    (data / "features" / "train_0001.json").unlink()  # one file without a record
    before = _snapshot(data / "features")
    code, out, err = run_cli(
        "import", "features", data / "features", "--data", data, "--fps", "30", "--frames-per-row", "16"
    )
    assert code == 0, err
    assert "4 were there already with the same bytes" in out and "3 keep the timing their own record gives" in out
    after = _snapshot(data / "features")
    assert {k: v for k, v in after.items() if k != "timing.json"} == before
    from wtal_pipe.data.dataset import Dataset

    timings = {v.vid: v.rows_timing for v in Dataset(data, "train").videos}
    assert timings["train_0001"].fps == 30 and timings["train_0000"].fps == 25  # declared vs its own record


def test_a_bas_import_over_a_dataset_needs_force(tmp_path, run_cli):
    source = tmp_path / "bas"
    for subset in ("train", "test"):
        for stream in ("rgb", "flow"):
            (source / "features" / subset / stream).mkdir(parents=True)
    gt = {"v1": {"subset": "train", "annotations": [{"label": "a", "segment": [1, 2]}]}}
    (source / "gt.json").write_text(json.dumps({"database": gt}))
    for stream in ("rgb", "flow"):
        np.save(source / "features" / "train" / stream / "v1.npy", np.ones((10, 4), np.float32))
    data = tmp_path / "data"
    write_planted_dataset(data, num_classes=2, feature_dim=8, n_train=12, n_test=4, rows=(30, 40))
    before = _snapshot(data)
    code, _, err = run_cli("import", "bas-thumos", source, "--data", data)
    assert code == 2 and one_line_error(err, "annotations.json: already holds a dataset", "--force")
    assert _snapshot(data) == before
    code, out, err = run_cli("import", "bas-thumos", source, "--data", data, "--force")
    assert code == 0 and "imported 1 videos" in out, err


def test_importing_clicks_over_other_clicks_needs_force(tmp_path, run_cli):
    data = tmp_path / "data"
    data.mkdir()
    (data / "clicks.json").write_text(json.dumps({"v1": [3.0]}))
    (tmp_path / "c.csv").write_text("URLID,URL,TagID,Tag,Start,End,Time,State\nv2,u,1,t,4.5,4.5,0,ok\n")
    code, _, err = run_cli("import", "clicks", tmp_path / "c.csv", "--data", data)
    assert code == 2 and one_line_error(err, "clicks.json: already holds other clicks", "--force")
    assert json.loads((data / "clicks.json").read_text()) == {"v1": [3.0]}
    assert run_cli("import", "clicks", tmp_path / "c.csv", "--data", data, "--force")[0] == 0


# --- refine: data loss and mixed rounds ---------------------------------------------------------------------


def _refine(run_cli, base: Path, data: Path, out: Path, *extra: str) -> tuple[int, str, str]:
    return run_cli(
        "refine", "--run", base, "--data", data, "--out", out, "--set", "iterations=2", "--device", "cpu", *extra
    )


def test_refine_refuses_an_out_that_holds_its_run_or_lies_inside_it(data, trained, tmp_path, run_cli):
    out = tmp_path / "refined"
    assert _refine(run_cli, trained, data, out, "--rounds", "1")[0] == 0
    before = _snapshot(out)
    code, _, err = _refine(run_cli, out / "rounds" / "round-1", data, out, "--force")
    assert code == 2 and one_line_error(err, "lie one inside the other")
    assert _snapshot(out) == before
    code, _, err = _refine(run_cli, trained, data, trained / "inside", "--force")
    assert code == 2 and one_line_error(err, "lie one inside the other") and not (trained / "inside").exists()


def test_refine_never_replaces_a_trained_run(data, trained, tmp_path, run_cli):
    target = tmp_path / "target"
    shutil.copytree(trained, target)
    before = _snapshot(target)
    for force in ([], ["--force"]):
        code, _, err = _refine(run_cli, trained, data, target, *force)
        assert code == 2 and one_line_error(err, "holds a trained run (um, seed 0)", "replaces only refined runs")
        assert _snapshot(target) == before


def test_training_never_replaces_a_refined_run(data, trained, tmp_path, run_cli):
    out = tmp_path / "refined"
    assert _refine(run_cli, trained, data, out, "--rounds", "1")[0] == 0
    before = _snapshot(out)
    code, _, err = run_cli("train", "--method", "um", "--data", data, "--out", out, "--iters", "2", *QUICK)
    assert code == 2 and one_line_error(err, "holds a refined run (um, seed 0, round 1", "replaces only trained runs")
    assert _snapshot(out) == before


def _interrupted_after_round_one(run_cli, base: Path, data: Path, out: Path, *settings: str) -> None:
    """A two-round refine stopped after its first round (as Ctrl-C would leave it)."""
    assert _refine(run_cli, base, data, out, "--rounds", "1", *settings)[0] == 0
    for name in ("checkpoint.pt", "config.json", "train_log.jsonl"):
        (out / name).unlink()


def test_a_resumed_refine_keeps_only_rounds_of_the_same_run_and_settings(data, trained, tmp_path, run_cli):
    out = tmp_path / "refined"
    _interrupted_after_round_one(run_cli, trained, data, out, "--set", "keep_ratio=0.3")
    round_one = _snapshot(out / "rounds")
    code, _, err = _refine(run_cli, trained, data, out, "--rounds", "2", "--set", "keep_ratio=0.5")
    assert code == 2 and one_line_error(err, "round 1 holds a run made otherwise", "keep_ratio")
    other = tmp_path / "other"
    assert run_cli("train", "--method", "um", "--data", data, "--out", other, "--iters", "3", *QUICK)[0] == 0
    code, _, err = _refine(run_cli, other, data, out, "--rounds", "2", "--set", "keep_ratio=0.3")
    assert code == 2 and one_line_error(err, "round 1 holds a run made otherwise", "base_run")
    assert _snapshot(out / "rounds") == round_one
    code, printed, err = _refine(run_cli, trained, data, out, "--rounds", "2", "--set", "keep_ratio=0.3")
    assert code == 0 and "round 1: finished" in printed and "round 2:" in printed, err


# --- seeds and reports: mixed results ---------------------------------------------------------------------


def test_seeds_keep_only_runs_made_as_asked_and_say_wrote_only_for_trained_ones(data, tmp_path, run_cli):
    out = tmp_path / "seeds"
    args = ["train", "--data", data, "--out", out, "--iters", "2", *QUICK]
    code, printed, err = run_cli(*args, "--method", "basnet", "--seeds", "0")
    assert code == 0, err
    code, _, err = run_cli(*args, "--method", "um", "--seeds", "0-1")
    assert code == 2 and one_line_error(err, "seed-0: seed 0 holds a run made otherwise", "method basnet (asked: um)")
    assert not (out / "seed-1").exists()
    wider = ["--lr", "1e-3", "--num-segments", "32", "--set", "hidden_dim=32", "--device", "cpu"]
    code, _, err = run_cli(
        "train", "--data", data, "--out", out, "--iters", "2", *wider, "--method", "basnet", "--seeds", "0"
    )
    assert code == 2 and one_line_error(err, "hidden_dim 16 (asked: 32)")
    code, printed, err = run_cli(*args, "--method", "basnet", "--seeds", "0-1")
    assert code == 0, err
    assert "seed 0: finished" in printed and f"wrote {out / 'seed-0'}" not in printed
    assert f"wrote {out / 'seed-1' / 'checkpoint.pt'}" in printed


def test_a_report_counts_each_run_once_and_checks_its_outputs_first(data, trained, tmp_path, run_cli):
    code, _, err = run_cli("report", trained, trained, "--data", data)
    assert code == 2 and one_line_error(err, "is given twice")
    seeds = tmp_path / "seeds"
    shutil.copytree(trained, seeds / "seed-0")
    code, _, err = run_cli("report", seeds, seeds / "seed-0", "--data", data)
    assert code == 2 and one_line_error(err, "seed-0 is given twice")
    (tmp_path / "folder").mkdir()
    code, _, err = run_cli("report", trained, "--data", data, "--out", tmp_path / "folder")
    assert code == 2 and one_line_error(err, "--out", "is a folder")
    (seeds / "seed-0" / "config.json").write_text("{broken")
    code, out, err = run_cli("report", seeds, "--data", data)
    assert code == 0 and "config.json is missing or unreadable" in err and "| 1 |" in out


# --- splits that never move -----------------------------------------------------------------------------


def test_a_new_video_never_moves_the_known_ones_between_train_and_test(tmp_path, run_cli):
    videos = tmp_path / "videos"
    for label in ("a", "b", "c"):
        (videos / label).mkdir(parents=True)
        for k in range(5):
            (videos / label / f"{label}{k}.mp4").write_bytes(f"{label}{k}".encode())
    data = tmp_path / "data"
    assert run_cli("import", "folders", videos, "--data", data, "--test-fraction", "0.4")[0] == 0
    before = {vid: e["subset"] for vid, e in load_annotations(data / "annotations.json").items()}
    (videos / "a" / "a9.mp4").write_bytes(b"new")
    code, out, err = run_cli("import", "folders", videos, "--data", data, "--test-fraction", "0.4", "--force")
    assert code == 0, err
    after = {vid: e["subset"] for vid, e in load_annotations(data / "annotations.json").items()}
    assert {vid: after[vid] for vid in before} == before and "a9" in after
    assert "kept the subsets of the 15 videos it held" in out


# --- W-TALC THUMOS14 trains with the defaults ----------------------------------------------------------


def test_a_wtalc_thumos_release_trains_and_tests_with_the_defaults(tmp_path, run_cli):
    _wtalc_release(tmp_path / "release", videos=8)
    data = tmp_path / "data"
    assert run_cli("import", "wtalc", tmp_path / "release", "--data", data)[0] == 0
    run = tmp_path / "run"
    code, _, err = run_cli("train", "--method", "um", "--data", data, "--out", run, "--iters", "2", *QUICK)
    assert code == 0, err
    meta = json.loads((run / "config.json").read_text())
    assert meta["subset"] == "validation" and meta["videos"] == 3  # THUMOS14's validation videos train
    code, out, err = run_cli("test", "--run", run, "--data", data, "--out", tmp_path / "d.json")
    assert code == 0 and "on test (5 videos" in out, err


# --- bad files: one line, never exit 3 ---------------------------------------------------------------------


def test_a_tiny_pickle_of_shared_lists_is_refused_quickly(tmp_path, run_cli):
    """Six levels of one 60-item list shared by memo reference: 60^6 leaves in a file of about a kilobyte."""
    _wtalc_release(tmp_path / "release")
    nested: object = ["Diving"] * 60
    for _ in range(5):
        nested = [nested] * 60
    path = tmp_path / "release" / "Thumos14reduced-Annotations" / "labels_all.npy"
    np.save(path, _objects([nested] * 5), allow_pickle=True)
    assert path.stat().st_size < 4096 and len(pickle.dumps(nested)) < 2048
    code, _, err = run_cli("import", "wtalc", tmp_path / "release", "--data", tmp_path / "data")
    assert code == 2 and one_line_error(err, "labels_all.npy", "is a list, not text")


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((12, 0), np.float32), "got shape (12, 0)"),
        (np.zeros(12, dtype=[("a", "f4"), ("b", "f4")]), "values, not numbers"),
        (np.array([["x", "y"]] * 12), "<U1 values, not numbers"),
    ],
)
def test_feature_files_that_are_not_numbers_are_named(tmp_path, run_cli, array, message):
    (tmp_path / "src").mkdir()
    np.save(tmp_path / "src" / "v.npy", array)
    code, _, err = run_cli(
        "import", "features", tmp_path / "src", "--data", tmp_path / "data", "--fps", "25", "--frames-per-row", "16"
    )
    assert code == 2 and one_line_error(err, "v.npy", message)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("videoname.npy", np.array(b"video_validation_0000000"), "videoname.npy: holds a single value"),
        ("duration.npy", _objects([[]] * 5), "duration of video video_validation_0000000: expected 1 finite number"),
        ("subset.npy", _objects([["validation"]] * 5), "subset.npy: a subset is a list, not text"),
        ("segments.npy", _objects([[[1.0], [2.0]]] * 5), "a segment of video video_validation_0000000: expected 2"),
    ],
)
def test_malformed_release_arrays_are_one_line_errors(tmp_path, run_cli, name, value, message):
    _wtalc_release(tmp_path / "release")
    np.save(tmp_path / "release" / "Thumos14reduced-Annotations" / name, value, allow_pickle=True)
    code, _, err = run_cli("import", "wtalc", tmp_path / "release", "--data", tmp_path / "data")
    assert code == 2 and one_line_error(err, message) and not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("video,label\nv1,Caf\xe9\n".encode("latin-1"), "labels.csv: line 2: byte 0xe9 is not UTF-8"),
        ("video,label\nv1,A\n".encode("utf-16"), "labels.csv: is UTF-16 text"),
        (b"video,label\nv1," + b"A" * 140_000 + b"\n", "labels.csv: line 2: field larger than field limit"),
    ],
)
def test_csv_files_that_are_not_plain_utf8_name_the_file_line_and_fix(tmp_path, run_cli, content, message):
    (tmp_path / "labels.csv").write_bytes(content)
    code, _, err = run_cli("import", "labels", tmp_path / "labels.csv", "--data", tmp_path / "data")
    assert code == 2 and one_line_error(err, message, "CSV UTF-8")


# --- runs of the previous version --------------------------------------------------------------------------


def _as_previous_version(run: Path) -> None:
    """Rewrite a run's checkpoint as the previous version wrote it: the add-on settings inside the network
    group, outer_region named after a paper, how it was chosen said in words only."""
    import torch

    from wtal_pipe.run import checkpoint_digest

    saved = torch.load(run / "checkpoint.pt", weights_only=True)
    record = {k: v for k, v in saved.items() if k not in ("state_dict", "digest")}
    config = record["config"]
    config["network"] |= config.pop("addons")
    config["localization"]["outer_region"] = "bas"
    record.pop("selection")
    state = saved["state_dict"]
    torch.save({**record, "state_dict": state, "digest": checkpoint_digest(record, state)}, run / "checkpoint.pt")


def test_a_run_of_the_previous_version_loads_groups_and_counts_as_finished(data, tmp_path, run_cli):
    out = tmp_path / "seeds"
    args = ["train", "--method", "um", "--data", data, "--out", out, "--iters", "2", *QUICK]
    assert run_cli(*args, "--seeds", "0-1")[0] == 0
    _as_previous_version(out / "seed-0")
    code, printed, err = run_cli(*args, "--seeds", "0-1")
    assert code == 0 and "seed 0: finished" in printed and "seed 1: finished" in printed, err
    code, printed, err = run_cli("report", out, "--data", data)
    assert code == 0 and "| um | final step | 2 |" in printed, err
    assert run_cli("test", "--run", out / "seed-0", "--data", data, "--out", tmp_path / "d.json")[0] == 0
