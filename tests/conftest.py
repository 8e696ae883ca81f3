"""Shared fixtures: tiny generated competitions, the sandbox server, the real-photo datasets."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.competitions import Competition, get_competition
from pipeline.config import Config, load_config
from pipeline.demo.generate import generate_competition
from pipeline.demo.sandbox import SANDBOX_KEY, SANDBOX_USERNAME, SandboxServer, SandboxState, find_archives
from pipeline.kaggle_api import ENDPOINT_ENV

SHARED_DATASETS_ENV = "PIPELINE_SHARED_DATASETS"  # .ci/run points it at ../shared/datasets
SHARED_WEIGHTS_ENV = "PIPELINE_SHARED_WEIGHTS"  # .ci/run points it at ../shared/weights


def _shared(variable: str, name: str) -> Path:
    """`name` inside the folder `variable` points at; skips when it is unset (CI always sets it)."""
    root = os.environ.get(variable)
    if not root:
        pytest.skip(f"set {variable} to the shared folder to run this test")
    path = Path(root) / name
    assert path.exists(), f"{variable}={root} has no {name}"
    return path


def shared_dataset(name: str) -> Path:
    """A folder of ../shared/datasets (real photos)."""
    return _shared(SHARED_DATASETS_ENV, name)


def shared_weights(name: str) -> Path:
    """A real ImageNet weights file of ../shared/weights."""
    return _shared(SHARED_WEIGHTS_ENV, name)


@pytest.fixture(scope="session")
def demo() -> Competition:
    return get_competition("dogs-vs-cats-demo")


@pytest.fixture(scope="session")
def demo_archive_dir(tmp_path_factory: pytest.TempPathFactory, demo: Competition) -> Path:
    """A served folder with a small demo competition: 40 images per class, 20 test, 3 broken files."""
    folder = tmp_path_factory.mktemp("served") / demo.slug
    generate_competition(demo, folder, train_per_class=40, test_size=20, seed=1)
    return folder


def tiny_config(data_root: Path, competition: str = "dogs-vs-cats-demo", **overrides: object) -> Config:
    """A configuration for tiny, fast tests writing under `data_root`."""
    values = {
        "competition": competition,
        "paths.data_root": str(data_root),
        "paths.runs_root": str(data_root / "runs"),
        "data.image_size": 32,
        "data.batch_size": 8,
        "data.validation_workers": 2,
        "train.refit": 0,  # the tests of refitting ask for it
        "train.recipe": "finetune",  # the tests of the auto recipe ask for it
    }
    values.update({key.replace("__", "."): value for key, value in overrides.items()})
    return load_config(overrides=values, environ={})


@pytest.fixture(scope="session")
def demo_index(tmp_path_factory: pytest.TempPathFactory, demo_archive_dir: Path, demo: Competition):
    """The indexed small demo competition (unpacked once per session)."""
    from pipeline.acquire.index import prepare_index

    root = tmp_path_factory.mktemp("data")
    return prepare_index(tiny_config(root, paths__input_root=str(demo_archive_dir.parent)), demo)


@pytest.fixture
def sandbox(
    demo_archive_dir: Path, kaggle_env: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[SandboxServer]:
    """The sandbox Kaggle server serving the small demo competition, with the client pointed at it."""
    server = SandboxServer(SandboxState(find_archives([demo_archive_dir]))).start()
    monkeypatch.setenv(ENDPOINT_ENV, server.url)
    monkeypatch.setenv("KAGGLE_USERNAME", SANDBOX_USERNAME)
    monkeypatch.setenv("KAGGLE_KEY", SANDBOX_KEY)
    yield server
    server.stop()


@pytest.fixture
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL server on 127.0.0.1 (Debian package `postgresql`; .ci/run installs it)."""
    from pipeline.demo.postgres import missing, throwaway_postgres

    if lacking := missing():
        if os.environ.get("CI_REQUIRE_POSTGRES"):
            pytest.fail(f"{lacking} is missing")
        pytest.skip(f"{lacking} is not installed")
    with throwaway_postgres() as url:
        yield url


@pytest.fixture
def kernel_sandbox(demo_archive_dir: Path, sandbox: SandboxServer, tmp_path: Path) -> Iterator[SandboxServer]:
    """The sandbox serving the small demo competition, running pushed kernels under tmp_path."""
    from pipeline.demo.kernels import SandboxKernels

    sandbox.state.kernels = SandboxKernels(find_archives([demo_archive_dir]), tmp_path / "kernels")
    yield sandbox
    sandbox.state.kernels.stop()


@pytest.fixture
def kaggle_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An environment with no Kaggle credentials anywhere (tests add what they need)."""
    for key in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_KERNEL_RUN_TYPE"):
        monkeypatch.delenv(key, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(home / ".kaggle"))
    return home
