"""`stack`: cached backbone features, a logistic regression per fold, a validated submission;
then `blend` of the stack with a k-fold run (mechanics on the demo; quality on real photos in
test_transfer_real_weights.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import flow, layout
from pipeline.competitions import Competition
from pipeline.config import ConfigError
from pipeline.infer import stack
from pipeline.run import Run
from tests.conftest import tiny_config

RANDOM_MOBILENET = {
    "model__backbone": "mobilenet-0.25",
    "model__weights": "none",  # random weights: the mechanics, not the quality
    "stack__sizes": "32,40",
    "train__folds": 3,
}


def test_stack_writes_oof_and_a_valid_submission_and_reuses_its_features(
    tmp_path: Path,
    demo: Competition,
    demo_archive_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = tiny_config(
        tmp_path,
        paths__input_root=str(demo_archive_dir.parent),
        paths__submissions_root=str(tmp_path / "submissions"),
        **RANDOM_MOBILENET,
    )
    submission = flow.stack(config)
    run = Run(stack.stack_run_dir(config))
    assert run.name == "stack-mobilenet-0.25-32+40px"
    assert layout.submission_run(submission, demo.slug) == run.name
    oof = run.read_oof()
    assert oof["id"].is_unique and sorted(oof["fold"].unique()) == [0, 1, 2]
    assert len(oof) == len(run.read_final_oof()) and run.cv_score("log_loss") is not None
    solution = pd.read_csv(demo_archive_dir / "solution.csv")
    assert sorted(pd.read_csv(submission)["id"]) == sorted(solution["id"])
    assert len(list(layout.features_dir(config).glob("*.npy"))) == 2  # one file per size

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("images were read again instead of the cached features")

    monkeypatch.setattr(stack, "make_dataset", no_network)
    again = flow.stack(config)
    pd.testing.assert_frame_equal(pd.read_csv(again), pd.read_csv(submission))  # same features, same folds

    monkeypatch.undo()  # a cache with a NaN, and one of zeros, are computed again, not trusted
    first, second = sorted(layout.features_dir(config).glob("*.npy"))
    with_nan = np.load(first)
    with_nan[0, 0] = np.nan
    np.save(first, with_nan)
    np.save(second, np.zeros_like(np.load(second)))
    flow.stack(config)
    for path in (first, second):
        values = np.load(path)
        assert np.isfinite(values).all() and values.any()


def test_a_missing_weights_file_is_refused_before_any_feature_is_computed(
    tmp_path: Path, demo_archive_dir: Path
) -> None:
    config = tiny_config(
        tmp_path,
        paths__input_root=str(demo_archive_dir.parent),
        **{**RANDOM_MOBILENET, "model__weights": str(tmp_path / "missing.h5")},
    )
    with pytest.raises(ConfigError, match=r"missing\.h5"):  # before the index, TensorFlow or a feature
        flow.stack(config)
    assert not layout.features_dir(config).exists() and not layout.competition_dir(config).exists()


def test_a_stack_of_the_small_cnn_is_refused_in_one_sentence(tmp_path: Path) -> None:
    from pipeline.config import ConfigError

    config = tiny_config(tmp_path, model__backbone="small-cnn")
    with pytest.raises(ConfigError, match="pretrained"):
        flow.stack(config)


def test_blend_of_a_stack_and_a_kfold_run_is_no_worse_than_either_on_oof(
    tmp_path: Path, demo: Competition, demo_archive_dir: Path
) -> None:
    common = {
        "paths__input_root": str(demo_archive_dir.parent),
        "paths__submissions_root": str(tmp_path / "submissions"),
        "train__folds": 2,
    }
    cnn = tiny_config(
        tmp_path, model__backbone="small-cnn", data__image_size=32, train__head_epochs=2, **common
    )
    flow.train(cnn, report_after=False)
    flow.predict(cnn)
    stacked = tiny_config(tmp_path, **{**RANDOM_MOBILENET, **common})
    flow.stack(stacked)
    names = [layout.run_name(cnn), stack.stack_run_dir(stacked).name]
    submission = flow.blend(cnn, names)
    blended = Run(layout.competition_runs(cnn) / f"blend-{'+'.join(names)}")
    alone = [Run(layout.competition_runs(cnn) / name).cv_score("log_loss") for name in names]
    assert blended.cv_score("log_loss") <= min(alone) + 1e-6
    assert layout.submission_run(submission, demo.slug) == blended.name
    assert np.isfinite(pd.read_csv(submission)["label"]).all()


def test_pseudo_labelled_test_images_join_only_the_training_side_of_each_fold(
    tmp_path: Path, demo: Competition, demo_archive_dir: Path, capsys
) -> None:
    common = {
        "paths__input_root": str(demo_archive_dir.parent),
        "paths__submissions_root": str(tmp_path / "submissions"),
        "train__folds": 2,
    }
    teacher = tiny_config(tmp_path, **{**RANDOM_MOBILENET, **common})
    flow.stack(teacher)
    name = stack.stack_run_dir(teacher).name
    student = tiny_config(
        tmp_path,
        model__backbone="small-cnn",
        train__head_epochs=1,
        train__pseudo_label=name,
        train__pseudo_threshold=0.6,
        **common,
    )
    run = flow.train(student, report_after=False)
    out = capsys.readouterr().out
    added = int(out.split("Pseudo-labels from ")[1].split(": ")[1].split(" of ")[0].replace(",", ""))
    assert added > 0 and run.name.endswith("-pseudo")
    oof = run.read_oof()
    assert not oof["id"].str.startswith("test:").any()  # the out-of-fold score: labelled images only
    for fold in range(2):
        validation = int((oof["fold"] == fold).sum())
        assert (
            f"Run fold-{fold}: {len(oof) - validation + added:,} training and {validation:,} validation"
            in out
        )
    student_stack = tiny_config(tmp_path, **{**RANDOM_MOBILENET, **common, "train__pseudo_label": name})
    flow.stack(student_stack)  # the stack takes them too, as weighted samples
    assert stack.stack_run_dir(student_stack).name == f"{name}-pseudo"
