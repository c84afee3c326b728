"""What keeps the annotation server to its own page: it listens on 127.0.0.1 only, and still a page from
any other site the annotator opens can send requests to it, and a name that resolves to 127.0.0.1 (DNS
rebinding) can read from it. So every request must name this server as its host, every change must
carry the token only this server's own page holds, come from this server's origin and be a small JSON
object; every response forbids inline script and framing.
"""

from __future__ import annotations

import json
import math
import secrets
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask, Response

TOKEN_HEADER = "X-WTAL-Token"
MAX_BODY_BYTES = 4096  # a click is {"seconds": t}
LOCAL_NAMES = ("127.0.0.1", "localhost")
POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "media-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'none'"
)


class Refused(Exception):
    """A request the guard turns away: its status and a one-line reason."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


def json_object(raw: bytes) -> dict[str, Any]:
    """A request body that is a JSON object, or Refused (400) in one line: not JSON, nested too deep, or
    another type at the top."""
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, RecursionError) as exc:
        raise Refused(400, f"the body is not JSON ({exc.__class__.__name__})") from None
    if not isinstance(body, dict):
        raise Refused(400, f"the body is a JSON {type(body).__name__}, not an object")
    return body


def seconds_in(body: dict[str, Any], duration: float | None) -> float:
    """``body["seconds"]`` as a time inside the video, or Refused (400)."""
    value = body.get("seconds")
    known = f" ({duration:g} s)" if duration is not None else ""
    usage = f'expected {{"seconds": t}} with 0 <= t <= the video\'s duration{known}'
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Refused(400, usage)
    try:
        seconds = float(value)
    except OverflowError:  # an integer of hundreds of digits
        raise Refused(400, usage) from None
    if not math.isfinite(seconds) or seconds < 0 or (duration is not None and seconds > duration):
        raise Refused(400, usage)
    return seconds


class Guard:
    """One server's token and checks (install on its Flask app)."""

    def __init__(self) -> None:
        self.token = secrets.token_urlsafe(32)

    def install(self, app: Flask) -> None:
        from flask import jsonify, request

        app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES

        @app.before_request
        def check():
            try:
                self.check_host(request.host, request.environ.get("SERVER_PORT", ""))
                if request.method not in ("GET", "HEAD", "OPTIONS"):
                    self.check_change(request.headers, request.host)
            except Refused as refused:
                return jsonify(error=refused.reason), refused.status
            return None

        @app.errorhandler(413)
        def too_large(exc):
            return jsonify(error=f"the body is larger than {MAX_BODY_BYTES} bytes"), 413

        @app.errorhandler(Refused)
        def refused(exc: Refused):
            return jsonify(error=exc.reason), exc.status

        @app.after_request
        def headers(response: Response) -> Response:
            response.headers["Content-Security-Policy"] = POLICY
            response.headers["X-Content-Type-Options"] = "nosniff"
            response.headers["Referrer-Policy"] = "no-referrer"
            response.headers["Cache-Control"] = "no-store"
            return response

    @staticmethod
    def check_host(host: str, server_port: str) -> None:
        """Only ``127.0.0.1:PORT`` or ``localhost:PORT`` (the precondition of DNS rebinding is another name)."""
        name, _, port = host.rpartition(":") if host.count(":") == 1 else (host, "", "")
        if name not in LOCAL_NAMES or (port or "80") != (server_port or "80"):
            raise Refused(403, f"this server answers only 127.0.0.1:{server_port} and localhost:{server_port}")

    def check_change(self, headers: Any, host: str) -> None:
        """A change needs this server's token, its own origin (when the browser says one) and a JSON body."""
        if not secrets.compare_digest(headers.get(TOKEN_HEADER, ""), self.token):
            raise Refused(403, "a change needs the token of this server's page (reload the page)")
        origin = headers.get("Origin")
        if origin is not None and origin != f"http://{host}":
            raise Refused(403, f"changes are taken from this server's own page only, not from {origin}")
        if headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
            raise Refused(415, "changes are JSON bodies (Content-Type: application/json)")
