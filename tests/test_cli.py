"""The command line as a user meets it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.config import ConfigError


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_every_command_has_help_without_credentials_or_tensorflow(kaggle_env: Path) -> None:
    for command in ([], ["download"], ["index"], ["preview"], ["demo"], ["demo-data"], ["sandbox"]):
        result = run_cli(*command, "--help")
        assert result.returncode == 0, result.stderr
        assert "usage:" in result.stdout
    probe = "import sys, pipeline.cli; pipeline.cli.build_parser(); print('tensorflow' in sys.modules, 'kaggle' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip()
        == "False False"
    )


def test_download_without_credentials_fails_with_advice(kaggle_env: Path, tmp_path: Path, capsys) -> None:
    status = main(["download", "--competition", "dogs-vs-cats", "--data-root", str(tmp_path)])
    assert status == 2
    err = capsys.readouterr().err
    assert "no Kaggle credentials found" in err and "kaggle.json" in err and "make demo" in err


def test_unknown_competition_lists_the_known_ones(tmp_path: Path, capsys) -> None:
    assert main(["index", "--competition", "cats-vs-horses", "--data-root", str(tmp_path)]) == 2
    assert "dogs-vs-cats-redux-kernels-edition" in capsys.readouterr().err


def test_demo_runs_offline_end_to_end(kaggle_env: Path, tmp_path: Path, capsys) -> None:
    roots = ["--data-root", str(tmp_path / "data"), "--runs-root", str(tmp_path / "runs")]
    args = ["demo", *roots, "--submissions-root", str(tmp_path / "submissions")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "train      cat: 300" in out and "train      dog: 300" in out and "rejected: 3 file(s)" in out
    rejects = pd.read_csv(tmp_path / "data" / "dogs-vs-cats-demo" / "index" / "rejects.csv")
    assert len(rejects) == 3 and rejects["reason"].str.len().gt(0).all()
    assert (tmp_path / "runs" / "dogs-vs-cats-demo" / "preview" / "batch.png").stat().st_size > 0
    assert (tmp_path / "runs" / "dogs-vs-cats-demo" / "preview" / "config.json").is_file()
    ledger = pd.read_csv(tmp_path / "submissions" / "ledger.csv")
    assert ledger["status"].tolist() == ["complete"]
    assert ledger["public_score"].iloc[0] < 0.3  # the sandbox scored it against the hidden solution
    assert "Public leaderboard: rank 1 of 2" in out
    assert main(args) == 0  # a second run reuses the download and the trained folds
    again = capsys.readouterr().out
    assert "already complete; skipping the download" in again and "not training again" in again


def test_tuned_parameters_apply_under_explicit_flags(tmp_path: Path) -> None:
    import json

    from pipeline.cli import _config, build_parser

    params = tmp_path / "best_params.json"
    params.write_text(
        json.dumps({"params": {"model.backbone": "small-cnn", "data.batch_size": 64, "model.dropout": 0.4}})
    )
    args = build_parser().parse_args(
        ["train", "--params", str(params), "--batch-size", "8", "--data-root", str(tmp_path)]
    )
    config = _config(args)
    assert config.model.backbone == "small-cnn" and config.model.dropout == 0.4  # from the study
    assert config.data.batch_size == 8  # a flag given explicitly wins
    missing = build_parser().parse_args(["train", "--params", "best", "--data-root", str(tmp_path)])
    with pytest.raises(ConfigError, match="run `make tune` first"):
        _config(missing)
