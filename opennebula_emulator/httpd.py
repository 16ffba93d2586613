"""HTTP plumbing shared by the three servers (standard library ``http.server``)."""

from __future__ import annotations

import json
import logging
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .faults import Faults, Injected

log = logging.getLogger("opennebula_emulator")

STATUS_TEXT = {
    200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 401: "Unauthorized",
    403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
}  # fmt: skip


@dataclass
class Request:
    method: str
    path: str
    query_string: str
    headers: Message
    body: bytes
    host: str = ""
    params: dict[str, str] = field(default_factory=dict)  # route parameters

    @property
    def content_type(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()

    def query(self) -> dict[str, str]:
        return dict(urllib.parse.parse_qsl(self.query_string, keep_blank_values=True))

    def is_form(self) -> bool:
        """Rack's ``form_data?``: form media type, or a POST without Content-Type."""
        ctype = self.content_type
        if ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            return True
        return self.method == "POST" and not self.headers.get("Content-Type")

    def rack_params(self) -> dict[str, str]:
        """Sinatra ``params``: query string, then the form body, then route parameters."""
        out = self.query()
        if self.is_form() and self.content_type != "multipart/form-data":
            out.update(
                urllib.parse.parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True)
            )
        out.update(self.params)
        return out

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


@dataclass
class Response:
    status: int
    body: bytes | str = b""
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def payload(self) -> bytes:
        return self.body.encode("utf-8") if isinstance(self.body, str) else self.body


class Route:
    """A Sinatra-style route: ``/service/:id/scale`` (``:name`` matches one path segment)."""

    def __init__(self, method: str, pattern: str, handler: Callable[..., Response]) -> None:
        self.method = method
        self.pattern = pattern
        regex = re.sub(r":(\w+)", r"(?P<\1>[^/?#]+)", pattern)
        self.regex = re.compile(f"^{regex}$")
        self.handler = handler

    @property
    def key(self) -> str:
        return f"{self.method} {self.pattern}"

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if method != self.method and not (method == "HEAD" and self.method == "GET"):
            return None
        m = self.regex.match(path)
        if not m:
            return None
        return {k: urllib.parse.unquote(v) for k, v in m.groupdict().items()}


def find_route(routes: list[Route], req: Request) -> Route | None:
    """The first route matching the request; its path parameters go to ``req.params``."""
    for route in routes:
        params = route.match(req.method, req.path)
        if params is not None:
            req.params = params
            return route
    return None


Dispatch = Callable[[Request], tuple[Response, str]]


def make_server(
    host: str,
    port: int,
    api: str,
    dispatch: Dispatch,
    control: Callable[[Request], Response | None],
    faults: Faults,
) -> ThreadingHTTPServer:
    """A threading HTTP/1.1 server that hands every request to ``dispatch``.

    ``control`` answers the emulator's own ``/_emulator/...`` endpoints (not counted); ``faults``
    replace the answer of chosen routes (:mod:`.faults`).
    """

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = api

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s %s", api, format % args)

        def send_response(self, code: int, message: str | None = None) -> None:
            # like the real servers: no "Server: BaseHTTP/..." header
            self.log_request(code)
            self.send_response_only(code, message or STATUS_TEXT.get(code))
            self.send_header("Date", self.date_time_string())

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length > 0 else b""
            path, _, query = self.path.partition("?")
            req = Request(
                self.command, path, query, self.headers, body, self.headers.get("Host", "")
            )
            resp: Response | None = None
            if path.startswith("/_emulator/"):
                resp = control(req)
            if resp is None:
                fault = None
                try:
                    resp, key = dispatch(req)
                    fault = faults.take(api, key, after=True)
                except Injected as injected:
                    fault = injected.fault
                except Exception:  # an emulator bug must not look like a hang
                    log.exception("%s: unhandled error for %s %s", api, self.command, self.path)
                    resp = Response(500, "emulator internal error", "text/plain")
                if fault is not None:
                    log.info("%s: fault %s for %s %s", api, fault.kind, self.command, self.path)
                    if fault.kind == "drop":
                        self.close_connection = True
                        return
                    resp = proxy_error(int(fault.kind))
            self._write(resp)

        def _write(self, resp: Response) -> None:
            payload = resp.payload()
            self.send_response(resp.status)
            no_body = resp.status in (204, 304) or 100 <= resp.status < 200
            if not no_body and resp.content_type:
                self.send_header("Content-Type", resp.content_type)
            for name, value in resp.headers.items():
                self.send_header(name, value)
            if no_body:
                payload = b""
            else:
                self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD" and payload:
                self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _handle

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def proxy_error(status: int) -> Response:
    """The error page of a reverse proxy in front of the API (nginx's)."""
    title = f"{status} {STATUS_TEXT[status]}"
    page = (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1>"
        "</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )
    return Response(status, page, "text/html")


def json_response(obj: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(obj, indent=1), "application/json")
