"""Kernels in the sandbox Kaggle API: SaveKernel, GetKernelSessionStatus, ListKernelSessionOutput.

A pushed kernel "runs" by executing its script locally, in a Kaggle-like folder tree
(`input/competitions/<slug>/` or `input/<slug>/`, attached datasets under `input/<dataset>/`,
`working/` for outputs) mapped to /kaggle through PIPELINE_KAGGLE_ROOT, so its status moves
QUEUED -> RUNNING -> COMPLETE or ERROR and its outputs are real files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.kernel.runner import KAGGLE_ROOT_ENV, SANDBOX_ENV

RUN_TIMEOUT = 1800  # seconds a sandbox kernel may run


@dataclass
class KernelRun:
    """One pushed version and what became of it."""

    slug: str
    version: int
    root: Path
    request: dict
    status: str = "QUEUED"
    failure: str = ""
    log: str = ""
    process: subprocess.Popen | None = None


@dataclass
class SandboxKernels:
    """The kernels the sandbox was pushed, run one thread each."""

    archives: dict[str, Path]  # competition slug -> <slug>.zip
    work_dir: Path
    datasets: dict[str, Path] = field(default_factory=dict)  # owner/slug -> folder attached read-only
    dataset_versions: dict[str, int] = field(default_factory=dict)  # owner/slug -> newest version published
    nested_layout: bool = True  # input/competitions/<slug>/ (Kaggle's newer layout) or input/<slug>/
    push_error: str = ""  # answer the next SaveKernel with this error, as Kaggle does
    runs: dict[tuple[str, int], KernelRun] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def save(self, request: dict, username: str, host: str) -> dict:
        """SaveKernel: check the sources, store the version, start running it."""
        owner, _, slug = str(request.get("slug", "")).partition("/")
        response = {"ref": f"/code/{owner}/{slug}", "url": f"http://{host}/code/{owner}/{slug}"}
        if self.push_error:
            error, self.push_error = self.push_error, ""
            return {**response, "error": error}
        if owner != username:
            return {**response, "error": f"kernels can only be pushed under your own name ({username})"}
        invalid_competitions = [
            c for c in request.get("competitionDataSources", []) if c not in self.archives
        ]
        invalid_datasets = [d for d in request.get("datasetDataSources", []) if d not in self.datasets]
        if invalid_competitions or invalid_datasets:
            return {
                **response,
                "invalidCompetitionSources": invalid_competitions,
                "invalidDatasetSources": invalid_datasets,
            }
        with self.lock:
            version = 1 + max((v for s, v in self.runs if s == slug), default=0)
            run = KernelRun(slug, version, self.work_dir / slug / f"v{version}", request)
            self.runs[(slug, version)] = run
        threading.Thread(target=self._run, args=(run,), daemon=True).start()
        return {**response, "versionNumber": version}

    def __post_init__(self) -> None:
        self.work_dir = self.work_dir.resolve()  # kernels run with their own working folder as cwd

    def publish(self, dataset: str, files: dict[str, bytes]) -> None:
        """CreateDataset / CreateDatasetVersion: `files` become the dataset's newest version, the one
        kernels pushed from now on attach."""
        with self.lock:
            version = 1 + self.dataset_versions.get(dataset, 0)
            folder = self.work_dir / "datasets" / dataset / f"v{version}"
            folder.mkdir(parents=True, exist_ok=True)
            for name, data in files.items():
                (folder / Path(name).name).write_bytes(data)
            self.datasets[dataset], self.dataset_versions[dataset] = folder, version

    def _find(self, request: dict) -> KernelRun | None:
        slug = str(request.get("kernelSlug", ""))
        label = str(request.get("versionLabel") or "")
        with self.lock:
            versions = [v for s, v in self.runs if s == slug]
            if not versions:
                return None
            version = int(label.lstrip("v")) if label.lstrip("v").isdigit() else max(versions)
            return self.runs.get((slug, version))

    def status(self, request: dict) -> dict | None:
        """GetKernelSessionStatus of a version (the newest without versionLabel)."""
        run = self._find(request)
        return None if run is None else {"status": run.status, "failureMessage": run.failure or None}

    def outputs(self, request: dict, host: str) -> dict | None:
        """ListKernelSessionOutput: every file under working/, with a URL to fetch it, and the log."""
        run = self._find(request)
        if run is None:
            return None
        working = run.root / "working"
        files = sorted(p for p in working.rglob("*") if p.is_file()) if working.is_dir() else []
        return {
            "files": [
                {
                    "fileName": str(p.relative_to(working)),
                    "url": f"http://{host}/kernel-output/{run.slug}/{run.version}/{p.relative_to(working)}",
                }
                for p in files
            ],
            "log": run.log,
        }

    def output_file(self, slug: str, version: int, name: str) -> Path | None:
        """The output file `name` of a version, if it exists inside its working folder."""
        run = self.runs.get((slug, version))
        if run is None:
            return None
        working = (run.root / "working").resolve()
        path = (working / name).resolve()
        return path if path.is_relative_to(working) and path.is_file() else None

    def _prepare(self, run: KernelRun) -> Path:
        inputs = run.root / "input"
        for competition in run.request.get("competitionDataSources", []):
            folder = (inputs / "competitions" if self.nested_layout else inputs) / competition
            with zipfile.ZipFile(self.archives[competition]) as archive:
                archive.extractall(folder)  # Kaggle attaches a competition's files unpacked one level
        for dataset in run.request.get("datasetDataSources", []):
            shutil.copytree(self.datasets[dataset], inputs / dataset.split("/")[1])
        (run.root / "working").mkdir(parents=True, exist_ok=True)
        script = run.root / "script.py"
        script.write_text(str(run.request.get("text", "")))
        return script

    def _run(self, run: KernelRun) -> None:
        run.status = "RUNNING"
        try:
            script = self._prepare(run)
            env = {
                **os.environ,
                KAGGLE_ROOT_ENV: str(run.root),
                SANDBOX_ENV: "1",
                "KAGGLE_KERNEL_RUN_TYPE": "Batch",
            }
            env.pop("PIPELINE_KAGGLE_ENDPOINT", None)  # a kernel has no route back to this API
            run.process = subprocess.Popen(
                [sys.executable, str(script)],
                cwd=run.root / "working",
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            run.log, _ = run.process.communicate(timeout=RUN_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired, zipfile.BadZipFile) as error:
            run.status, run.failure = "ERROR", f"the sandbox could not run the kernel: {error}"
            return
        if run.process.returncode == 0:
            run.status = "COMPLETE"
            return
        lines = [line for line in run.log.splitlines() if line.strip()]
        run.status, run.failure = "ERROR", lines[-1] if lines else f"exit status {run.process.returncode}"

    def stop(self) -> None:
        """End every kernel still running."""
        for run in self.runs.values():
            if run.process is not None and run.process.poll() is None:
                run.process.kill()
