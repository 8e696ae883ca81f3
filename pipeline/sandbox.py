"""A local stand-in for the Kaggle API, bound to 127.0.0.1, for the demo and the tests.

It speaks the protocol the official client uses (`POST /v1/<service>/<Rpc>` with camelCase JSON;
a download answers 302 to the archive's URL) and serves every folder it is given that holds a
competition archive in Kaggle's layout (`<slug>.zip`, optionally beside a hidden `solution.csv`).
Point the pipeline at it with PIPELINE_KAGGLE_ENDPOINT=http://127.0.0.1:<port>.
"""

from __future__ import annotations

import base64
import email.utils
import json
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SANDBOX_USERNAME = "sandbox"
SANDBOX_KEY = "sandbox-key"  # not a secret: the sandbox accepts only this pair
_RPC = re.compile(r"^(?:/api)?/v1/(?P<service>[\w.]+)/(?P<rpc>\w+)$")
_CHUNK = 1 << 20


@dataclass
class SandboxState:
    """What the sandbox serves and how it misbehaves on purpose."""

    archives: dict[str, Path]  # slug -> <slug>.zip
    username: str = SANDBOX_USERNAME
    key: str = SANDBOX_KEY
    rules_not_accepted: set[str] = field(default_factory=set)
    fail_next: list[int] = field(default_factory=list)  # statuses for the next RPCs, one each
    calls: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def find_archives(folders: Iterable[Path]) -> dict[str, Path]:
    """Map each competition slug to its archive, from folders holding `<slug>.zip`."""
    archives: dict[str, Path] = {}
    for folder in folders:
        for archive in sorted(Path(folder).glob("*.zip")):
            archives[archive.stem] = archive.resolve()
    return archives


class _Handler(BaseHTTPRequestHandler):
    server_version = "KaggleSandbox/1.0"
    state: SandboxState  # set on the subclass made per server

    def log_message(self, format: str, *args: object) -> None:  # quiet: tests and demo print enough
        return

    def _json(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"code": status, "message": message})

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        if header.startswith("Basic "):
            user, _, key = base64.b64decode(header[6:]).decode(errors="replace").partition(":")
            return (user, key) == (self.state.username, self.state.key)
        return False

    def do_POST(self) -> None:
        path = self.path.split("?")[0]
        if "://" in path:  # absolute-form through a proxy
            path = "/" + path.split("://", 1)[1].split("/", 1)[1]
        match = _RPC.match(path)
        length = int(self.headers.get("Content-Length") or 0)
        request = json.loads(self.rfile.read(length) or b"{}")
        if match is None:
            return self._error(404, f"no such endpoint {path}")
        rpc = match.group("rpc")
        with self.state.lock:
            self.state.calls.append(rpc)
            injected = self.state.fail_next.pop(0) if self.state.fail_next else None
        if injected is not None:
            return self._error(injected, f"injected failure {injected}")
        if rpc == "IntrospectToken":  # the client checks access tokens first; the sandbox knows none
            return self._json(200, {"active": False})
        if not self._authorized():
            return self._error(401, "Unauthenticated: bad username or key")
        handler = getattr(self, f"rpc_{rpc}", None)
        if handler is None:
            return self._error(404, f"the sandbox does not implement {match.group('service')}/{rpc}")
        return handler(request)

    def _competition(self, request: dict) -> str | None:
        slug = request.get("competitionName", "")
        if slug not in self.state.archives:
            self._error(404, f"Competition {slug!r} not found")
            return None
        if slug in self.state.rules_not_accepted:
            self._error(403, "You must accept this competition's rules before you can download files")
            return None
        return slug

    def rpc_DownloadDataFiles(self, request: dict) -> None:
        slug = self._competition(request)
        if slug is None:
            return
        self.send_response(HTTPStatus.FOUND)
        self.send_header("Location", f"http://{self.headers.get('Host')}/files/{slug}.zip")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        match = re.match(r"^/files/(?P<slug>[\w.-]+)\.zip$", self.path.split("?")[0])
        archive = self.state.archives.get(match.group("slug")) if match else None
        if archive is None:
            return self._error(404, "no such file")
        size = archive.stat().st_size
        start = 0
        ranged = re.match(r"bytes=(\d+)-$", self.headers.get("Range", ""))
        if ranged:
            start = int(ranged.group(1))
            if start >= size:
                self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        self.send_response(HTTPStatus.PARTIAL_CONTENT if ranged else HTTPStatus.OK)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(size - start))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Last-Modified", email.utils.formatdate(archive.stat().st_mtime, usegmt=True))
        self.send_header("ETag", f'"{size}-{int(archive.stat().st_mtime)}"')
        if ranged:
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.end_headers()
        with archive.open("rb") as source:
            source.seek(start)
            while chunk := source.read(_CHUNK):
                self.wfile.write(chunk)


class SandboxServer:
    """The sandbox in a background thread: `with SandboxServer(state) as server: server.url`."""

    def __init__(self, state: SandboxState, port: int = 0):
        handler = type("Handler", (_Handler,), {"state": state})
        self.state = state
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The endpoint to put in PIPELINE_KAGGLE_ENDPOINT."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> SandboxServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted."""
        try:
            self._httpd.serve_forever()
        finally:
            self._httpd.server_close()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
