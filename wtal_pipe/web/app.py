"""``wtal annotate``: a page on 127.0.0.1 to click background moments on the video itself and review
a run's scores and detections beside the ground truth.

JSON API (what the page uses, and what the tests drive):
  GET    /api/videos?subset=S        ids of a subset with their click counts and whether the file is there
  GET    /api/video/<vid>            duration, ground truth, clicks; with --run: detections and scores
  POST   /api/clicks/<vid>           {"seconds": t} adds a click; DELETE with the same body removes the
                                     nearest one; POST /api/undo reverts the last change
  GET    /media/<vid>                the video (HTTP range requests; an H.264 copy when Chromium cannot
                                     play the original)
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..data.annotations import load_annotations
from ..data.dataset import Dataset
from ..errors import DataError, WtalError
from ..layout import DataLayout
from ..video.decode import probe
from ..video.discover import find_videos
from .clicks import ClickStore
from .guard import Guard, json_object, seconds_in
from .media import browser_video

if TYPE_CHECKING:
    from flask import Flask

INSTALL_HINT = "pip install 'wtal-pipe[web]'"
HOST = "127.0.0.1"  # only this machine: the page writes files and serves the videos


@dataclass
class Workspace:
    """What the page shows and edits: a dataset, its videos on disk, one click file, optionally a run."""

    data_dir: Path
    videos_dir: Path
    annotator: str | None = None
    run_dir: Path | None = None
    report: Any = print
    layout: DataLayout = field(init=False)
    database: dict = field(init=False)
    files: dict[str, Path] = field(init=False)
    clicks: ClickStore = field(init=False)
    _model_outputs: dict[str, dict] = field(init=False, default_factory=dict)
    _model_lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    _run: tuple[Any, Any] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.layout = DataLayout(Path(self.data_dir))
        self.database = load_annotations(self.layout.annotations)
        if not Path(self.videos_dir).is_dir():
            raise WtalError("no such folder", "pass the folder holding the videos with --videos", self.videos_dir)
        self.files = {video.stem: video for video in find_videos([self.videos_dir])}
        self.clicks = ClickStore(self.layout.clicks(self.annotator))
        self.clicks.read()  # a corrupt click file stops the server before anything is served
        missing = [vid for vid in self.database if vid not in self.files]
        if missing:
            self.report(
                f"warning: {len(missing)} annotated video(s) have no file in {self.videos_dir}: "
                f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
            )

    def duration(self, vid: str) -> float | None:
        """The video's length: the annotations' ``duration``, else its file's (None when neither is known)."""
        declared = self.database[vid].get("duration")
        if declared:
            return float(declared)
        return probe(self.files[vid]).duration if vid in self.files else None

    def videos(self, subset: str | None) -> list[dict[str, Any]]:
        clicks = self.clicks.read()
        return [
            {
                "id": vid,
                "subset": entry.get("subset"),
                "clicks": len(clicks.get(vid, [])),
                "has_video": vid in self.files,
            }
            for vid, entry in self.database.items()
            if subset in (None, "", entry.get("subset"))
        ]

    def video(self, vid: str) -> dict[str, Any]:
        entry = self.database[vid]
        found = {
            "id": vid,
            "subset": entry.get("subset"),
            "duration": entry.get("duration"),
            "ground_truth": [{"label": a["label"], "segment": a["segment"]} for a in entry.get("annotations", [])],
            "clicks": self.clicks.read().get(vid, []),
            "has_video": vid in self.files,
        }
        if self.run_dir is not None:
            found.update(self.model_outputs(vid, entry.get("subset")))
        return found

    def model_outputs(self, vid: str, subset: str | None) -> dict[str, Any]:
        """The run's detections and normalized per-class scores of one video, computed once on demand."""
        from ..inference.detections import DetectionTable
        from ..inference.localize import localization_signals, shown_classes
        from ..inference.pipeline import localize_rows
        from ..run import load_run

        if self.run_dir is None:
            return {}
        with self._model_lock:
            if vid not in self._model_outputs:
                if self._run is None:
                    self._run = load_run(self.run_dir, "cpu")
                model, meta = self._run
                dataset = Dataset(self.data_dir, str(subset), classes=meta.classes)
                video = next(v for v in dataset.videos if v.vid == vid)
                rows = video.load()
                result = localize_rows(model, rows, video.timing(rows.shape[0]))
                settings = model.config.localization
                classes = shown_classes(result.scores.video_scores, settings)
                cas, _, time = localization_signals(result.scores, settings, result.timing, classes)
                table = DetectionTable.of({vid: result.detections}, meta.classes)
                self._model_outputs[vid] = {
                    "detections": table.to_json()["results"][vid],
                    "scores": {
                        "times": np.round(time(np.arange(cas.shape[0])), 3).tolist(),
                        "classes": {
                            meta.classes[c]: np.round(np.nan_to_num(cas[:, k]), 4).tolist()
                            for k, c in enumerate(classes)
                        },
                    },
                }
            return self._model_outputs[vid]


