"""A kernel group (`kernel push --shards N`): N kernels from one bundle and one configuration, each
owning a share of the folds (and refits) or of the study's trials; followed as one table, gathered
into one run (or one study) here, and resumed by pushing only the missing work.

The group is remembered in runs/<slug>/kernel/group.json: the configuration and fold split pushed,
and every shard's kernel, version and share. The split is computed here, before the push, and
travels inside every shard's script, so the shards' folds are the folds of one run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline import layout
from pipeline.atomic import write_text
from pipeline.config import Config, ConfigError, apply_settings, internet_enabled, validate
from pipeline.kaggle_api import KaggleGateway, KernelError
from pipeline.kernel.bundle import build_bundle
from pipeline.kernel.metadata import kernel_slug, weights_route
from pipeline.kernel.session import FINAL, PUSHED
from pipeline.kernel.shards import (
    SHARD_FILE,
    Share,
    differences,
    digest,
    encode_split,
    plan_shares,
    shard_slug,
)
from pipeline.kernel.state import ResumeError
from pipeline.kernel.weights import check_weights_dataset
from pipeline.run import Run

MERGED_FROM = "merged_from"  # trial user attribute of a gathered trial: <kernel> v<version> #<number>


class ShardMismatchError(KernelError):
    """A shard's outputs belong to another configuration or split than its group's."""


def now() -> str:
    """The UTC time, to the second, as the group file records it."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_group(config: Config) -> dict[str, Any] | None:
    """The last pushed group of the competition, or None."""
    path = layout.kernel_group_file(config)
    return json.loads(path.read_text()) if path.is_file() else None


def is_latest(config: Config) -> bool:
    """True when the competition's last push from here was a group (not a single kernel)."""
    group = read_group(config)
    if group is None:
        return False
    single = layout.kernel_dir(config) / PUSHED
    return not single.is_file() or group["pushed"] >= json.loads(single.read_text()).get("pushed", "")


def group_config(config: Config, group: dict[str, Any]) -> Config:
    """The configuration the group was pushed with, on this machine's paths."""
    pushed = validate(apply_settings(Config(), group["config"], "the group's configuration"))
    local = {f"paths.{k}": v for k, v in json.loads(config.to_json())["paths"].items()}
    return validate(apply_settings(pushed, local, "this machine's paths"))


def check_shardable(config: Config) -> Config:
    """Refuse, before any upload, a configuration shards cannot split; return it with the recipe the
    shards run (train: the fine-tuned folds)."""
    task, n = config.kernel.task, config.kernel.shards
    if task == "all":
        raise ConfigError(
            "kernel.task all does not split into shards: push --task tune --shards N, gather it with "
            "`kernel output`, then push --task train --shards N --params best"
        )
    if task == "train" and config.train.recipe == "stack":
        raise ConfigError(
            "the stack recipe fits every fold on features computed in one session: push it without --shards"
        )
    if task == "train" and n > config.train.folds:
        raise ConfigError(
            f"--shards {n} is more than the {config.train.folds} folds to share: use --shards "
            f"{config.train.folds} or fewer (or more --folds)"
        )
    if task == "tune" and n > config.tune.trials:
        raise ConfigError(
            f"--shards {n} is more than the {config.tune.trials} trials to share: raise --trials"
        )
    if task == "tune" and config.tune.storage and not internet_enabled(config):
        raise ConfigError(
            "tune.storage names a database the kernels must reach, but their internet is off: push with "
            "--internet on, or without --storage (each shard keeps a journal that `kernel output` merges)"
        )
    if task == "train" and config.train.recipe == "auto":
        print(
            "Shards train the fine-tuned folds (recipe finetune): the auto recipe's stack needs one session."
        )
        config = validate(apply_settings(config, {"train.recipe": "finetune"}, "kernel push --shards"))
    return config


