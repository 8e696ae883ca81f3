"""Reliability through the real client and real processes: hung servers, concurrent commands,
restarted tuning, damaged caches, credentials Kaggle refuses."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pipeline.acquire.download import download_competition, is_downloaded
from pipeline.acquire.index import ImageIndex
from pipeline.competitions import Competition
from pipeline.demo.sandbox import SANDBOX_KEY, SANDBOX_USERNAME, SandboxServer
from pipeline.fit.train import train_holdout
from pipeline.fit.tune import load_study, run_worker
from pipeline.infer.predict import predict_run
from pipeline.kaggle_api import (
    ENDPOINT_ENV,
    CredentialsMissingError,
    CredentialsRejectedError,
    KaggleGateway,
    KaggleNetworkError,
)
from tests.conftest import tiny_config


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A server on 127.0.0.1 that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    listener.close()


def test_a_server_that_never_answers_times_out_retries_and_names_the_endpoint(
    kaggle_env: Path, silent_server: str, monkeypatch, tmp_path: Path, demo: Competition
) -> None:
    monkeypatch.setenv(ENDPOINT_ENV, silent_server)
    monkeypatch.setenv("KAGGLE_USERNAME", SANDBOX_USERNAME)
    monkeypatch.setenv("KAGGLE_KEY", SANDBOX_KEY)
    delays: list[float] = []
    gateway = KaggleGateway(retries=1, sleep=delays.append, timeouts=(1.0, 1.0))
    started = time.perf_counter()
    with pytest.raises(
        KaggleNetworkError, match=rf"at {silent_server} after 2 attempt\(s\) \(no answer within 1 s"
    ):
        download_competition(demo, tmp_path, gateway)
    assert len(delays) == 1  # retried once with backoff, then gave up
    assert time.perf_counter() - started < 30  # without timeouts this waits forever


def run_pipeline(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.Popen:
    import os

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env_extra or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_two_downloads_at_once_leave_one_whole_archive(
    sandbox: SandboxServer, tmp_path: Path, demo: Competition, demo_archive_dir: Path
) -> None:
    import os

    env = {
        k: os.environ[k] for k in (ENDPOINT_ENV, "KAGGLE_USERNAME", "KAGGLE_KEY", "HOME", "KAGGLE_CONFIG_DIR")
    }
    args = ("download", "--competition", demo.slug, "--data-root", str(tmp_path), "--validation-workers", "1")
    first, second = run_pipeline(*args, env_extra=env), run_pipeline(*args, env_extra=env)
    outputs = [process.communicate(timeout=300) for process in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], [err[-2000:] for _, err in outputs]
    assert (tmp_path / demo.slug / demo.archive).read_bytes() == (
        demo_archive_dir / demo.archive
    ).read_bytes()
    assert is_downloaded(demo, tmp_path / demo.slug)
    assert sandbox.state.calls.count("DownloadDataFiles") == 1  # the second waited, then found it complete
    said = "".join(out for out, _ in outputs)
    assert "waiting for it to finish before downloading" in said and "already complete" in said


def test_a_second_train_on_the_same_run_is_refused_with_the_holders_pid(
    tmp_path: Path, demo_archive_dir: Path
) -> None:
    args = (
        "train", "--holdout", "--competition", "dogs-vs-cats-demo", "--data-root", str(tmp_path),
        "--input-root", str(demo_archive_dir.parent), "--runs-root", str(tmp_path / "runs"),
        "--backbone", "small-cnn", "--image-size", "32", "--epochs-head", "30", "--patience", "30",
        "--validation-workers", "1",
    )  # fmt: skip
    first = run_pipeline(*args)
    note = tmp_path / "runs" / "dogs-vs-cats-demo" / "small-cnn-32px-holdout" / ".lock.json"
    deadline = time.time() + 120
    while not note.is_file() and time.time() < deadline and first.poll() is None:
        time.sleep(0.2)
    assert note.is_file(), first.communicate()[1][-2000:]
    second = run_pipeline(*args)
    _, err = second.communicate(timeout=120)
    first.kill()
    first.communicate()
    assert second.returncode == 2
    assert f"in use by PID {first.pid}" in err and "--wait" in err
    assert not (note.parent / "metrics.json").exists()  # nothing of the first run was touched


def test_a_restarted_study_does_not_propose_the_same_trial_again(
    tmp_path: Path, demo: Competition, demo_index: ImageIndex
) -> None:
    space = {
        "model.backbone": "choice:small-cnn",
        "data.image_size": "choice:32",
        "model.dropout": "float:0.0:0.5",
    }
    config = tiny_config(tmp_path, tune__trials=1, tune__space=space, train__head_epochs=1)
    for _ in range(3):  # three `tune --trials 1` on one study
        run_worker(config, demo, demo_index)
    drawn = [trial.params["model.dropout"] for trial in load_study(config).trials]
    assert len(drawn) == 3 and len(set(drawn)) == 3


def test_a_damaged_prediction_cache_is_discarded_and_recomputed(
    tmp_path: Path, demo: Competition, demo_index: ImageIndex
) -> None:
    config = tiny_config(tmp_path, model__backbone="small-cnn", train__head_epochs=1, data__image_size=32)
    run = train_holdout(config, demo, demo_index)
    run_dir = run.path
    first = predict_run(config, demo, demo_index, run)
    cache = run.tta_cache(["original", "hflip"])
    cache.write_bytes(cache.read_bytes()[:100])  # as if killed while writing it
    again = predict_run(config, demo, demo_index, run)
    with np.load(cache) as rebuilt:  # recomputed and saved whole
        assert rebuilt["test"].shape == (2, len(demo_index.test))
    np.testing.assert_allclose(again.test["probability"], first.test["probability"], rtol=1e-5)
    assert not list(run_dir.glob("*.partial.npz"))


def test_credentials_kaggle_refuses_are_named(
    sandbox: SandboxServer, kaggle_env: Path, monkeypatch, tmp_path: Path, demo
) -> None:
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    monkeypatch.setenv("KAGGLE_API_TOKEN", "revoked-token-123")
    with pytest.raises(CredentialsRejectedError, match="KAGGLE_API_TOKEN") as caught:
        download_competition(demo, tmp_path, KaggleGateway(retries=0))
    assert "revoked-token-123" not in str(caught.value)
    monkeypatch.delenv("KAGGLE_API_TOKEN")
    (kaggle_env / ".kaggle").mkdir()
    (kaggle_env / ".kaggle" / "kaggle.json").write_text('{"username": "sandbox", "key": ')
    with pytest.raises(CredentialsMissingError, match="not valid JSON"):
        download_competition(demo, tmp_path, KaggleGateway(retries=0))
