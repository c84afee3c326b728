"""Hostile input on the newer surfaces: the annotation page and its API, cluster flow parts, imported
checkpoints and runs, click files, settings that can never detect anything, and one-line errors where a
traceback used to be. Each test names the review item it answers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from wtal_pipe.features.config import ExtractionConfig
from wtal_pipe.video.decode import DecodeConfig
from wtal_pipe.video.flow_engines import FlowConfig

from .planted import write_planted_dataset
from .test_bad_input import QUICK, one_line_error

flask = pytest.importorskip("flask", reason="the annotation page needs wtal-pipe[web]")

from wtal_pipe.web.app import Workspace, create_app  # noqa: E402
from wtal_pipe.web.guard import TOKEN_HEADER  # noqa: E402

HOSTILE = "x</title><foreignObject><img src=/nope onerror=\"fetch('/api/undo',{method:'POST'})\">"


@pytest.fixture
def page(make_clip, tmp_path):
    """A server over two videos (8 s and 2 s); one ground-truth label is hostile markup."""
    make_clip("videos/a.mp4", seconds=2.0)
    database = {
        "a": {"subset": "train", "duration": 8.0, "annotations": [{"label": HOSTILE, "segment": [0.4, 1.2]}]},
        "b": {"subset": "train", "annotations": [{"label": "jump", "segment": [0.1, 0.5]}]},
    }
    data = tmp_path / "data"
    data.mkdir()
    (data / "annotations.json").write_text(json.dumps({"database": database}))
    app = create_app(Workspace(data, tmp_path / "videos", report=lambda _: None))
    client = app.test_client()
    token = client.get("/").get_data(as_text=True).split('name="wtal-token" content="')[1].split('"')[0]
    client.token = token  # type: ignore[attr-defined]
    client.data = data  # type: ignore[attr-defined]
    return client


def change(page, method: str, url: str, body=None, **headers):
    headers = {TOKEN_HEADER: page.token, "Content-Type": "application/json", **headers}
    data = json.dumps(body if body is not None else {}) if not isinstance(body, (str, bytes)) else body
    return page.open(url, method=method, data=data, headers=headers)


# 1. stored XSS -----------------------------------------------------------------------------------------


def test_the_page_runs_no_inline_script_and_builds_no_markup_from_data(page):
    response = page.get("/")
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
    html = response.get_data(as_text=True)
    assert '<script src="/page.js"></script>' in html and "<script>" not in html
    script = page.get("/page.js").get_data(as_text=True)
    assert "innerHTML" not in script and "textContent" in script and "outerHTML" not in script
    assert page.get("/api/video/a").get_json()["ground_truth"][0]["label"] == HOSTILE  # data stays data


# 2. CSRF -------------------------------------------------------------------------------------------------


def test_a_change_needs_the_pages_token_its_origin_and_json(page):
    assert change(page, "POST", "/api/clicks/a", {"seconds": 1.0}).status_code == 200
    cross_site = page.post(
        "/api/undo", data="", headers={"Origin": "http://evil.example", "Content-Type": "text/plain"}
    )
    assert cross_site.status_code == 403 and "token" in cross_site.get_json()["error"]
    assert change(page, "POST", "/api/undo", Origin="http://evil.example").status_code == 403
    assert change(page, "POST", "/api/undo", **{"Content-Type": "text/plain"}).status_code == 415
    assert change(page, "POST", "/api/undo", **{TOKEN_HEADER: "guess"}).status_code == 403
    assert json.loads((page.data / "clicks.json").read_text()) == {"a": [1.0]}  # nothing undone so far
    assert change(page, "POST", "/api/undo", Origin="http://localhost").get_json() == {"id": "a", "clicks": []}


# 3. DNS rebinding ----------------------------------------------------------------------------------------


def test_only_the_servers_own_host_names_are_answered(page):
    assert page.get("/api/videos", headers={"Host": "attacker.example"}).status_code == 403
    assert page.get("/api/videos", headers={"Host": "attacker.example:80"}).status_code == 403
    assert page.get("/api/videos", headers={"Host": "127.0.0.1:80"}).status_code == 200
    assert page.get("/api/videos", headers={"Host": "localhost:9999"}).status_code == 403


# 6, 7, 10. click values, undo, bodies -------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"seconds": True},
        {"seconds": 99999},
        {"seconds": 1e308},
        {"seconds": "3"},
        {"seconds": 10**400},
        {"seconds": -0.1},
    ],
)
def test_only_times_inside_the_video_are_clicks(page, body):
    response = change(page, "POST", "/api/clicks/a", body)
    assert response.status_code == 400 and "0 <= t <= the video's duration (8 s)" in response.get_json()["error"]
    assert not (page.data / "clicks.json").exists()


@pytest.mark.parametrize(
    ("raw", "status", "message"),
    [
        ("[1, 2]", 400, "a JSON list, not an object"),
        ("[" * 100_000 + "]" * 100_000, 413, "larger than 4096 bytes"),
        ('{"seconds": ' + "9" * 400 + "}", 400, "0 <= t"),
        ("{not json", 400, "not JSON"),
        ("[" * 2000 + "]" * 2000, 400, "not JSON (RecursionError)"),
    ],
)
def test_bodies_that_are_not_small_json_objects_are_one_line_errors(page, raw, status, message):
    response = change(page, "POST", "/api/clicks/a", raw)
    assert response.status_code == status and message in response.get_json()["error"]
    assert "\n" not in response.get_json()["error"]


def test_undo_after_a_refused_change_reverts_the_last_saved_one(page):
    clicks = page.data / "clicks.json"
    assert change(page, "POST", "/api/clicks/a", {"seconds": 1.0}).status_code == 200
    good = clicks.read_text()
    clicks.write_text('{"a": [1.0, ')  # someone breaks the file: the next add is refused
    assert change(page, "POST", "/api/clicks/a", {"seconds": 1.0}).status_code == 409
    clicks.write_text(good)  # and repairs it
    assert change(page, "POST", "/api/undo").get_json() == {"id": "a", "clicks": []}  # the saved add


@pytest.mark.parametrize(
    ("clicks", "message"),
    [
        ({"train_0000": "12"}, "video train_0000: clicks are a str, not a list of seconds"),
        ({"train_0000": [True, 2]}, "video train_0000: click True is not a finite number"),
        ({"train_0000": [1.0, [2]]}, "video train_0000: click [2] is not a finite number"),
        ({"train_0000": [1.0, 99999]}, "video train_0000: click(s) at 99999 s lie outside the video"),
    ],
)
def test_training_reads_clicks_strictly(tmp_path, run_cli, clicks, message):
    data = tmp_path / "data"
    write_planted_dataset(data, num_classes=2, feature_dim=8, n_train=3, n_test=1, rows=(30, 40))
    (data / "clicks.json").write_text(json.dumps(clicks))
    code, _, err = run_cli("train", "--method", "backtal", "--data", data, "--out", tmp_path / "run", *QUICK)
    assert code == 2 and one_line_error(err, "clicks.json", message), err


def test_the_annotate_server_refuses_a_click_file_of_strings(page):
    (page.data / "clicks.json").write_text('{"a": "12"}')
    response = change(page, "POST", "/api/clicks/a", {"seconds": 1.0})
    assert response.status_code == 409 and "video a: clicks are a str" in response.get_json()["error"]
    assert (page.data / "clicks.json").read_text() == '{"a": "12"}'


# 4. cluster flow parts ------------------------------------------------------------------------------------


def test_flow_parts_are_checked_recomputed_when_damaged_and_swept_when_assembled(make_clip, tmp_path):
    from wtal_pipe.features.plan import FeatureIdentity, VideoPlan
    from wtal_pipe.features.stages import assemble_flow, ensure_flow_part, ensure_frames

    clip = make_clip("v.mp4", seconds=2.0)
    extraction = ExtractionConfig(DecodeConfig(short_side=32, crop=32), FlowConfig("dis"))
    plan = VideoPlan.build(clip, tmp_path / "data", extraction, FeatureIdentity("fp32", "r", "r"))
    frames, _ = ensure_frames(plan)
    ranges = [(0, 25), (25, 50)]
    parts = [ensure_flow_part(plan, frames, a, b) for a, b in ranges]
    good = [np.load(p) for p in parts]
    damaged = np.load(parts[0])
    damaged[3] += 7
    np.save(parts[0], damaged)  # a part a crashed run left, then damaged: recomputed, not trusted
    parts[1].write_bytes(parts[1].read_bytes()[:200])  # truncated: recomputed too
    stale = plan.flow_part(0, 10).data
    stale.write_bytes(b"left by another run's split")
    again = [ensure_flow_part(plan, frames, a, b) for a, b in ranges]
    assert all(np.array_equal(np.load(p), g) for p, g in zip(again, good, strict=True))
    assembled = assemble_flow(plan, frames, ranges)
    assert np.array_equal(np.load(assembled), np.concatenate(good))
    assert not plan.cache.flow_parts(plan.keys.flow) and not list(plan.cache.folder.glob(f"flow-{plan.keys.flow}.*-*"))


# 5, 11. imported checkpoints and run folders --------------------------------------------------------------


@pytest.fixture
def official_um(tmp_path):
    from . import official

    state = official.seeded_state(official.layout("um", 8, 2, hidden=16), 0, 2)
    torch.save(state, tmp_path / "um.pkl")
    data = tmp_path / "data"
    write_planted_dataset(data, num_classes=2, feature_dim=8, n_train=2, n_test=2, rows=(30, 40))
    return tmp_path / "um.pkl", data, state


def _import(run_cli, checkpoint, data, out, *extra):
    return run_cli("import", "checkpoint", checkpoint, "--method", "um", "--data", data, "--out", out, *extra)


def test_a_checkpoint_with_a_nan_weight_is_refused(official_um, tmp_path, run_cli):
    path, data, state = official_um
    state["cas_module.conv.0.bias"][3] = float("nan")
    torch.save(state, path)
    code, _, err = _import(run_cli, path, data, tmp_path / "run")
    assert (
        code == 2
        and one_line_error(err, "um.pkl", "cas_module.conv.0.bias holds NaN")
        and not (tmp_path / "run").exists()
    )


def test_an_existing_run_is_replaced_only_with_force_and_whole(official_um, tmp_path, run_cli):
    path, data, _ = official_um
    run = tmp_path / "run"
    assert _import(run_cli, path, data, run)[0] == 0
    (run / "train_log.jsonl").write_text("from an older run\n")
    code, _, err = _import(run_cli, path, data, run)
    assert code == 2 and one_line_error(err, "already holds an imported run (um)", "--force")
    code, _, err = _import(run_cli, path, data, run, "--force")
    assert code == 0 and "replaced an imported run (um) in" in err and not (run / "train_log.jsonl").exists()


def test_a_symlinked_run_folder_stays_a_link_and_its_target_is_replaced_whole(official_um, tmp_path, run_cli):
    path, data, _ = official_um
    target = tmp_path / "real_run"
    assert _import(run_cli, path, data, target)[0] == 0
    (target / "stale.txt").write_text("x")
    link = tmp_path / "link"
    link.symlink_to(target)
    assert _import(run_cli, path, data, link, "--force")[0] == 0
    assert link.is_symlink() and (link / "checkpoint.pt").exists() and not (target / "stale.txt").exists()


def test_a_folder_that_is_not_a_run_is_never_replaced(official_um, tmp_path, run_cli, monkeypatch):
    path, data, _ = official_um
    monkeypatch.chdir(tmp_path)
    code, _, err = _import(run_cli, path, data, ".", "--force")
    assert code == 2 and one_line_error(err, "holds something other than a run") and (tmp_path / "um.pkl").exists()
    code, _, err = run_cli("train", "--method", "um", "--data", data, "--out", tmp_path, *QUICK)
    assert code == 2 and one_line_error(err, "holds something other than a run")


def test_stray_feature_files_are_named(official_um, tmp_path, run_cli):
    path, data, _ = official_um
    for name in sorted(p.name for p in (data / "features").glob("*.npy")):
        (data / "features" / name).unlink()
    np.save(data / "features" / "a_objects.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    code, _, err = _import(run_cli, path, data, tmp_path / "run")
    assert code == 2 and one_line_error(err, "a_objects.npy", "unreadable features")


def test_an_exploding_learning_rate_is_a_one_line_error(tmp_path, run_cli):
    data = tmp_path / "data"
    write_planted_dataset(data, num_classes=2, feature_dim=8, n_train=3, n_test=1, rows=(30, 40))
    quick = [a for a in QUICK if a not in ("--lr", "1e-3")]
    code, _, err = run_cli(
        "train", "--method", "basnet", "--data", data, "--out", tmp_path / "r", "--lr", "1e30", *quick
    )
    assert code == 2 and one_line_error(err, "became NaN or inf at step", "lower --lr")


# 8. a refused import changes nothing ------------------------------------------------------------------------


def test_a_refused_bas_import_writes_nothing(tmp_path, run_cli):
    source = tmp_path / "bas"
    database = {}
    for vid in ("good", "bad"):
        for stream in ("rgb", "flow"):
            (source / "features" / "test" / stream).mkdir(parents=True, exist_ok=True)
            if vid == "good" or stream == "rgb":
                np.save(source / "features" / "test" / stream / f"{vid}.npy", np.zeros((5, 4), np.float32))
        database[vid] = {"subset": "test", "annotations": [{"label": "a", "segment": ["0", "1"]}]}
    (source / "gt.json").write_text(json.dumps({"database": database}))
    code, _, err = run_cli("import", "bas-thumos", source, "--data", tmp_path / "data")
    assert code == 2 and one_line_error(err, "bad.npy", "features file missing")
    assert not (tmp_path / "data").exists()


# 9. settings that can never detect anything, an empty shard --------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "message"),
    [("cas_thresholds=[]", "needs at least one value"), ("class_threshold=5", "class_threshold=5 must be below 1")],
)
def test_settings_that_never_detect_are_refused(official_um, tmp_path, run_cli, setting, message):
    path, data, _ = official_um
    assert _import(run_cli, path, data, tmp_path / "run")[0] == 0
    code, _, err = run_cli("test", "--run", tmp_path / "run", "--data", data, "--set", setting)
    assert code == 2 and one_line_error(err, message)


def test_an_empty_shard_is_refused(make_clip, run_cli, tmp_path):
    make_clip("v.mp4", seconds=1.0)
    code, _, err = run_cli("extract", tmp_path / "v.mp4", "--data", tmp_path / "d", "--shard", "")
    assert code == 2 and one_line_error(err, "--shard '' is not i/N")


# 11. bench ------------------------------------------------------------------------------------------------


def test_bench_checks_where_it_writes_before_measuring(tmp_path, run_cli):
    (tmp_path / "report").mkdir()
    code, out, err = run_cli("bench", "decode", "--quick", "--device", "cpu", "--out", tmp_path / "report")
    assert code == 2 and one_line_error(err, "cannot write the report there") and "Decode" not in out
    (tmp_path / "gt.json").write_text('{"database": [1, 2]}')
    code, _, err = run_cli("bench", "localize", "--quick", "--device", "cpu", "--gt", tmp_path / "gt.json")
    assert code == 2 and one_line_error(err, "gt.json")


# 12. tvl1-torch without a GPU ----------------------------------------------------------------------------------


def test_tvl1_torch_on_a_cpu_is_warned_about(make_clip, run_cli, tmp_path, monkeypatch):
    import wtal_pipe.cli.extract as extract

    make_clip("v.mp4", seconds=1.0)
    monkeypatch.setattr(extract, "run_extraction", lambda videos, job, model, **kw: [])  # the warning is enough
    code, _, err = run_cli(
        "extract", tmp_path / "v.mp4", "--data", tmp_path / "d", "--flow", "tvl1-torch", "--device", "cpu"
    )
    assert code == 0 and "runs on the CPU here" in err and "--flow tvl1" in err
