"""`wtal annotate`: the click API (Flask's test client), the media route, and the page in a real headless
Chromium when one is installed."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from wtal_pipe.errors import DataError
from wtal_pipe.video.decode import probe

flask = pytest.importorskip("flask", reason="the annotation page needs wtal-pipe[web]")

from wtal_pipe.web.app import Workspace, create_app  # noqa: E402


@pytest.fixture
def workspace_dirs(make_clip, tmp_path):
    """annotations for a.mp4 (train), b.avi (train, MJPEG: the browser cannot play it), gone (train, no
    file) and t (test)."""
    make_clip("videos/a.mp4", seconds=2.0)
    make_clip("videos/b.avi", seconds=1.0, codec="mjpeg")
    make_clip("videos/t.mp4", seconds=1.0)
    database = {
        "a": {"subset": "train", "duration": 2.0, "annotations": [{"label": "jump", "segment": [0.4, 1.2]}]},
        "b": {"subset": "train", "duration": 1.0, "annotations": [{"label": "jump", "segment": [0.1, 0.5]}]},
        "gone": {"subset": "train", "duration": 5.0, "annotations": [{"label": "jump", "segment": [1.0, 2.0]}]},
        "t": {"subset": "test", "duration": 1.0, "annotations": [{"label": "jump", "segment": [0.2, 0.6]}]},
    }
    data = tmp_path / "data"
    data.mkdir()
    (data / "annotations.json").write_text(json.dumps({"database": database}))
    return data, tmp_path / "videos"


def page_client(workspace: Workspace):
    """A test client that sends what the page sends: its token with every change."""
    client = create_app(workspace).test_client()
    token = client.get("/").get_data(as_text=True).split('name="wtal-token" content="')[1].split('"')[0]
    client.environ_base["HTTP_X_WTAL_TOKEN"] = token
    return client


@pytest.fixture
def api(workspace_dirs):
    data, videos = workspace_dirs
    reports: list[str] = []
    client = page_client(Workspace(data, videos, report=reports.append))
    client.reports = reports  # type: ignore[attr-defined]
    return client


def clicks_on_disk(data: Path, name: str = "clicks.json") -> dict:
    return json.loads((data / name).read_text())


def test_lists_a_subset_with_progress_and_missing_files(api, workspace_dirs):
    listing = api.get("/api/videos?subset=train").get_json()
    assert [(v["id"], v["clicks"], v["has_video"]) for v in listing["videos"]] == [
        ("a", 0, True),
        ("b", 0, True),
        ("gone", 0, False),
    ]
    assert listing["subsets"] == ["test", "train"]
    assert any("1 annotated video(s) have no file" in r and "gone" in r for r in api.reports)
    video = api.get("/api/video/a").get_json()
    assert video["ground_truth"] == [{"label": "jump", "segment": [0.4, 1.2]}] and video["clicks"] == []
    assert api.get("/media/gone").status_code == 404 and "put gone.mp4" in api.get("/media/gone").get_json()["error"]
    assert api.get("/api/video/nope").status_code == 404


def test_add_delete_undo_are_saved_at_once(api, workspace_dirs):
    data = workspace_dirs[0]
    assert api.post("/api/clicks/a", json={"seconds": 1.5}).get_json()["clicks"] == [1.5]
    api.post("/api/clicks/a", json={"seconds": 0.25})
    api.post("/api/clicks/b", json={"seconds": 0.7})
    assert clicks_on_disk(data) == {"a": [0.25, 1.5], "b": [0.7]}
    assert api.delete("/api/clicks/a", json={"seconds": 1.4}).get_json()["clicks"] == [0.25]  # the nearest one
    assert api.delete("/api/clicks/a", json={"seconds": 1.9}).get_json()["clicks"] == [0.25]  # none that close
    assert api.post("/api/undo", json={}).get_json() == {"id": "a", "clicks": [0.25, 1.5]}  # the delete, reverted
    assert api.post("/api/undo", json={}).get_json() == {"id": "b", "clicks": []}
    assert clicks_on_disk(data) == {"a": [0.25, 1.5]}
    assert api.get("/api/videos?subset=train").get_json()["videos"][0]["clicks"] == 2
    for bad in ({"seconds": -1}, {"seconds": "x"}, {}):
        assert api.post("/api/clicks/a", json=bad).status_code == 400
    assert api.post("/api/clicks/nope", json={"seconds": 1}).status_code == 404
    assert clicks_on_disk(data) == {"a": [0.25, 1.5]}


def test_concurrent_tabs_and_servers_never_lose_a_click(api, workspace_dirs):
    data, videos = workspace_dirs
    other_server = page_client(Workspace(data, videos, report=lambda _: None))

    def tab(client, offset: float) -> None:
        for k in range(40):
            assert client.post("/api/clicks/a", json={"seconds": offset + k * 0.01}).status_code == 200

    tabs = [threading.Thread(target=tab, args=(c, o)) for c, o in ((api, 0.0), (api, 0.5), (other_server, 1.0))]
    for t in tabs:
        t.start()
    for t in tabs:
        t.join()
    assert len(clicks_on_disk(data)["a"]) == 120


def test_a_corrupt_click_file_is_kept_backed_up_and_reported(api, workspace_dirs):
    data, videos = workspace_dirs
    (data / "clicks.json").write_text('{"a": [1.0, ')
    response = api.post("/api/clicks/a", json={"seconds": 0.5})
    assert response.status_code == 409 and "not a clicks file" in response.get_json()["error"]
    assert (data / "clicks.json").read_text() == '{"a": [1.0, '  # never overwritten
    backups = list(data.glob("clicks.json.corrupt-*"))
    assert len(backups) == 1 and backups[0].read_text() == '{"a": [1.0, '
    with pytest.raises(DataError, match="not a clicks file"):
        Workspace(data, videos)  # and a new server refuses to start on it


def test_ids_and_annotator_names_cannot_leave_their_folders(workspace_dirs, make_clip, tmp_path, run_cli):
    data, videos = workspace_dirs
    database = json.loads((data / "annotations.json").read_text())["database"]
    database[".."] = database["a"]
    (data / "annotations.json").write_text(json.dumps({"database": database}))
    make_clip("videos/...mp4", seconds=1.0, codec="mjpeg")  # stem "..": its browser copy would go above cache/
    client = create_app(Workspace(data, videos, report=lambda _: None)).test_client()
    response = client.get("/media/..")
    assert response.status_code in (400, 409) and "'..'" in response.get_json()["error"]
    assert not list(data.rglob("browser-*.mp4"))
    assert not list(tmp_path.glob("*.mp4"))
    code, _, err = run_cli("annotate", "--data", data, "--videos", videos, "--annotator", "../evil")
    assert code == 2 and "annotator name" in err and err.count("\n") == 1
    assert not (tmp_path / "evil.json").exists() and not list(tmp_path.glob("clicks.*"))


def test_bad_folders_are_one_line_errors(workspace_dirs, tmp_path, run_cli):
    data, videos = workspace_dirs
    code, _, err = run_cli("annotate", "--data", tmp_path / "empty", "--videos", videos)
    assert code == 2 and "annotation file not found" in err and err.count("\n") == 1
    code, _, err = run_cli("annotate", "--data", data, "--videos", tmp_path / "nowhere")
    assert code == 2 and "nowhere: no such folder" in err


def test_media_supports_ranges_and_transcodes_what_chromium_cannot_play(api, workspace_dirs):
    data, videos = workspace_dirs
    whole = api.get("/media/a")
    assert whole.status_code == 200 and whole.mimetype == "video/mp4"
    assert whole.data == (videos / "a.mp4").read_bytes()
    part = api.get("/media/a", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.data == (videos / "a.mp4").read_bytes()[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{(videos / 'a.mp4').stat().st_size}"
    proxy = api.get("/media/b")
    assert proxy.status_code == 200 and proxy.mimetype == "video/mp4"
    copies = list((data / "cache" / "b").glob("browser-*.mp4"))
    assert len(copies) == 1 and probe(copies[0]).codec == "h264"
    assert abs(probe(copies[0]).duration - 1.0) < 0.1
    assert any("making an H.264 copy" in r for r in api.reports)
    api.get("/media/b")
    assert sum("making an H.264 copy" in r for r in api.reports) == 1  # made once


def test_clicks_from_the_page_train_backtal_and_its_detections_show(workspace_dirs, run_cli):
    """The new user's loop: click on the page, train BackTAL on those clicks, review its detections there."""
    data, videos = workspace_dirs
    small = ["--short-side", "64", "--crop", "64", "--flow", "dis", "--workers", "1", "--device", "cpu"]
    shutil.move(videos / "b.avi", data.parent / "b.avi")  # the others suffice
    assert run_cli("extract", videos, "--data", data, *small)[0] == 0
    database = json.loads((data / "annotations.json").read_text())["database"]
    database = {vid: entry for vid, entry in database.items() if vid in ("a", "t")}
    (data / "annotations.json").write_text(json.dumps({"database": database}))
    page = page_client(Workspace(data, videos, annotator="ann1", report=lambda _: None))
    page.post("/api/clicks/a", json={"seconds": 1.7})
    assert clicks_on_disk(data, "clicks.ann1.json") == {"a": [1.7]} and not (data / "clicks.json").exists()
    quick = ["--iters", "2", "--num-segments", "8", "--set", "hidden_dim=8", "--device", "cpu"]
    code, _, err = run_cli("train", "--method", "backtal", "--data", data, "--out", data.parent / "run", *quick)
    assert code == 2 and "clicks.json" in err  # no default click file: the annotator's must be named
    code, _, _ = run_cli(
        "train", "--method", "backtal", "--data", data, "--out", data.parent / "run", "--annotator", "ann1", *quick
    )
    assert code == 0
    review = create_app(Workspace(data, videos, annotator="ann1", run_dir=data.parent / "run", report=lambda _: None))
    shown = review.test_client().get("/api/video/t").get_json()
    scores = shown["scores"]
    assert shown["clicks"] == [] and "detections" in shown
    assert len(scores["times"]) > 1 and all(len(v) == len(scores["times"]) for v in scores["classes"].values())
    assert set(scores["classes"]) <= {"jump"} and np.all(np.diff(scores["times"]) > 0)


