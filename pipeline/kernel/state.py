"""The state a kernel version hands to the next one (`kernel push --resume`).

Kaggle keeps a notebook's outputs, but whether a notebook may attach its *own* earlier output as an
input (kernel_sources) is not documented; a private dataset attached through dataset_sources is.
So `--resume` packs the fetched outputs of the previous version (its runs/ folder: the study's
journal, finished folds, the backups of a half-finished fold) into one archive, publishes it as a
new version of the private dataset <user>/<kernel slug>-state, and the next version's runner
unpacks it into /kaggle/working before doing anything else: trials are not re-run, finished folds
are not retrained, a half-finished fold continues from its last saved epoch.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.atomic import write_text
from pipeline.kaggle_api import KernelError

ARCHIVE = "pipeline-state.zip"  # the dataset's one file (Kaggle may show it unpacked)
MANIFEST = "pipeline-state.json"  # inside the archive: which kernel, version, competition, backbone
DATASET_METADATA = "dataset-metadata.json"
RUNS = "runs"


class ResumeError(KernelError):
    """`--resume` cannot continue the previous version; the message says why and what to do."""


@dataclass(frozen=True)
class Progress:
    """What a kernel's outputs hold: tuning trials and folds, finished and wanted."""

    trials: int  # finished trials (complete or pruned) of the study
    trials_wanted: int
    folds: int  # finished folds of the run
    folds_wanted: int
    refits: int
    refits_wanted: int
    submission: bool

    def next_step(self, task: str) -> str:
        """One sentence: what `kernel push --resume` would do next, or that nothing is left."""
        todo = []
        if task in ("tune", "all") and self.trials < self.trials_wanted:
            todo.append(f"run trials {self.trials + 1}-{self.trials_wanted} of the study")
        if task in ("train", "all"):
            if self.folds < self.folds_wanted:
                todo.append(f"train folds {self.folds + 1}-{self.folds_wanted}")
            if self.refits < self.refits_wanted:
                todo.append(f"train refit models {self.refits + 1}-{self.refits_wanted}")
            if not todo and not self.submission:
                todo.append("predict and write the submission")
        if not todo:
            return "Nothing is left to do: the next version would only repeat the final steps."
        return f"Next version (`kernel push --resume`): {', then '.join(todo)}."


def journal_trials(journal: Path) -> int:
    """Finished (complete or pruned) trials recorded in an Optuna journal file; 0 when there is none."""
    if not journal.is_file():
        return 0
    import optuna

    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return sum(len(trials) for trials in _journal_trials(journal, done))


def fail_running_trials(tune_dir: Path) -> list[int]:
    """Mark the trials a carried journal left RUNNING as failed (the session that ran them is
    over); return their numbers."""
    import optuna

    numbers = []
    for journal in sorted(tune_dir.glob("*.journal")):
        storage = _storage(journal)
        for study in storage.get_all_studies():
            study_id = storage.get_study_id_from_name(study.study_name)
            for trial in storage.get_all_trials(study_id, states=(optuna.trial.TrialState.RUNNING,)):
                trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
                storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)
                numbers.append(trial.number)
    return numbers


def repair_journal(journal: Path) -> int:
    """Keep the leading lines of an Optuna journal that are whole JSON records and drop the rest
    (a session killed mid-write leaves a cut line); return how many lines were dropped."""
    lines = journal.read_bytes().splitlines(keepends=True)
    kept = 0
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            break
        if not line.endswith(b"\n"):
            break
        kept += 1
    if kept < len(lines):
        journal.write_bytes(b"".join(lines[:kept]))
    return len(lines) - kept


def pack_state(outputs: Path, folder: Path, dataset: str, manifest: dict) -> Path:
    """Write `folder`/ARCHIVE (the runs/ of a fetched kernel version and the manifest) and the
    dataset-metadata.json of the private dataset `dataset`; return `folder`."""
    runs = outputs / RUNS
    if not runs.is_dir():
        raise ResumeError(
            f"the fetched outputs in {outputs} hold no {RUNS}/ folder: the previous version saved no "
            "state to continue; push without --resume."
        )
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    partial = folder / f".partial-{ARCHIVE}"
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(MANIFEST, json.dumps(manifest, indent=2) + "\n")
        for path in sorted(runs.rglob("*")):
            if path.is_file():
                archive.write(path, Path(RUNS) / path.relative_to(runs))
    partial.rename(folder / ARCHIVE)
    write_dataset_metadata(folder, dataset, "CC0-1.0")
    return folder


