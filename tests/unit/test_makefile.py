"""The Makefile passes only the variables you set: a config file's competition takes effect."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(
    shutil.which("make") is None or not (ROOT / ".venv" / ".installed").is_file(),
    reason="needs GNU make and the project's .venv (make setup)",
)


def make(*args: str, **variables: str) -> subprocess.CompletedProcess:
    env = {
        k: v for k, v in os.environ.items() if k not in ("COMPETITION", "TRIALS", "WORKERS", "ACCELERATOR")
    }
    return subprocess.run(
        ["make", "--no-print-directory", *args, *(f"{k}={v}" for k, v in variables.items())],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_config_files_competition_takes_effect_through_make(tmp_path: Path) -> None:
    toml = tmp_path / "mine.toml"
    toml.write_text(f'competition = "dogs-vs-cats-demo"\n[paths]\nruns_root = "{tmp_path / "runs"}"\n')
    done = make("predict", ARGS=f"--config {toml}")
    assert done.returncode != 0
    assert str(tmp_path / "runs" / "dogs-vs-cats-demo") in done.stderr  # looked for the TOML's competition
    typed = make("predict", ARGS=f"--config {toml}", COMPETITION="dogs-vs-cats")
    assert str(tmp_path / "runs" / "dogs-vs-cats") + ":" in typed.stderr  # a variable you type wins


def test_make_variables_reach_the_command_only_when_set() -> None:
    quiet = make("-n", "tune").stdout
    assert "--competition" not in quiet and "--trials" not in quiet and "--workers" not in quiet
    given = make("-n", "tune", TRIALS="3", COMPETITION="dogs-vs-cats").stdout
    assert "--competition dogs-vs-cats" in given and "--trials 3" in given
