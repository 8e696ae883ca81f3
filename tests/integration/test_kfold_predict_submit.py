"""K-fold training, prediction with any finished run (k-fold or holdout), submitting through the sandbox."""

from __future__ import annotations

import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from pipeline import flow, layout
from pipeline.acquire.index import ImageIndex
from pipeline.competitions import Competition
from pipeline.demo.sandbox import SandboxServer
from pipeline.fit.cross_validation import train_kfold
from pipeline.fit.metrics import binary_scores
from pipeline.fit.refit import NoFoldsError, chosen_epochs, train_refits
from pipeline.infer.postprocess import average
from pipeline.infer.predict import predict_run
from pipeline.infer.tta import predict_views
from pipeline.kaggle_api import KaggleGateway, SubmissionUploadError
from pipeline.run import Run
from pipeline.submit.ledger import read_ledger
from pipeline.submit.submission_file import SubmissionError, validate_submission
from pipeline.submit.upload import show_leaderboard, submit_file
from tests.callbacks import Snapshots
from tests.conftest import tiny_config

QUICK = {"model__backbone": "small-cnn", "data__image_size": 48, "data__batch_size": 16, "train__folds": 2}
SHORT = {"train__head_epochs": 2, "train__patience": 5}


class KillSecondFold(keras.callbacks.Callback):
    """Kills the run at the end of the first epoch of the second fold."""

    def __init__(self) -> None:
        super().__init__()
        self.fits = 0

    def on_train_begin(self, logs=None) -> None:
        self.fits += 1

    def on_epoch_end(self, epoch, logs=None) -> None:
        if self.fits == 2:
            raise KeyboardInterrupt("killed")


@pytest.fixture(scope="module")
def kfold_run(tmp_path_factory: pytest.TempPathFactory, demo: Competition, demo_index: ImageIndex):
    """A finished 2-fold run of the small CNN on the small demo competition (trained once per module)."""
    config = tiny_config(tmp_path_factory.mktemp("cv"), **SHORT, **QUICK)
    return config, train_kfold(config, demo, demo_index)


def test_kfold_oof_covers_every_image_once(kfold_run: tuple, demo_index: ImageIndex) -> None:
    _, cv = kfold_run
    oof = cv.read_oof()
    assert sorted(oof["id"]) == sorted(demo_index.train["id"]) and oof["id"].is_unique
    assert cv.read_cv_table()["fold"].astype(str).tolist() == ["0", "1", "all"]
    assert [m.name for m in cv.members()] == ["fold-0", "fold-1"]
    folds = oof.groupby("fold")["id"].apply(set)
    assert folds[0].isdisjoint(folds[1])


def test_a_killed_kfold_run_resumes_and_skips_finished_folds(
    tmp_path: Path, demo: Competition, demo_index: ImageIndex
) -> None:
    config = tiny_config(tmp_path, **SHORT, **QUICK)
    with pytest.raises(KeyboardInterrupt):
        train_kfold(config, demo, demo_index, callbacks=[KillSecondFold()])
    resumed = Snapshots()
    train_kfold(config, demo, demo_index, callbacks=[resumed])
    assert resumed.epochs == [1]  # fold 0 finished earlier, fold 1 continues from its epoch 1


def test_prediction_averages_the_fold_models_in_the_space_chosen_on_oof(
    kfold_run: tuple, demo: Competition, demo_index: ImageIndex
) -> None:
    config, cv = kfold_run
    prediction = predict_run(config, demo, demo_index, cv)
    cached = [np.load(m.tta_cache(["original", "hflip"])) for m in cv.members()]
    assert len(cached) == 2 and cached[0]["test"].shape == (2, len(demo_index.test))
    space, c = prediction.postprocessing.average, prediction.postprocessing.clip
    assert cv.read_postprocessing() == prediction.postprocessing
    expected = np.clip(average(np.concatenate([m["test"] for m in cached]), space), c, 1 - c)
    np.testing.assert_allclose(prediction.test["probability"], expected)
    for member in cached:
        assert not np.allclose(prediction.test["probability"], member["test"].mean(axis=0))
    labels = np.concatenate([m.read_validation()["label"] for m in cv.members()])
    oof_views = np.concatenate([m["validation"] for m in cached], axis=1)
    recomputed = binary_scores(labels, average(oof_views, space))["log_loss"]
    assert prediction.postprocessing.oof_with_tta["log_loss"] == pytest.approx(recomputed, rel=1e-6)
    assert len(labels) == len(demo_index.train)