def write_dataset_metadata(folder: Path, dataset: str, license_name: str) -> None:
    """The dataset-metadata.json the official client uploads `folder` with, as dataset `dataset`."""
    metadata = {"id": dataset, "title": dataset.split("/")[1][:50], "licenses": [{"name": license_name}]}
    write_text(folder / DATASET_METADATA, json.dumps(metadata, indent=2) + "\n")


def find_state(input_dir: Path) -> Path | None:
    """The carried state among a kernel's inputs: the archive, or the folder Kaggle unpacked it
    into (the one holding the manifest); None when nothing was carried."""
    if not input_dir.is_dir():
        return None
    for name in (ARCHIVE, MANIFEST):
        found = sorted(input_dir.rglob(name))
        if found:
            return found[0] if name == ARCHIVE else found[0].parent
    return None


def restore_state(found: Path, working: Path) -> dict:
    """Copy the carried runs/ into `working` (read-only inputs cannot be written to): an archive
    through the same checked unpacking as downloads (no escaping entry, link or zip bomb), a folder
    without following any link; repair cut journals; return the manifest. ResumeError, in one
    sentence, for a damaged state."""
    from pipeline.acquire.unpack import UnsafeArchiveError, extract

    staging = working / ".partial-state"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        if found.is_file():
            extract(found, staging)
        else:
            skipped = _copy_without_links(found, staging)
            if skipped:
                print(f"Carried state: {skipped} symbolic link(s) left out (a state holds plain files only).")
        manifest = _read_manifest(staging / MANIFEST)
        journals = sorted(staging.rglob("*.journal"))
        if any(not journal.is_file() for journal in journals):
            raise ResumeError(
                f"the carried state {found} has a *.journal that is no file: push without --resume."
            )
        if (staging / RUNS).is_dir():
            shutil.copytree(staging / RUNS, working / RUNS, dirs_exist_ok=True)
    except (UnsafeArchiveError, zipfile.BadZipFile) as error:
        raise ResumeError(
            f"the carried state {found} is refused ({error}); push without --resume."
        ) from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for journal in sorted((working / RUNS).rglob("*.journal")):
        dropped = repair_journal(journal)
        if dropped:
            print(
                f"Carried journal {journal.name}: {dropped} damaged line(s) dropped; the trials before them are kept."
            )
    return manifest


def _copy_without_links(source: Path, target: Path) -> int:
    """Copy the plain files and folders under `source` into `target`; links are neither followed nor
    copied. Returns how many links were left out."""
    skipped = 0
    for folder, names, files in os.walk(source):  # os.walk does not descend into linked folders
        here = Path(folder)
        into = target / here.relative_to(source)
        into.mkdir(parents=True, exist_ok=True)
        for name in [*names, *files]:
            if (here / name).is_symlink():
                skipped += 1
            elif name in files:
                shutil.copyfile(here / name, into / name, follow_symlinks=False)
    return skipped


def _read_manifest(path: Path) -> dict:
    try:
        manifest = json.loads(path.read_text())
        if not isinstance(manifest, dict) or not {"kernel", "version"} <= manifest.keys():
            raise ValueError("it does not name the kernel and version")
    except (OSError, ValueError) as error:
        raise ResumeError(
            f"the carried state's {MANIFEST} is missing or damaged ({error}): push without --resume."
        ) from error
    return manifest


def fold_seconds(runs: Path) -> list[float]:
    """Training seconds of every finished fold or refit model of the runs in `runs`."""
    from pipeline.run import Run

    seconds = []
    for folder in sorted(d for d in runs.iterdir() if d.is_dir()) if runs.is_dir() else []:
        run = Run(folder)
        for member in [*run.members(), *run.refit_members()]:
            value = member.read_metrics().get("seconds")
            if isinstance(value, int | float) and value > 0:
                seconds.append(float(value))
    return seconds


def trial_seconds(runs: Path) -> list[float]:
    """Durations of the finished trials in every journal under `runs`."""
    import optuna

    return [
        trial.duration.total_seconds()
        for journal in runs.rglob("*.journal")
        for trials in _journal_trials(journal, (optuna.trial.TrialState.COMPLETE,))
        for trial in trials
        if trial.duration is not None
    ]


def _journal_trials(journal: Path, states: tuple) -> list[list]:
    """The trials in `states` of each study in an Optuna journal file."""
    storage = _storage(journal)
    return [
        storage.get_all_trials(
            storage.get_study_id_from_name(study.study_name), deepcopy=False, states=states
        )
        for study in storage.get_all_studies()
    ]


def _storage(journal: Path) -> Any:  # an optuna JournalStorage (optuna is imported lazily)
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(journal)))