def local_split(config: Config) -> tuple[str, bytes]:
    """(file name, bytes) of the fold split the shards share, computed here from the local index: the
    k-fold split for train, the holdout split every trial uses for tune."""
    from pipeline.acquire.index import prepare_index
    from pipeline.competitions import get_competition
    from pipeline.fit.splits import holdout_folds, load_or_assign_folds

    competition = get_competition(config.competition)
    found = prepare_index(config, competition)
    k = config.train.folds if config.kernel.task == "train" else holdout_folds(config)
    path = layout.folds_file(config, k)
    load_or_assign_folds(found.train, k, config.data.seed, path)
    return path.name, path.read_bytes()


def push_group(config: Config, gateway: KaggleGateway, resume: bool = False) -> dict[str, Any]:
    """Push the shards of a new group (every fold, refit or trial), or with `resume` only the work the
    gathered group is missing; remember and return the group."""
    previous = read_group(config) if resume else None
    if resume and previous is None:
        raise ResumeError(
            f"no kernel group of {config.competition} was pushed from here to resume: push with --shards N first."
        )
    config = check_shardable(config)
    check_weights_dataset(config)
    username = gateway.username()
    base = kernel_slug(config)
    pushed_config = json.loads(config.to_json())
    if previous is not None:
        changed = differences(previous["config"], pushed_config)
        if changed:
            raise ResumeError(
                f"the group was pushed with other settings ({', '.join(changed)}): resume with the same "
                "settings, or push without --resume to start a new group"
            )
        gathered = gather(config, gateway, for_resume=True)
        shares = plan_shares(
            config.kernel.shards,
            gathered.missing_folds,
            gathered.missing_refits,
            gathered.missing_trials,
            first_worker=previous["workers"],
            refit_epochs=gathered.refit_epochs,
        )
    else:
        folds = list(range(config.train.folds)) if config.kernel.task == "train" else []
        refits = list(range(config.train.refit)) if config.kernel.task == "train" else []
        trials = config.tune.trials if config.kernel.task == "tune" else 0
        shares = plan_shares(config.kernel.shards, folds, refits, trials)
    if not shares:
        print("Nothing is missing: every fold, refit and trial of the group is gathered.")
        return previous or {}
    split_name, split = local_split(config)
    if config.kernel.task == "train":  # a run folder the gathering would refuse is refused now
        _claim_run(config, {"group": base, "config": pushed_config, "split": digest(split)}, mark=False)
    if config.kernel.task == "tune" and config.tune.storage:
        from pipeline.fit.tune import load_study

        load_study(config)  # its tables and study made once, here: shards starting at once would race
    bundles = []  # every bundle built and checked before the first upload
    for share in shares:
        slug = shard_slug(base, share.index)
        shard_config = validate(apply_settings(config, {"kernel.slug": slug}, "shard"))
        payload = {
            "group": base,
            "share": share.to_dict(),
            "split_name": split_name,
            "split": encode_split(split),
        }
        folder = build_bundle(shard_config, username, layout.kernel_shard_dir(config, share.index), payload)
        bundles.append((share, f"{username}/{slug}", folder))
    group = {
        "group": base,
        "competition": config.competition,
        "task": config.kernel.task,
        "config": pushed_config,
        "split_name": split_name,
        "split": digest(split),
        "shards": [],
        "workers": (previous["workers"] if previous else 0) + config.kernel.shards,
        "round": (previous["round"] + 1) if previous else 1,
        "pushed": now(),
    }
    for share, kernel, folder in bundles:  # remembered after each push: a refusal half-way loses none
        url, version = gateway.push_kernel(folder, kernel)
        group["shards"].append(
            {"id": kernel, "version": version, "url": url, "share": share.to_dict(), "pushed": now()}
        )
        write_text(layout.kernel_group_file(config), json.dumps(group, indent=2) + "\n")
        print(
            f"Pushed shard {share.index} of {share.of}: {kernel} version {version}, owning {share.describe()}"
        )
    print(weights_route(config))
    return group


