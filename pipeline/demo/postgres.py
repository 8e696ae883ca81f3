"""A throwaway PostgreSQL server on 127.0.0.1 for rehearsals and tests of an Optuna study shared
through an RDB (Debian package `postgresql`; the `postgres` extra installs the Python driver)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def server_binaries() -> Path | None:
    """The folder of PostgreSQL's initdb and pg_ctl, or None when the server is not installed."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


def missing() -> str:
    """What is missing to run a throwaway server here ('' when nothing is), in a few words."""
    if server_binaries() is None:
        return "the PostgreSQL server (apt-get install postgresql)"
    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is None:
        return "the PostgreSQL driver (make setup EXTRAS=dev,postgres)"
    return ""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def throwaway_postgres(database: str = "studies") -> Iterator[str]:
    """Start a server in a temporary folder, yield the URL of an empty database, stop and remove it after."""
    binaries = server_binaries()
    if binaries is None:
        raise FileNotFoundError("PostgreSQL server binaries are missing: apt-get install postgresql")
    root = Path(tempfile.mkdtemp(prefix="pipeline-pg-"))  # outside 0700 folders: the server user reads it
    data = root / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        shutil.chown(root, "postgres")
        os.chmod(root, 0o777)
        as_user = ["runuser", "-u", "postgres", "--"]
    run = [*as_user]
    subprocess.run(
        [*run, str(binaries / "initdb"), "-D", str(data), "-U", "optuna", "--auth=trust"],
        check=True,
        capture_output=True,
    )
    port = _free_port()
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1"
    pg_ctl = [*run, str(binaries / "pg_ctl"), "-D", str(data)]
    subprocess.run(
        [*pg_ctl, "-o", options, "-l", str(root / "log"), "-w", "start"], check=True, capture_output=True
    )
    try:
        subprocess.run(
            [*run, str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "optuna", database],
            check=True,
            capture_output=True,
        )
        yield f"postgresql://optuna@127.0.0.1:{port}/{database}"
    finally:
        subprocess.run([*pg_ctl, "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
