"""Kaggle kernels through the real client and the sandbox, which runs pushed kernels on this machine."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from pipeline import flow, layout
from pipeline.competitions import Competition
from pipeline.config import Config
from pipeline.demo.kernels import SandboxKernels
from pipeline.demo.sandbox import SandboxServer, find_archives
from pipeline.fit.cross_validation import train_kfold
from pipeline.kaggle_api import KaggleGateway, KernelError
from pipeline.kernel import session
from pipeline.kernel.bundle import build_bundle
from pipeline.kernel.metadata import CODE_FILE, KernelMetadataError
from pipeline.kernel.runner import KAGGLE_ROOT_ENV, SANDBOX_ENV
from pipeline.kernel.state import ResumeError, journal_trials
from pipeline.submit.submission_file import validate_submission
from tests.conftest import tiny_config

TINY = {
    "model__backbone": "small-cnn",
    "data__image_size": 32,
    "train__folds": 2,
    "train__head_epochs": 2,
    "kernel__accelerator": "gpu",
}


def quick_sleep(seconds: float) -> None:
    time.sleep(0.5)


def test_a_kernel_that_raises_is_reported_as_error_with_its_message(
    kernel_sandbox: SandboxServer, tmp_path: Path
) -> None:
    config = tiny_config(
        tmp_path, **{**TINY, "model__backbone": "mobilenet-0.25", "kernel__internet": "off"}
    )  # no weights
    session.push(config, KaggleGateway())
    with pytest.raises(KernelError, match=r"failed: .*KernelSetupError: no mobilenet_2_5_224_tf_no_top\.h5"):
        session.status(config, KaggleGateway(), wait=True, sleep=quick_sleep)


def test_kaggle_refusals_are_failures_and_bad_metadata_never_leaves(
    kernel_sandbox: SandboxServer, tmp_path: Path
) -> None:
    config = tiny_config(tmp_path, **TINY)
    kernel_sandbox.state.kernels.push_error = "Notebook title is already in use"
    with pytest.raises(KernelError, match=r"refused kernel .*already in use"):
        session.push(config, KaggleGateway())
    missing = tiny_config(tmp_path, **TINY, kernel__weights_dataset="someone/not-here")
    with pytest.raises(KernelError, match="invalid dataset sources: someone/not-here"):
        session.push(missing, KaggleGateway())
    calls = len(kernel_sandbox.state.calls)
    broken = tiny_config(tmp_path, **TINY, kernel__weights_dataset="not a slug")
    with pytest.raises(KernelMetadataError, match="dataset_sources"):
        session.push(broken, KaggleGateway())
    assert "SaveKernel" not in kernel_sandbox.state.calls[calls:]


def run_in_kaggle_layout(
    bundle: Path, tmp_path: Path, demo_archive_dir: Path, demo: Competition
) -> tuple[Path, subprocess.CompletedProcess]:
    """Run a bundle's script as Kaggle would (the competition in /kaggle/input/<slug>/, outputs in
    /kaggle/working); return the Kaggle root and the finished process, checked to have succeeded."""
    root = tmp_path / "kaggle"
    with zipfile.ZipFile(demo_archive_dir / demo.archive) as archive:
        archive.extractall(root / "input" / demo.slug)
    (root / "working").mkdir()
    env = {**os.environ, KAGGLE_ROOT_ENV: str(root), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop(SANDBOX_ENV, None)
    done = subprocess.run(
        [sys.executable, str(bundle / CODE_FILE)],
        cwd=root / "working",
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return root, done


def test_the_generated_script_runs_in_kaggles_flat_layout(
    tmp_path: Path, demo_archive_dir: Path, demo: Competition
) -> None:
    config = tiny_config(tmp_path / "local", **{**TINY, "kernel__accelerator": "none"})
    bundle = build_bundle(config, "me", tmp_path / "bundle")
    root, done = run_in_kaggle_layout(bundle, tmp_path, demo_archive_dir, demo)
    assert "Python 3." in done.stdout and "GPUs: none" in done.stdout
    submission = pd.read_csv(root / "working" / "submission.csv")
    validate_submission(submission, pd.read_csv(demo_archive_dir / "solution.csv").assign(label=0.5), demo)
    assert not any((root / "working").rglob("*.jpg"))  # images unpacked to scratch space, not saved


def test_a_gpu_tune_kernel_stopped_by_its_budget_is_resumed_fetched_and_submitted(
    kernel_sandbox: SandboxServer, tmp_path: Path, demo: Competition, demo_archive_dir: Path
) -> None:
    space = {
        "model.backbone": "choice:small-cnn",
        "data.image_size": "choice:32",
        "model.dropout": "float:0.0:0.4",
    }
    values = {**TINY, "kernel__task": "tune", "tune__trials": 3, "tune__space": space}
    first = tiny_config(tmp_path, **values, train__time_budget=1.0)  # one trial, then the budget stops it
    with pytest.raises(ResumeError, match="no previous version"):
        session.push(first, KaggleGateway(), resume=True)
    pushed = session.push(first, KaggleGateway())
    assert pushed["id"] == "sandbox/dogs-vs-cats-demo-pipeline" and pushed["version"] == 1
    request = kernel_sandbox.state.kernels.runs[("dogs-vs-cats-demo-pipeline", 1)].request
    assert request["machineShape"] == "NvidiaTeslaT4" and request["enableGpu"] is True
    assert request["enableInternet"] is True and request["competitionDataSources"] == [demo.slug]
    assert request["text"] == (layout.kernel_dir(first) / CODE_FILE).read_text()  # the bundled code
    assert session.status(first, KaggleGateway(), wait=True, sleep=quick_sleep) == "COMPLETE"
    log = kernel_sandbox.state.kernels.runs[("dogs-vs-cats-demo-pipeline", 1)].log
    assert "Tuning: 1 of 3 trials finished" in log
    assert (
        log.strip().splitlines()[-1] == "Next version (`kernel push --resume`): run trials 2-3 of the study."
    )

    calls = len(kernel_sandbox.state.calls)
    other = tiny_config(tmp_path, **{**values, "model__backbone": "mobilenet-0.25"})
    with pytest.raises(ResumeError, match=r"backbone 'small-cnn', not 'mobilenet-0\.25'"):
        session.push(other, KaggleGateway(), resume=True)
    short = tiny_config(tmp_path, **values, train__time_budget=0.01)
    with pytest.raises(ResumeError, match=r"less than one trial of .* took \(\d+ s\)"):
        session.push(short, KaggleGateway(), resume=True)
    assert not {"CreateDataset", "SaveKernel"} & set(kernel_sandbox.state.calls[calls:])  # refused first

    resumed = tiny_config(
        tmp_path, **{**values, "kernel__task": "all"}, paths__submissions_root=str(tmp_path / "submissions")
    )
    pushed = session.push(resumed, KaggleGateway(), resume=True, sleep=quick_sleep)
    assert pushed["version"] == 2 and pushed["resumes"] == 1
    request = kernel_sandbox.state.kernels.runs[("dogs-vs-cats-demo-pipeline", 2)].request
    assert request["datasetDataSources"] == ["sandbox/dogs-vs-cats-demo-pipeline-state"]
    assert session.status(resumed, KaggleGateway(), wait=True, sleep=quick_sleep) == "COMPLETE"
    target = flow.kernel_output(resumed, submit_it=True)
    assert target == layout.kernel_output_dir(resumed, 2)
    log = (target / "dogs-vs-cats-demo-pipeline.log").read_text()
    assert "Resumed from sandbox/dogs-vs-cats-demo-pipeline version 1: 1 of 3 trials" in log
    assert "Tuning: 3 of 3 trials finished" in log and "Training with the best parameters: {" in log
    assert log.strip().splitlines()[-1].startswith("Nothing is left to do")
    journal = next(target.glob("runs/*/tune/recipe.journal"))
    assert journal_trials(journal) == 3  # the carried trial was not run again
    submission = pd.read_csv(target / "submission.csv")
    validate_submission(submission, pd.read_csv(demo_archive_dir / "solution.csv").assign(label=0.5), demo)
    assert list(target.glob("runs/dogs-vs-cats-demo/*/report.html"))  # the report, made in the kernel
    ledger = pd.read_csv(layout.ledger_path(resumed))
    assert ledger["status"].tolist() == ["fetched", "submitted"] and ledger["cv_score"].notna().all()
    (target / "submission.csv").write_bytes(b"id,label\n1,0.")  # a fetch killed half-way...
    assert flow.kernel_output(resumed, submit_it=True) == target  # ...is fetched again, whole
    served = kernel_sandbox.state.kernels.output_file("dogs-vs-cats-demo-pipeline", 2, "submission.csv")
    assert (target / "submission.csv").read_bytes() == served.read_bytes()
    assert pd.read_csv(layout.ledger_path(resumed))["status"].tolist() == [
        "fetched",
        "submitted",
    ]  # once each


def test_a_time_budget_stops_starting_folds(tmp_path: Path, demo: Competition, demo_index) -> None:
    config: Config = tiny_config(tmp_path, **{**TINY, "train__folds": 3, "train__time_budget": 0.001})
    cv = train_kfold(config, demo, demo_index)
    assert cv.read_cv_table()["fold"].astype(str).tolist() == [
        "0",
        "all",
    ]  # one fold, then no time for another
    assert [m.name for m in cv.members()] == ["fold-0"]


def test_weights_dataset_uploads_the_cached_files_and_push_names_a_missing_one(
    kernel_sandbox: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    offline = {**TINY, "model__backbone": "mobilenet-0.25", "kernel__internet": "off"}
    config = tiny_config(tmp_path, **offline)
    with pytest.raises(KernelError, match=r"no mobilenet_2_5_224_tf_no_top\.h5 in .*keras"):
        flow.weights_dataset(config)
    assert "CreateDataset" not in kernel_sandbox.state.calls
    cached = tmp_path / "keras" / "models" / "mobilenet_2_5_224_tf_no_top.h5"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"weights")
    assert flow.weights_dataset(config) == "sandbox/pipeline-weights"
    served = kernel_sandbox.state.kernels.datasets["sandbox/pipeline-weights"]
    assert (served / cached.name).read_bytes() == b"weights"

    attached = tiny_config(tmp_path, **offline, kernel__weights_dataset="sandbox/pipeline-weights")
    stacked = tiny_config(
        tmp_path,
        **offline,
        kernel__weights_dataset="sandbox/pipeline-weights",
        stack__backbones="mobilenet-0.5",
    )
    with pytest.raises(KernelError, match=r"not mobilenet_5_0_224_tf_no_top\.h5"):
        session.push(stacked, KaggleGateway())
    assert "SaveKernel" not in kernel_sandbox.state.calls
    session.push(attached, KaggleGateway())
    request = kernel_sandbox.state.kernels.runs[("dogs-vs-cats-demo-pipeline", 1)].request
    assert request["enableInternet"] is False and request["datasetDataSources"] == [
        "sandbox/pipeline-weights"
    ]


def test_sandbox_kernels_run_from_a_relative_work_folder(
    tmp_path: Path, demo_archive_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # `make kernel-demo` passes data/_sandbox/kernels, relative
    kernels = SandboxKernels(find_archives([demo_archive_dir]), Path("data") / "kernels")
    assert kernels.work_dir == tmp_path / "data" / "kernels"