# --- a real browser --------------------------------------------------------------------------------------


def chromium_driver():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver_binary = shutil.which("chromedriver")
    if not binary or not driver_binary:
        missing = "no Chromium and chromedriver installed (Debian: apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):  # CI must run the browser tests: a skip there would pass unseen
            pytest.fail(missing)
        pytest.skip(missing)
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--autoplay-policy=no-user-gesture-required",
    ):
        options.add_argument(flag)
    options.add_argument("--window-size=1280,900")
    from selenium.webdriver.chrome.service import Service

    return webdriver.Chrome(service=Service(driver_binary), options=options)


def test_a_key_press_in_chromium_saves_a_click_at_the_playing_time(make_clip, workspace_dirs, tmp_path):
    from werkzeug.serving import make_server

    data, videos = workspace_dirs
    make_clip("videos/a.mp4", seconds=6.0, size=(320, 240))
    database = json.loads((data / "annotations.json").read_text())["database"]
    database["a"]["duration"] = 6.0
    (data / "annotations.json").write_text(json.dumps({"database": database}))
    driver = chromium_driver()
    server = make_server("127.0.0.1", 0, create_app(Workspace(data, videos, report=lambda _: None)), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        driver.get(f"http://127.0.0.1:{server.port}/")
        wait = WebDriverWait(driver, 30)
        wait.until(lambda d: d.execute_script("return document.getElementById('player').readyState >= 3"))
        driver.execute_script("document.getElementById('player').play()")
        wait.until(lambda d: d.execute_script("return document.getElementById('player').currentTime") > 1.5)
        # the known time: where playback is when the key event reaches the page (a capturing listener
        # of the test's own, so the page's handler is what is under test)
        driver.execute_script(
            "window.addEventListener('keydown', () => { window.pressedAt = "
            "document.getElementById('player').currentTime; }, {capture: true});"
        )
        driver.find_element(By.TAG_NAME, "body").send_keys("b")
        wait.until(lambda d: (data / "clicks.json").exists())
        pressed_at = driver.execute_script("return window.pressedAt")
        assert not driver.execute_script("return document.getElementById('player').paused")  # it was playing
        driver.execute_script("document.getElementById('player').pause()")
        (click,) = clicks_on_disk(data)["a"]
        assert pressed_at > 1.5 and abs(click - pressed_at) <= 0.1
        wait.until(lambda d: "saved" in d.find_element(By.ID, "status").text)
        shots = Path(__file__).parent / "artifacts"
        shots.mkdir(exist_ok=True)
        driver.save_screenshot(str(shots / "annotate.png"))
    finally:
        driver.quit()
        server.shutdown()


HOSTILE = "x</title><foreignObject><img src=/nope onerror=\"fetch('/api/undo',{method:'POST'})\">"


def test_chromium_shows_a_hostile_label_as_text_and_refuses_a_cross_site_change(workspace_dirs, tmp_path):
    """A label from a stranger's annotation file is text on the page (it runs nothing), and a page of another
    origin cannot change the clicks (the request reaches the server and is refused)."""
    import http.server

    from werkzeug.serving import make_server

    data, videos = workspace_dirs
    database = json.loads((data / "annotations.json").read_text())["database"]
    database["a"]["annotations"][0]["label"] = HOSTILE
    (data / "annotations.json").write_text(json.dumps({"database": database}))
    (data / "clicks.json").write_text(json.dumps({"a": [0.5]}))
    seen: list[str] = []
    app = create_app(Workspace(data, videos, report=lambda _: None))
    app.before_request_funcs.setdefault(None, []).insert(  # first: before the guard answers
        0, lambda: seen.append(flask.request.method + " " + flask.request.path)
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    evil_dir = tmp_path / "evil"
    evil_dir.mkdir()
    (evil_dir / "index.html").write_text(
        f"<script>fetch('http://127.0.0.1:{server.port}/api/undo', {{method: 'POST', mode: 'no-cors', "
        "headers: {'Content-Type': 'text/plain'}, body: ''});</script>"
    )
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(evil_dir), **k)  # noqa: E731
    evil = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    driver = chromium_driver()
    try:
        from selenium.webdriver.support.ui import WebDriverWait

        driver.get(f"http://127.0.0.1:{server.port}/")
        wait = WebDriverWait(driver, 30)
        wait.until(lambda d: d.execute_script("return document.querySelectorAll('#timeline rect title').length") > 0)
        titles = driver.execute_script(
            "return [...document.querySelectorAll('#timeline title')].map(t => t.textContent)"
        )
        assert HOSTILE in titles  # shown as the text it is
        assert not driver.execute_script("return document.querySelector('#timeline foreignObject, #timeline img')")
        assert "POST /api/undo" not in seen and json.loads((data / "clicks.json").read_text()) == {"a": [0.5]}
        driver.get(f"http://127.0.0.1:{evil.server_port}/index.html")
        wait.until(lambda d: "POST /api/undo" in seen)  # it reached the server, which refused it
        assert json.loads((data / "clicks.json").read_text()) == {"a": [0.5]}
    finally:
        driver.quit()
        server.shutdown()
        evil.shutdown()
