"""A local stand-in for the Kaggle API, bound to 127.0.0.1, for the demo and the tests.

It speaks the protocol the official client uses (`POST /v1/<service>/<Rpc>` with camelCase JSON;
a download answers 302 to the archive's URL) and serves every folder it is given that holds a
competition archive in Kaggle's layout (`<slug>.zip`, optionally beside a hidden `solution.csv`).
Point the pipeline at it with PIPELINE_KAGGLE_ENDPOINT=http://127.0.0.1:<port>.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import email.utils
import io
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.competitions import Competition, UnknownCompetitionError, get_competition
from pipeline.demo.kernels import SandboxKernels
from pipeline.metrics import get_metric
from pipeline.tables import TableError, read_text_csv

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
    fail_uploads: bool = False  # answer submission uploads with 500
    team: str = "sandbox-team"
    calls: list[str] = field(default_factory=list)
    uploads: dict[str, dict] = field(default_factory=dict)  # token -> {"name", "data"}
    submissions: list[dict] = field(default_factory=list)  # newest last
    kernels: SandboxKernels | None = None  # kernels pushed here run locally (None: no kernel RPCs)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _competition(slug: str) -> Competition | None:
    try:
        return get_competition(slug)
    except UnknownCompetitionError:
        return None


def _metric(slug: str) -> str:
    competition = _competition(slug)
    return "log_loss" if competition is None else competition.metric


def _submitted_values(competition: Competition | None, table: pd.DataFrame, ids: pd.Series) -> np.ndarray:
    """The submission's predictions in the solution's id order: P(positive), class indices, or an
    (images, classes) matrix; ValueError with Kaggle-like reasons."""
    id_col = table.columns[0] if competition is None else competition.id_column
    kind = "probability" if competition is None else competition.submission_kind
    classes = () if competition is None else competition.classes
    value_cols = (
        [*classes]
        if kind == "class_probabilities"
        else [table.columns[1] if competition is None else competition.label_column]
    )
    if list(table.columns) != [id_col, *value_cols]:
        raise ValueError(f"expected columns {[id_col, *value_cols]}, got {list(table.columns)[:12]}")
    if len(table) != len(ids) or table[id_col].astype(str).duplicated().any():
        raise ValueError("the submission must have exactly one row per test id")
    rows = table.set_index(table[id_col].astype(str)).reindex(ids.astype(str))
    if kind == "class_name":
        values = rows[value_cols[0]].map({name: k for k, name in enumerate(classes)})
        if values.isna().any():
            raise ValueError("the submission must name one known class per test id")
        return values.to_numpy(dtype=np.int64)
    values = rows[value_cols].apply(pd.to_numeric, errors="coerce")
    if values.isna().any().any():
        raise ValueError("the submission must have exactly one numeric row per test id")
    return (
        values.to_numpy(dtype=np.float64) if kind == "class_probabilities" else values.iloc[:, 0].to_numpy()
    )


def _score(metric: str, truth: np.ndarray, guess: np.ndarray) -> float:
    """Score a submission's values as Kaggle does, with the project's one implementation of the
    metric: probabilities as they are (rows rescaled to sum to 1), or hard classes (a probability
    rounded, the most probable class of a row)."""
    entry = get_metric(metric)
    if entry.scores == "probabilities":
        return entry.score(truth, guess)
    predicted = guess.argmax(axis=1) if guess.ndim == 2 else np.round(guess).astype(int)
    return entry.score(truth, predicted)


def score_submission(slug: str, submission: bytes, solution_path: Path) -> tuple[float, float]:
    """(public, private) score of a submission CSV against the hidden solution (id, true class
    index), as Kaggle splits it, in the competition's format and metric.

    The public part is a fixed half of the test ids; raises ValueError with Kaggle-like reasons.
    """
    if not solution_path.is_file():
        raise ValueError("this competition has no solution.csv in the sandbox, so it cannot be scored")
    solution = read_text_csv(solution_path)
    try:
        table = read_text_csv(io.BytesIO(submission))
    except TableError as error:
        raise ValueError(f"could not parse the submission: {error}") from error
    competition = _competition(slug)
    guess = _submitted_values(competition, table, solution.iloc[:, 0])
    truth = solution.iloc[:, 1].astype(np.int64).to_numpy()
    metric = _metric(slug)
    public = np.random.default_rng(0).permutation(len(solution)) < len(solution) // 2
    return tuple(_score(metric, truth[part], guess[part]) for part in (public, ~public))  # type: ignore[return-value]


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

    def rpc_StartSubmissionUpload(self, request: dict) -> None:
        if self._competition(request) is None:
            return
        token = secrets.token_hex(8)
        with self.state.lock:
            self.state.uploads[token] = {"name": request.get("fileName", "submission.csv"), "data": None}
        host = self.headers.get("Host")
        self._json(200, {"token": token, "createUrl": f"http://{host}/upload/{token}"})

    def do_PUT(self) -> None:
        match = re.match(r"^/upload/(?P<token>\w+)$", self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if match is None or match.group("token") not in self.state.uploads:
            return self._error(404, "no such upload")
        if self.state.fail_uploads:
            return self._error(500, "upload storage unavailable")
        with self.state.lock:
            self.state.uploads[match.group("token")]["data"] = body
        return self._json(200, {})

    def rpc_CreateSubmission(self, request: dict) -> None:
        slug = self._competition(request)
        if slug is None:
            return
        upload = self.state.uploads.pop(request.get("blobFileTokens", ""), None)
        if upload is None or upload["data"] is None:
            return self._error(400, "unknown blobFileTokens: upload the file first")
        data = upload["data"]
        entry = {
            "ref": int(time.time()) * 100 + len(self.state.submissions) % 100,  # unique across restarts
            "totalBytes": len(data),
            "date": dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z",
            "description": request.get("submissionDescription", ""),
            "fileName": upload["name"],
            "teamName": self.state.team,
            "submittedBy": self.state.username,
            "competition": slug,
        }
        try:
            public, private = score_submission(
                slug, data, self.state.archives[slug].with_name("solution.csv")
            )
            entry.update(status="COMPLETE", publicScore=f"{public:.5f}", privateScore=f"{private:.5f}")
        except ValueError as error:
            entry.update(status="ERROR", errorDescription=str(error), publicScore="", privateScore="")
        with self.state.lock:
            self.state.submissions.append(entry)
        self._json(200, {"message": f"Successfully submitted to {slug}", "ref": entry["ref"]})

    def rpc_ListSubmissions(self, request: dict) -> None:
        slug = self._competition(request)
        if slug is None:
            return
        mine = [
            {k: v for k, v in s.items() if k != "competition"}
            for s in reversed(self.state.submissions)
            if s["competition"] == slug
        ]
        self._json(200, {"submissions": mine})

    def rpc_GetLeaderboard(self, request: dict) -> None:
        slug = self._competition(request)
        if slug is None:
            return
        higher_is_better = get_metric(_metric(slug)).higher_is_better
        scored = [s for s in self.state.submissions if s["competition"] == slug and s["status"] == "COMPLETE"]
        rows = []
        if scored:
            best = (max if higher_is_better else min)(scored, key=lambda s: float(s["publicScore"]))
            rows.append(
                {
                    "teamId": 1,
                    "teamName": self.state.team,
                    "submissionDate": best["date"],
                    "score": best["publicScore"],
                }
            )
        competition = _competition(slug)
        classes = max(2, 0 if competition is None else competition.num_classes)
        baseline = f"{np.log(classes):.5f}" if _metric(slug) == "log_loss" else "0.50000"  # a constant guess
        rows.append(
            {
                "teamId": 2,
                "teamName": "constant 0.5 baseline",
                "submissionDate": "2013-09-25T00:00:00.000Z",
                "score": baseline,
            }
        )
        rows.sort(key=lambda r: float(r["score"]), reverse=higher_is_better)
        self._json(200, {"submissions": rows})

    def _kernels(self) -> SandboxKernels | None:
        if self.state.kernels is None:
            self._error(404, "this sandbox runs no kernels")
        return self.state.kernels

    def rpc_SaveKernel(self, request: dict) -> None:
        if (kernels := self._kernels()) is not None:
            self._json(200, kernels.save(request, self.state.username, self.headers.get("Host", "")))

    def rpc_GetKernelSessionStatus(self, request: dict) -> None:
        if (kernels := self._kernels()) is not None:
            found = kernels.status(request)
            if found:
                self._json(200, found)
            else:
                self._error(404, "Kernel not found")

    def rpc_ListKernelSessionOutput(self, request: dict) -> None:
        if (kernels := self._kernels()) is not None:
            found = kernels.outputs(request, self.headers.get("Host", ""))
            if found:
                self._json(200, found)
            else:
                self._error(404, "Kernel not found")

    def rpc_StartBlobUpload(self, request: dict) -> None:
        token = secrets.token_hex(8)
        with self.state.lock:
            self.state.uploads[token] = {"name": request.get("name", "file"), "data": None}
        self._json(200, {"token": token, "createUrl": f"http://{self.headers.get('Host')}/upload/{token}"})

    def rpc_GetDatasetStatus(self, request: dict) -> None:
        if (kernels := self._kernels()) is None:
            return
        dataset = f"{request.get('ownerSlug', '')}/{request.get('datasetSlug', '')}"
        if dataset not in kernels.datasets:
            return self._error(404, f"Dataset {dataset} not found")
        self._json(200, {"status": "READY"})

    def _publish(self, owner: str, slug: str, files: list[dict], new: bool) -> None:
        if (kernels := self._kernels()) is None:
            return
        dataset = f"{owner}/{slug}"
        if owner != self.state.username:
            return self._json(200, {"error": f"datasets can only be created under your own name ({owner})"})
        if new == (dataset in kernels.datasets):
            problem = "already exists" if new else "does not exist"
            return self._json(200, {"error": f"dataset {dataset} {problem}"})
        with self.state.lock:
            uploads = [self.state.uploads.pop(str(f.get("token", "")), None) for f in files]
        if any(u is None or u["data"] is None for u in uploads):
            return self._error(400, "unknown file token: upload the files first")
        kernels.publish(dataset, {u["name"]: u["data"] for u in uploads})
        self._json(
            200, {"ref": dataset, "url": f"http://{self.headers.get('Host')}/datasets/{dataset}", "error": ""}
        )

    def rpc_CreateDataset(self, request: dict) -> None:
        self._publish(request.get("ownerSlug", ""), request.get("slug", ""), request.get("files", []), True)

    def rpc_CreateDatasetVersion(self, request: dict) -> None:
        files = (request.get("body") or {}).get("files", [])
        self._publish(request.get("ownerSlug", ""), request.get("datasetSlug", ""), files, False)

    def _kernel_output(self, slug: str, version: int, name: str) -> None:
        path = self.state.kernels.output_file(slug, version, name) if self.state.kernels else None
        if path is None:
            return self._error(404, "no such output file")
        data = path.read_bytes()
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        output = re.match(
            r"^/kernel-output/(?P<slug>[\w.-]+)/(?P<version>\d+)/(?P<name>.+)$", self.path.split("?")[0]
        )
        if output:
            return self._kernel_output(output["slug"], int(output["version"]), output["name"])
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
        if self.state.kernels is not None:
            self.state.kernels.stop()
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


@contextlib.contextmanager
def sandbox_environment(url: str) -> Iterator[None]:
    """Point the Kaggle adapter at the sandbox with its own credentials, restoring the environment after."""
    from pipeline.kaggle_api import ENDPOINT_ENV

    values = {ENDPOINT_ENV: url, "KAGGLE_USERNAME": SANDBOX_USERNAME, "KAGGLE_KEY": SANDBOX_KEY}
    saved = {key: os.environ.get(key) for key in [*values, "KAGGLE_API_TOKEN"]}
    os.environ.update(values)
    os.environ.pop("KAGGLE_API_TOKEN", None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
