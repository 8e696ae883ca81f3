"""Download through the real `kaggle` client against the sandbox Kaggle server on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.acquire.download import download_competition, is_downloaded
from pipeline.demo.sandbox import SANDBOX_KEY, SANDBOX_USERNAME, SandboxServer
from pipeline.kaggle_api import (
    ENDPOINT_ENV,
    CompetitionNotFoundError,
    CredentialsMissingError,
    CredentialsRejectedError,
    KaggleGateway,
    KaggleNetworkError,
    RulesNotAcceptedError,
    credentials_source,
)


def no_wait(seconds: float) -> None:
    return None


def test_download_through_the_real_client(
    sandbox: SandboxServer, tmp_path: Path, demo, demo_archive_dir
) -> None:
    archive = download_competition(demo, tmp_path, KaggleGateway(sleep=no_wait))
    assert archive.read_bytes() == (demo_archive_dir / demo.archive).read_bytes()
    assert is_downloaded(demo, tmp_path)
    assert sandbox.state.calls == ["DownloadDataFiles"]
    download_competition(demo, tmp_path, KaggleGateway(sleep=no_wait))  # complete: no second request
    assert sandbox.state.calls == ["DownloadDataFiles"]


def test_interrupted_download_is_fetched_again(
    sandbox: SandboxServer, tmp_path: Path, demo, demo_archive_dir
) -> None:
    full = (demo_archive_dir / demo.archive).read_bytes()
    (tmp_path / demo.archive).write_bytes(full[: len(full) // 2])  # killed half-way, no completion marker
    archive = download_competition(demo, tmp_path, KaggleGateway(sleep=no_wait))
    assert archive.read_bytes() == full


def test_server_error_then_success_is_retried(sandbox: SandboxServer, tmp_path: Path, demo, capsys) -> None:
    sandbox.state.fail_next.extend([500, 503])
    download_competition(demo, tmp_path, KaggleGateway(sleep=no_wait))
    assert sandbox.state.calls == ["DownloadDataFiles"] * 3
    assert is_downloaded(demo, tmp_path)
    assert "retry" in capsys.readouterr().out


def test_lasting_server_errors_give_up_after_bounded_retries(
    sandbox: SandboxServer, tmp_path: Path, demo
) -> None:
    sandbox.state.fail_next.extend([500] * 10)
    delays: list[float] = []
    with pytest.raises(KaggleNetworkError, match="after 3 attempt"):
        download_competition(
            demo, tmp_path, KaggleGateway(retries=2, backoff_seconds=1.5, sleep=delays.append)
        )
    assert delays == [1.5, 3.0]  # exponential backoff
    assert not is_downloaded(demo, tmp_path)


def test_unreachable_server_is_a_network_error(kaggle_env: Path, monkeypatch, tmp_path: Path, demo) -> None:
    monkeypatch.setenv(ENDPOINT_ENV, "http://127.0.0.1:9")  # discard port: connection refused
    monkeypatch.setenv("KAGGLE_USERNAME", SANDBOX_USERNAME)
    monkeypatch.setenv("KAGGLE_KEY", SANDBOX_KEY)
    with pytest.raises(KaggleNetworkError, match="Check the connection"):
        download_competition(demo, tmp_path, KaggleGateway(retries=1, sleep=no_wait))


def test_bad_credentials_are_rejected_without_printing_them(
    sandbox: SandboxServer, monkeypatch, tmp_path: Path, demo, capsys
) -> None:
    monkeypatch.setenv("KAGGLE_KEY", "wrong-secret-1234")
    with pytest.raises(CredentialsRejectedError, match="401") as caught:
        download_competition(demo, tmp_path, KaggleGateway(sleep=no_wait))
    assert "settings" in str(caught.value)
    out = capsys.readouterr()
    assert "wrong-secret-1234" not in out.out + out.err + str(caught.value)


def test_unknown_competition_and_unaccepted_rules(sandbox: SandboxServer, tmp_path: Path, demo) -> None:
    from pipeline.competitions import get_competition

    with pytest.raises(CompetitionNotFoundError, match="404"):
        download_competition(get_competition("dogs-vs-cats"), tmp_path, KaggleGateway(sleep=no_wait))
    sandbox.state.rules_not_accepted.add(demo.slug)
    with pytest.raises(RulesNotAcceptedError, match=f"competitions/{demo.slug}/rules"):
        download_competition(demo, tmp_path, KaggleGateway(sleep=no_wait))


def test_missing_credentials_explain_how_to_create_them(kaggle_env: Path, tmp_path: Path, demo) -> None:
    assert credentials_source() is None
    with pytest.raises(CredentialsMissingError, match="Create an API token"):
        download_competition(demo, tmp_path, KaggleGateway())


def test_credentials_are_found_in_the_usual_places(kaggle_env: Path, monkeypatch) -> None:
    (kaggle_env / ".kaggle").mkdir()
    (kaggle_env / ".kaggle" / "kaggle.json").write_text(json.dumps({"username": "u", "key": "k"}))
    assert credentials_source() == str(kaggle_env / ".kaggle" / "kaggle.json")
    monkeypatch.setenv("KAGGLE_API_TOKEN", "t")
    assert credentials_source() == "KAGGLE_API_TOKEN"