def test_a_holdout_run_predicts_and_writes_a_valid_submission(
    tmp_path: Path, demo: Competition, demo_archive_dir: Path
) -> None:
    config = tiny_config(
        tmp_path,
        paths__input_root=str(demo_archive_dir.parent),
        paths__submissions_root=str(tmp_path / "submissions"),
        **SHORT,
        **QUICK,
    )
    run = flow.train(config, holdout=True)
    assert run.path == layout.holdout_run_dir(config)
    submission = flow.predict(config)
    assert layout.submission_run(submission, demo.slug) == run.name
    assert run.read_postprocessing().folds == 1
    solution = pd.read_csv(demo_archive_dir / "solution.csv")
    validate_submission(pd.read_csv(submission), solution.assign(label=0.5), demo)
    assert layout.latest_submission(config) == submission


def test_tta_calls_the_model_on_every_view() -> None:
    inputs = keras.Input((4, 4, 3))
    left_minus_right = keras.layers.Lambda(
        lambda x: tf.reduce_mean(x[:, :, :2] - x[:, :, 2:], axis=[1, 2, 3])
    )(inputs)
    model = keras.Model(
        inputs, keras.layers.Activation("sigmoid")(keras.layers.Reshape((1,))(left_minus_right))
    )
    images = np.random.default_rng(0).uniform(0, 1, (5, 4, 4, 3)).astype(np.float32)
    dataset = tf.data.Dataset.from_tensor_slices(images).batch(2)
    views = predict_views(model, dataset, ["original", "hflip", "zoom"])
    assert views.shape == (3, 5)
    np.testing.assert_allclose(views[0], model.predict(images, verbose=0)[:, 0], rtol=1e-5)
    np.testing.assert_allclose(views[1], model.predict(images[:, :, ::-1], verbose=0)[:, 0], rtol=1e-5)
    assert not np.allclose(views[0], views[1])


SAMPLE = pd.DataFrame({"id": [1, 2, 3], "label": [0.5, 0.5, 0.5]})


def test_submit_and_leaderboard_through_the_real_client(
    sandbox: SandboxServer, tmp_path: Path, demo: Competition, demo_archive_dir: Path, capsys
) -> None:
    config = tiny_config(tmp_path, paths__submissions_root=str(tmp_path / "submissions"))
    solution = pd.read_csv(demo_archive_dir / "solution.csv")
    sample = solution.assign(label=0.5)
    perfect = tmp_path / "perfect.csv"
    solution.assign(label=solution["label"].clip(0.02, 0.98)).to_csv(perfect, index=False)
    ref = submit_file(config, demo, perfect, sample, KaggleGateway())
    assert sandbox.state.calls == ["StartSubmissionUpload", "CreateSubmission"]
    show_leaderboard(config, demo, KaggleGateway())
    ledger = read_ledger(layout.ledger_path(config))
    assert ledger["ref"].tolist() == [str(ref)] and ledger["status"].tolist() == ["complete"]
    assert float(ledger["public_score"].iloc[0]) == pytest.approx(-np.log(0.98), abs=1e-4)
    assert "rank 1 of 2" in capsys.readouterr().out

    copy = tmp_path / "same-bytes.csv"
    copy.write_bytes(perfect.read_bytes())
    assert submit_file(config, demo, copy, sample, KaggleGateway()) is None  # the same content: skipped
    assert len(sandbox.state.calls) == 2 + 2  # ListSubmissions and the leaderboard, no upload
    sandbox.state.fail_uploads = True
    with pytest.raises(SubmissionUploadError, match="kept"):
        submit_file(config, demo, perfect, sample, KaggleGateway(), force=True)
    assert read_ledger(layout.ledger_path(config))["status"].tolist() == ["complete", "failed"]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (SAMPLE.iloc[:2].to_csv(index=False).encode(), "missing"),
        (b"", "empty"),
        (bytes(range(256)) * 1000, "not UTF-8"),
        (b"x" * 100_000 + b",label\n1,0.5\n", "header"),
    ],
)
def test_an_invalid_file_is_never_uploaded_and_is_recorded(
    sandbox: SandboxServer, tmp_path: Path, demo: Competition, content: bytes, reason: str
) -> None:
    config = tiny_config(tmp_path, paths__submissions_root=str(tmp_path / "submissions"))
    broken = tmp_path / "broken.csv"
    broken.write_bytes(content)
    with pytest.raises(SubmissionError, match="not uploaded"):
        submit_file(config, demo, broken, SAMPLE, KaggleGateway())
    assert sandbox.state.calls == []
    ledger = read_ledger(layout.ledger_path(config))
    assert ledger["status"].tolist() == ["invalid"]
    assert reason in ledger["note"].iloc[0] and len(ledger["note"].iloc[0]) <= 300