def create_app(workspace: Workspace) -> Flask:
    """The page and its JSON API over one workspace (one function: the routes are closures over it)."""
    try:
        from flask import Flask, abort, jsonify, request, send_file
    except ImportError as exc:
        raise WtalError("wtal annotate needs Flask, which is not installed", INSTALL_HINT) from exc

    app = Flask(__name__)
    guard = Guard()
    guard.install(app)
    files = resources.files(__package__)
    page = files.joinpath("page.html").read_text().replace("{{TOKEN}}", guard.token)
    script = files.joinpath("page.js").read_text()

    def known(vid: str) -> str:
        if vid not in workspace.database:
            abort(404, description=f"no video {vid!r} in {workspace.layout.annotations}")
        return vid

    def seconds(vid: str) -> float:
        return seconds_in(json_object(request.get_data(cache=False)), workspace.duration(vid))

    @app.errorhandler(DataError)
    def refused(exc: DataError):
        return jsonify(error=exc.one_line()), 409

    @app.errorhandler(WtalError)
    def bad_input(exc: WtalError):  # e.g. an id that would leave its folder
        return jsonify(error=exc.one_line()), 400

    @app.errorhandler(400)
    @app.errorhandler(404)
    def not_found(exc):
        return jsonify(error=exc.description), exc.code

    @app.get("/")
    def index():
        return page

    @app.get("/page.js")
    def page_script():
        return script, 200, {"Content-Type": "text/javascript; charset=utf-8"}

    @app.get("/api/videos")
    def videos():
        return jsonify(
            videos=workspace.videos(request.args.get("subset")),
            clicks_file=str(workspace.clicks.path),
            subsets=sorted({str(e.get("subset")) for e in workspace.database.values()}),
        )

    @app.get("/api/video/<vid>")
    def video(vid: str):
        return jsonify(workspace.video(known(vid)))

    @app.post("/api/clicks/<vid>")
    def add_click(vid: str):
        return jsonify(id=vid, clicks=workspace.clicks.add(known(vid), seconds(vid)))

    @app.delete("/api/clicks/<vid>")
    def delete_click(vid: str):
        return jsonify(id=vid, clicks=workspace.clicks.delete(known(vid), seconds(vid)))

    @app.post("/api/undo")
    def undo():
        json_object(request.get_data(cache=False))
        undone = workspace.clicks.undo()
        return jsonify(id=undone[0], clicks=undone[1]) if undone else jsonify(id=None, clicks=None)

    @app.get("/media/<vid>")
    def media(vid: str):
        if known(vid) not in workspace.files:
            abort(404, description=f"no file for {vid} in {workspace.videos_dir} (put {vid}.mp4 there)")
        path, mime = browser_video(workspace.files[vid], vid, workspace.layout, workspace.report)
        return send_file(path.resolve(), mimetype=mime, conditional=True)

    return app


def serve(workspace: Workspace, port: int, ready: Any = None) -> None:
    """Serve on 127.0.0.1:``port`` until interrupted (threads: a transcode does not block the page)."""
    from werkzeug.serving import make_server

    server = make_server(HOST, port, create_app(workspace), threaded=True)
    workspace.report(f"annotating {workspace.data_dir} -> {workspace.clicks.path}: open http://{HOST}:{server.port}/")
    if ready is not None:
        ready(server)
    server.serve_forever()