def shard_outputs(config: Config, entry: dict[str, Any]) -> Path:
    """Where the outputs of a shard's version are fetched to."""
    return layout.kernel_shard_output_dir(config, entry["id"].split("/")[1], entry["version"])


def read_shard(outputs: Path) -> dict[str, Any] | None:
    """The shard.json a shard left in its outputs, or None (it stopped before writing one)."""
    path = outputs / SHARD_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def status_table(config: Config, gateway: KaggleGateway) -> pd.DataFrame:
    """One row per shard of the last group: kernel, version, status, elapsed minutes, share, done."""
    group = _require_group(config)
    rows = []
    for entry in group["shards"]:
        state, failure = gateway.kernel_status(entry["id"], entry["version"])
        if state in FINAL and "ended" not in entry:
            entry["ended"] = now()
        end = _parse(entry["ended"]) if "ended" in entry else dt.datetime.now(dt.UTC)
        record = read_shard(shard_outputs(config, entry))
        rows.append(
            {
                "kernel": entry["id"],
                "version": entry["version"],
                "status": state,
                "minutes": round((end - _parse(entry["pushed"])).total_seconds() / 60, 1),
                "owns": Share.from_dict(entry["share"]).describe(),
                "done": _describe_done(record) if record else "-",
                "failure": failure or "",
            }
        )
    write_text(layout.kernel_group_file(config), json.dumps(group, indent=2) + "\n")
    return pd.DataFrame(rows)


def status(
    config: Config,
    gateway: KaggleGateway,
    wait: bool = False,
    sleep: Callable[[float], None] = time.sleep,
    first_delay: float = 5.0,
    max_delay: float = 60.0,
) -> pd.DataFrame:
    """Print the group's table; with `wait`, poll with backoff until every shard has ended. A shard
    that failed is a row, not an error: `kernel output` gathers what the others finished."""
    delay = first_delay
    while True:
        table = status_table(config, gateway)
        shown = table.drop(columns="failure") if not table["failure"].any() else table
        print(shown.to_string(index=False), flush=True)
        if not wait or table["status"].isin(FINAL).all():
            return table
        sleep(delay)
        delay = min(delay * 2, max_delay)


@dataclass
class Gathered:
    """What `gather` merged and what is still missing."""

    config: Config  # the group's configuration on this machine's paths
    run: Run | None = None  # train: the merged k-fold run
    missing_folds: list[int] = field(default_factory=list)
    missing_refits: list[int] = field(default_factory=list)
    missing_trials: int = 0
    running: list[str] = field(default_factory=list)  # shards not ended yet
    refit_epochs: dict[str, int] | None = None

    @property
    def complete(self) -> bool:
        """True when nothing is missing."""
        return not (self.missing_folds or self.missing_refits or self.missing_trials)


def gather(config: Config, gateway: KaggleGateway, for_resume: bool = False) -> Gathered:
    """Fetch every ended shard of the last group, check that each ran the group's configuration, split
    and test images, and merge: fold and refit folders into runs/<slug>/<run>/ (scored once every
    fold is there), trials into the local study. Say what is missing and how to push it."""
    group = _require_group(config)
    merged = group_config(config, group)
    result = Gathered(merged)
    test_ids = None
    if group["task"] == "train":
        _claim_run(merged, group)
        test_ids = _local_test_ids(merged)
    for entry in group["shards"]:
        state, failure = gateway.kernel_status(entry["id"], entry["version"])
        if state not in FINAL:
            result.running.append(f"{entry['id']} ({state})")
            continue
        outputs = _fetch(config, gateway, entry)
        record = read_shard(outputs)
        if record is None:
            print(
                f"{entry['id']} version {entry['version']} ended {state} before starting its share: {failure}"
            )
            continue
        check_shard(entry, record, group, test_ids)
        if group["task"] == "train":
            merge_members(merged, outputs, record)
        elif not merged.tune.storage:
            _merge_trials(merged, outputs, entry)
        if state != "COMPLETE":
            print(
                f"{entry['id']} version {entry['version']} ended {state} ({failure}): its finished work is kept"
            )
    if result.running and for_resume:
        raise ResumeError(
            f"shard(s) {', '.join(result.running)} are still running: wait for them (kernel status --wait), "
            "then resume"
        )
    if group["task"] == "train":
        _finish_run(merged, result)
    else:
        _finish_study(merged, result)
    for name in result.running:
        print(f"Still running: {name}; `kernel output` again once it has ended gathers its work.")
    if not result.complete and not result.running:
        print(
            f"Resume the group: `kernel push --resume --shards N` pushes only what is missing ({_missing(result)})."
        )
    return result