def test_refit_models_train_on_every_image_and_join_the_ensemble(
    tmp_path: Path, demo: Competition, demo_index: ImageIndex
) -> None:
    config = tiny_config(tmp_path, **SHORT, **QUICK, train__refit=1)
    cv = train_kfold(config, demo, demo_index)
    with pytest.raises(NoFoldsError):
        train_refits(config, demo, demo_index, Run(tmp_path / "nothing"))
    (refit,) = train_refits(config, demo, demo_index, cv)
    assert refit == cv.refit(0) and refit.is_finished and not refit.has_validation
    assert [m.name for m in cv.members()] == ["fold-0", "fold-1"]  # OOF still comes from the folds
    assert refit.read_history()["epoch"].max() + 1 == sum(chosen_epochs(cv.members()).values())
    every = predict_run(config, demo, demo_index, cv)
    assert every.postprocessing.models == ["fold-0", "fold-1", "refit-0"]
    folds_only = predict_run(
        tiny_config(tmp_path, **SHORT, **QUICK, predict__ensemble="folds"), demo, demo_index, cv
    )
    assert folds_only.postprocessing.models == ["fold-0", "fold-1"]
    assert folds_only.postprocessing.oof_with_tta == every.postprocessing.oof_with_tta
    assert not np.allclose(folds_only.test["probability"], every.test["probability"])


def test_no_refit_starts_past_the_time_budget(
    tmp_path: Path, demo: Competition, demo_index: ImageIndex
) -> None:
    config = tiny_config(tmp_path, **SHORT, **QUICK, train__refit=2)
    cv = train_kfold(config, demo, demo_index)
    assert train_refits(config, demo, demo_index, cv, deadline=time.monotonic() + 0.001) == []
    assert cv.refit_members() == []


class KilledAfterKaggleTookTheFile(KaggleGateway):
    """A submit whose process dies after the server accepted the file, before its answer is recorded."""

    def submit(self, competition: str, path: Path, message: str) -> int:
        super().submit(competition, path, message)
        raise KeyboardInterrupt("killed")


def test_a_submit_killed_after_the_upload_is_not_uploaded_again_and_leaderboard_adds_the_unknown(
    sandbox: SandboxServer, tmp_path: Path, demo: Competition, demo_archive_dir: Path
) -> None:
    config = tiny_config(tmp_path, paths__submissions_root=str(tmp_path / "submissions"))
    solution = pd.read_csv(demo_archive_dir / "solution.csv")
    sample, file = solution.assign(label=0.5), tmp_path / "first.csv"
    solution.assign(label=0.7).to_csv(file, index=False)
    with pytest.raises(KeyboardInterrupt):
        submit_file(config, demo, file, sample, KilledAfterKaggleTookTheFile())
    assert read_ledger(layout.ledger_path(config))["status"].tolist() == ["uploading"]
    assert submit_file(config, demo, file, sample, KaggleGateway()) is None  # the rerun finds it on Kaggle
    assert sandbox.state.calls.count("CreateSubmission") == 1
    ledger = read_ledger(layout.ledger_path(config))
    assert ledger["ref"].tolist() == [str(sandbox.state.submissions[0]["ref"])]
    elsewhere = tmp_path / "from-the-website.csv"  # a submission the ledger never saw
    solution.assign(label=0.6).to_csv(elsewhere, index=False)
    KaggleGateway().submit(demo.slug, elsewhere, "uploaded on kaggle.com")
    for _ in range(2):  # added once, however often the leaderboard is shown
        show_leaderboard(config, demo, KaggleGateway())
    ledger = read_ledger(layout.ledger_path(config))
    assert sorted(ledger["ref"]) == sorted(str(s["ref"]) for s in sandbox.state.submissions)
    assert ledger["status"].tolist() == ["complete", "complete"] and ledger["public_score"].ne("").all()
