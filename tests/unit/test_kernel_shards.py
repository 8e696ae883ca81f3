"""Shares of a kernel group: who owns which fold, refit and trial; the shipped split; the checks."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from pipeline import layout
from pipeline.config import Config, ConfigError, apply_settings, validate
from pipeline.kernel.group import ShardMismatchError, check_shard, check_shardable, merge_members
from pipeline.kernel.shards import (
    Share,
    decode_split,
    differences,
    digest,
    encode_split,
    plan_shares,
    shard_slug,
)
from pipeline.run import Run
from tests.conftest import tiny_config


def test_fold_k_goes_to_shard_k_mod_n_and_the_refits_continue_the_round() -> None:
    shares = plan_shares(3, folds=[0, 1, 2, 3, 4], refits=[0, 1], trials=0)
    assert [(s.index, s.folds, s.refits) for s in shares] == [
        (1, (0, 3), (1,)),
        (2, (1, 4), ()),
        (3, (2,), (0,)),
    ]
    owned = sorted(k for s in shares for k in s.folds)
    assert owned == [0, 1, 2, 3, 4]  # every fold once


def test_trials_are_shared_as_evenly_as_possible_with_a_new_worker_number_each() -> None:
    assert [s.trials for s in plan_shares(2, [], [], 6)] == [3, 3]
    assert [s.trials for s in plan_shares(3, [], [], 7)] == [3, 2, 2]
    resumed = plan_shares(2, [], [], 3, first_worker=2)
    assert [s.worker for s in resumed] == [2, 3]  # never a worker of an earlier round: no repeated draws


def test_a_resume_pushes_only_the_missing_work_and_no_empty_shard() -> None:
    shares = plan_shares(3, folds=[2], refits=[], trials=0, refit_epochs={"head": 3, "fine": 1})
    assert [(s.index, s.folds) for s in shares] == [(1, (2,))]
    assert plan_shares(2, [], [], 0) == []


def test_a_share_survives_its_trip_through_the_script() -> None:
    share = Share(2, 3, folds=(1, 4), refits=(0,), trials=0, worker=5, refit_epochs={"head": 2, "fine": 0})
    assert Share.from_dict(json.loads(json.dumps(share.to_dict()))) == share
    assert share.describe() == "folds 1, 4 and refit 0"


def test_the_split_travels_byte_for_byte() -> None:
    split = b"id,label,fold\n0001,0,2\nNA,1,0\n" * 1000
    assert decode_split(encode_split(split)) == split
    assert len(encode_split(split)) < len(split) / 10  # deflated: 25,000 ids fit Kaggle's 1 MiB script


def test_shard_slugs_stay_within_kaggles_limit_and_distinct() -> None:
    base = "a-very-long-competition-name-that-goes-on-and-on-pipeline"
    slugs = [shard_slug(base, i) for i in range(1, 12)]
    assert all(len(s) <= 50 for s in slugs) and len(set(slugs)) == 11
    assert shard_slug("cats-pipeline", 2) == "cats-pipeline-2"


def _values(**settings: object) -> dict:
    return json.loads(validate(apply_settings(Config(), settings, "test")).to_json())


def test_settings_a_kernel_resolves_itself_are_not_differences() -> None:
    ours = _values()
    theirs = _values(
        **{
            "kernel.slug": "x-2",
            "paths.runs_root": "/kaggle/working/runs",
            "model.weights": "/kaggle/input/w.h5",
            "train.time_budget": 40000.0,
        }
    )
    assert differences(ours, theirs) == []
    assert differences(ours, _values(**{"data.seed": 7, "train.folds": 3})) == ["data.seed", "train.folds"]


def _entry_and_group() -> tuple[dict, dict]:
    group = {"config": _values(), "split": digest(b"split"), "split_name": "folds-5-seed42.csv"}
    return {"id": "me/cats-pipeline-2", "version": 1}, group


def test_a_shard_of_other_settings_split_or_test_images_is_refused() -> None:
    entry, group = _entry_and_group()
    record = {"config": group["config"], "split": group["split"], "test_ids": "abc"}
    check_shard(entry, record, group, "abc")  # the same: accepted
    with pytest.raises(ShardMismatchError, match=r"data\.seed"):
        check_shard(entry, {**record, "config": _values(**{"data.seed": 1})}, group, "abc")
    with pytest.raises(ShardMismatchError, match="fold split"):
        check_shard(entry, {**record, "split": digest(b"another")}, group, "abc")
    with pytest.raises(ShardMismatchError, match="test images"):
        check_shard(entry, record, group, "def")


@pytest.mark.parametrize(
    ("settings", "refused"),
    [
        ({"kernel.task": "all", "kernel.shards": 2}, "task all"),
        ({"kernel.shards": 6, "train.folds": 5}, "more than the 5 folds"),
        ({"kernel.shards": 2, "train.recipe": "stack"}, "stack recipe"),
        ({"kernel.task": "tune", "kernel.shards": 3, "tune.trials": 2}, "more than the 2 trials"),
        (
            {
                "kernel.task": "tune",
                "kernel.shards": 2,
                "tune.storage": "postgresql://h/db",
                "kernel.internet": "off",
            },
            "internet",
        ),
    ],
)
def test_what_shards_cannot_split_is_refused_before_any_upload(settings: dict, refused: str) -> None:
    with pytest.raises(ConfigError, match=refused):
        check_shardable(validate(apply_settings(Config(), settings, "test")))


def test_the_auto_recipe_is_pushed_as_its_fine_tuned_folds() -> None:
    config = check_shardable(validate(apply_settings(Config(), {"kernel.shards": 2}, "test")))
    assert config.train.recipe == "finetune"


def test_a_shard_killed_after_one_of_its_folds_leaves_that_fold_to_merge(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, train__folds=4)
    outputs = tmp_path / "kernel-cats-pipeline-1-v1"
    theirs = Run(
        layout.kfold_run_dir(
            dataclasses.replace(
                config, paths=dataclasses.replace(config.paths, runs_root=str(outputs / "runs"))
            )
        )
    )
    theirs.fold(0).path.mkdir(parents=True)
    theirs.fold(0).write_metrics({"log_loss": 0.2})  # finished
    theirs.fold(2).path.mkdir(parents=True)  # cut off before its metrics: not finished
    record = {"share": Share(1, 2, folds=(0, 2)).to_dict(), "done": {}}  # killed before its last line
    merge_members(config, outputs, record)
    ours = Run(layout.kfold_run_dir(config))
    assert [m.name for m in ours.members()] == ["fold-0"]
    assert not ours.fold(2).path.exists()