def _missing(result: Gathered) -> str:
    """The missing work in a few words ('folds 2, 4 and refit 0')."""
    missing = Share(0, 0, tuple(result.missing_folds), tuple(result.missing_refits), result.missing_trials)
    return missing.describe()


def _finish_run(config: Config, result: Gathered) -> None:
    from pipeline.fit.cross_validation import score_folds
    from pipeline.fit.refit import chosen_epochs

    run = Run(layout.kfold_run_dir(config))
    result.run = run
    result.missing_folds = [k for k in range(config.train.folds) if not run.fold(k).is_finished]
    result.missing_refits = [k for k in range(config.train.refit) if not run.refit(k).is_finished]
    folds = [m for m in run.members() if m.has_validation]
    if folds:
        result.refit_epochs = chosen_epochs(folds)
    done = config.train.folds - len(result.missing_folds)
    print(
        f"Gathered {done} of {config.train.folds} folds and {len(run.refit_members())} refit(s) into {run.path}"
    )
    if not result.missing_folds:
        score_folds(run)  # the out-of-fold predictions of the whole training set, scored once
    elif result.missing_folds:
        print(f"Missing: {_missing(result)}.")


def _finish_study(config: Config, result: Gathered) -> None:
    import optuna

    from pipeline.fit.tune import load_study, summarize

    study = load_study(config)
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    finished = study.get_trials(deepcopy=False, states=done)
    result.missing_trials = max(0, config.tune.trials - len(finished))
    print(f"Study {config.tune.study}: {len(finished)} of {config.tune.trials} trials finished")
    summarize(config, study)


def _fetch(config: Config, gateway: KaggleGateway, entry: dict[str, Any]) -> Path:
    """A shard version's outputs, fetched once (whole, then renamed)."""
    target = shard_outputs(config, entry)
    if target.is_dir():
        return target
    partial = target.with_name(f".partial-{target.name}")
    shutil.rmtree(partial, ignore_errors=True)
    files = gateway.kernel_output(entry["id"], entry["version"], partial)
    os.replace(partial, target)
    print(f"{len(files)} output file(s) of {entry['id']} version {entry['version']} in {target}")
    return target


def check_shard(
    entry: dict[str, Any], record: dict[str, Any], group: dict[str, Any], test_ids: str | None
) -> None:
    """Refuse, in one sentence, a shard of another configuration, split or test set than its group's."""
    ref = f"{entry['id']} version {entry['version']}"
    changed = differences(group["config"], record["config"])
    if changed:
        raise ShardMismatchError(
            f"{ref} ran other settings than its group ({', '.join(changed[:5])}): its folds are not merged; "
            "push the group again (kernel push --shards N) with one configuration"
        )
    if record["split"] != group["split"]:
        raise ShardMismatchError(
            f"{ref} trained on another fold split than its group's ({group['split_name']}): its folds are not "
            "merged; push the group again without --resume"
        )
    if test_ids is not None and record.get("test_ids") not in (None, test_ids):
        raise ShardMismatchError(
            f"{ref} predicted other test images than the index here holds: run `index --rebuild` if the "
            "competition's files changed, then gather again"
        )


