"""K-fold training, TTA ensembles, submission files, and submitting through the sandbox."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from pipeline.competitions import Competition, get_competition
from pipeline.ensemble import average, choose_clip, choose_space, choose_threshold, logit
from pipeline.index import ImageIndex
from pipeline.kaggle_api import KaggleGateway, SubmissionUploadError
from pipeline.kfold import train_kfold
from pipeline.ledger import read_ledger
from pipeline.predict import predict_ensemble
from pipeline.sandbox import SandboxServer
from pipeline.submission import SubmissionError, build_submission, validate_submission
from pipeline.submit import ledger_path, show_leaderboard, submit_file
from pipeline.tta import predict_views
from tests.conftest import tiny_config
from tests.test_train import KillAfterEpoch, Snapshots

QUICK = {"model__backbone": "small-cnn", "data__image_size": 48, "data__batch_size": 16, "train__folds": 2}


class KillSecondFold(KillAfterEpoch):
    """Kills the run at the end of the first epoch of the second fold."""

    fits = 0

    def on_train_begin(self, logs=None) -> None:
        type(self).fits += 1

    def on_epoch_end(self, epoch, logs=None) -> None:
        if type(self).fits == 2:
            raise KeyboardInterrupt("killed")


@pytest.fixture(scope="module")
def cv_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cv")


def test_kfold_oof_covers_every_image_once_and_resume_skips_finished_folds(
    cv_root: Path, demo: Competition, demo_index: ImageIndex
) -> None:
    config = tiny_config(cv_root, train__head_epochs=2, train__patience=5, **QUICK)
    with pytest.raises(KeyboardInterrupt):
        train_kfold(config, demo, demo_index, callbacks=[KillSecondFold(0)])
    resumed = Snapshots()
    cv = train_kfold(config, demo, demo_index, callbacks=[resumed])
    assert resumed.epochs == [1]  # fold 0 finished earlier, fold 1 continues from its epoch 1
    assert sorted(cv.oof["id"]) == sorted(demo_index.train["id"]) and cv.oof["id"].is_unique
    assert cv.scores["fold"].tolist() == ["0", "1", "all"]
    assert (cv.run_dir / "oof.csv").is_file() and (cv.run_dir / "cv.json").is_file()


def test_ensemble_of_two_folds_is_their_average_in_the_chosen_space(
    cv_root: Path, demo: Competition, demo_index: ImageIndex
) -> None:
    config = tiny_config(cv_root, train__head_epochs=2, train__patience=5, **QUICK)
    ensemble = predict_ensemble(config, demo, demo_index)
    members = [np.load(f)["test"] for f in sorted(ensemble.run_dir.glob("fold-*/tta-original+hflip.npz"))]
    assert len(members) == 2 and members[0].shape == (2, len(demo_index.test))
    space = ensemble.report["average"]
    expected = np.clip(
        average(np.concatenate(members), space), ensemble.report["clip"], 1 - ensemble.report["clip"]
    )
    np.testing.assert_allclose(ensemble.test["probability"], expected)
    for member in members:
        assert not np.allclose(ensemble.test["probability"], member.mean(axis=0))
    oof = pd.read_csv(ensemble.run_dir / "oof.csv")
    assert ensemble.report["oof_with_tta"]["log_loss"] == pytest.approx(
        ensemble.report["oof_log_loss_by_space"][space], rel=1e-6
    )
    assert len(oof) == len(demo_index.train)


def test_averaging_spaces_and_choices_made_on_oof() -> None:
    p = np.array([[0.9, 0.2], [0.6, 0.4]])
    np.testing.assert_allclose(average(p, "probability"), [0.75, 0.3])
    np.testing.assert_allclose(logit(average(p, "logit")), logit(p).mean(axis=0))
    labels = np.array([1, 1, 0, 0, 1, 0] * 20)
    confident = np.where(labels == 1, 0.999, 0.001)
    confident[:3] = 1 - confident[:3]  # three confident mistakes: clipping pays
    c, _ = choose_clip(confident, labels)
    assert c > 0
    assert choose_clip(np.where(labels == 1, 0.99, 0.01), labels)[0] == 0.0  # nothing to gain
    threshold, accuracy = choose_threshold(np.where(labels == 1, 0.35, 0.25), labels)
    assert 0.25 < threshold <= 0.35 and accuracy == 1.0
    space, losses = choose_space(np.stack([confident, np.where(labels == 1, 0.6, 0.4)]), labels)
    assert losses[space] == min(losses.values())


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


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (pd.DataFrame({"id": [1, 2], "label": [0.1, 0.2]}), "missing"),
        (pd.DataFrame({"id": [1, 2, 2, 3], "label": [0.1, 0.2, 0.2, 0.3]}), "more than once"),
        (pd.DataFrame({"id": [1, 2, 3], "label": [0.1, np.nan, 0.3]}), "empty or not numbers"),
        (pd.DataFrame({"id": [1, 2, 3], "label": [0.1, 1.5, 0.3]}), "outside"),
        (pd.DataFrame({"ID": [1, 2, 3], "label": [0.1, 0.2, 0.3]}), "header"),
        (pd.DataFrame({"id": [1, 2, 4], "label": [0.1, 0.2, 0.3]}), "missing"),
    ],
)
def test_broken_submissions_are_refused(broken: pd.DataFrame, message: str) -> None:
    with pytest.raises(SubmissionError, match=message):
        validate_submission(broken, SAMPLE, get_competition("dogs-vs-cats-redux-kernels-edition"))


def test_hard_labels_for_accuracy_competitions() -> None:
    competition = get_competition("dogs-vs-cats")
    predictions = pd.DataFrame({"id": ["1", "2"], "probability": [0.9, 0.1], "label": [1, 0]})
    table, missing = build_submission(competition, predictions, SAMPLE.assign(label=0), train_prior=0.6)
    assert table["label"].tolist() == [1, 0, 1] and missing == ["3"]  # an unreadable image gets the majority
    validate_submission(table, SAMPLE, competition)
    with pytest.raises(SubmissionError, match="whole class numbers"):
        validate_submission(table.assign(label=[0.9, 0.1, 0.6]), SAMPLE, competition)


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
    ledger = read_ledger(ledger_path(config))
    assert ledger["ref"].tolist() == [str(ref)] and ledger["status"].tolist() == ["complete"]
    assert float(ledger["public_score"].iloc[0]) == pytest.approx(-np.log(0.98), abs=1e-4)
    assert "rank 1 of 2" in capsys.readouterr().out

    sandbox.state.fail_uploads = True
    with pytest.raises(SubmissionUploadError, match="kept"):
        submit_file(config, demo, perfect, sample, KaggleGateway())
    assert read_ledger(ledger_path(config))["status"].tolist() == ["complete", "failed"]


def test_an_invalid_file_is_never_uploaded(sandbox: SandboxServer, tmp_path: Path, demo: Competition) -> None:
    config = tiny_config(tmp_path, paths__submissions_root=str(tmp_path / "submissions"))
    broken = tmp_path / "broken.csv"
    SAMPLE.iloc[:2].to_csv(broken, index=False)
    with pytest.raises(SubmissionError, match="not uploaded"):
        submit_file(config, demo, broken, SAMPLE, KaggleGateway())
    assert sandbox.state.calls == []
    assert read_ledger(ledger_path(config))["status"].tolist() == ["invalid"]