def _claim_run(config: Config, group: dict[str, Any], mark: bool = True) -> None:
    """Mark the local run folder as the group's (`mark`; else only check, before a push); refuse
    one holding models of other settings or split, or models trained elsewhere (the merged folds
    would not be one run)."""
    run = Run(layout.kfold_run_dir(config))
    gathered = run.read_group()
    if gathered is not None:
        changed = differences(gathered["config"], group["config"])
        if changed or gathered["split"] != group["split"]:
            what = f"other settings ({', '.join(changed[:5])})" if changed else "another fold split"
            raise ShardMismatchError(
                f"{run.path} holds folds gathered from a group of {what}: move it aside, or push the group "
                "with --run-name NAME"
            )
        return
    if run.members() or run.refit_members():
        raise ShardMismatchError(
            f"{run.path} holds models that no kernel group made: move it aside, or push the group with "
            "--run-name NAME"
        )
    if mark:
        run.write_group({"group": group["group"], "config": group["config"], "split": group["split"]})


def merge_members(config: Config, outputs: Path, record: dict[str, Any]) -> None:
    """Copy the shard's finished fold and refit folders into the local run (each whole, then renamed);
    a folder gathered before is kept."""
    run = Run(layout.kfold_run_dir(config))
    theirs = Run(layout.kfold_run_dir(_runs_in(outputs, config)))
    share = Share.from_dict(record["share"])  # what finished, even in a shard killed before its last line
    for member, target in [
        *((theirs.fold(k), run.fold(k)) for k in share.folds),
        *((theirs.refit(k), run.refit(k)) for k in share.refits),
    ]:
        if target.is_finished or not member.is_finished:
            continue
        partial = target.path.with_name(f".partial-{target.name}")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(member.path, partial)
        shutil.rmtree(target.path, ignore_errors=True)
        os.replace(partial, target.path)


def _merge_trials(config: Config, outputs: Path, entry: dict[str, Any]) -> int:
    """Add the finished trials of a shard's journal to the local study through Optuna's storage API
    (each trial once, however often the group is gathered); return how many were added."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from pipeline.fit.tune import load_study

    journal = layout.study_journal(_runs_in(outputs, config))
    if not journal.is_file():
        return 0
    source = optuna.load_study(
        study_name=config.tune.study, storage=JournalStorage(JournalFileBackend(str(journal)))
    )
    target = load_study(config)
    seen = {t.user_attrs.get(MERGED_FROM) for t in target.get_trials(deepcopy=False)}
    added = 0
    for trial in source.get_trials(states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)):
        key = f"{entry['id']} v{entry['version']} #{trial.number}"
        if key in seen:
            continue
        trial.set_user_attr(MERGED_FROM, key)
        target.add_trial(trial)
        added += 1
    return added


def _runs_in(outputs: Path, config: Config) -> Config:
    """`config` with its runs under a fetched kernel's outputs."""
    return dataclasses.replace(
        config, paths=dataclasses.replace(config.paths, runs_root=str(outputs / "runs"))
    )


def _local_test_ids(config: Config) -> str:
    from pipeline.acquire.index import prepare_index
    from pipeline.competitions import get_competition

    found = prepare_index(config, get_competition(config.competition))
    return digest("\n".join(found.test["id"].astype(str)).encode())


def _require_group(config: Config) -> dict[str, Any]:
    group = read_group(config)
    if group is None:
        raise KernelError(
            f"no kernel group of {config.competition} was pushed from here ({layout.kernel_group_file(config)}): "
            "push one with `kernel push --shards N`."
        )
    return group


def _parse(stamp: str) -> dt.datetime:
    return dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)


def _describe_done(record: dict[str, Any]) -> str:
    done = record.get("done", {})
    parts = [f"{key} {', '.join(map(str, v)) if isinstance(v, list) else v}" for key, v in done.items() if v]
    return "; ".join(parts) or "nothing"
