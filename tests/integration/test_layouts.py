"""Competitions of other layouts, each as a generated miniature in Kaggle's layout: labels in a CSV
(ids with or without the file extension, .tif images), the folders in the download itself, and
ROC AUC scoring, end to end through index, train, predict and a validated submission."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest

from pipeline import flow
from pipeline.acquire.index import prepare_index
from pipeline.acquire.unpack import unpack_competition
from pipeline.competitions import get_competition
from pipeline.demo.generate import generate_competition
from pipeline.run import Run
from pipeline.submit.submission_file import validate_submission
from tests.conftest import tiny_config

SMALL = {
    "model__backbone": "small-cnn",
    "train__folds": 2,
    "train__head_epochs": 2,
    "train__head_learning_rate": 3e-3,
}


@pytest.mark.parametrize(
    ("slug", "extension"),
    [("aerial-cactus-identification", ".jpg"), ("histopathologic-cancer-detection", ".tif")],
)
def test_a_csv_labelled_competition_runs_end_to_end(tmp_path: Path, slug: str, extension: str) -> None:
    competition = get_competition(slug)
    served = tmp_path / "served" / slug
    generate_competition(competition, served, train_per_class=20, test_size=12, seed=3, extension=extension)
    config = tiny_config(tmp_path, competition=slug, paths__input_root=str(served.parent), **SMALL)

    index = prepare_index(config, competition)
    labels = pd.read_csv(tmp_path / slug / competition.labels_csv, dtype=str)
    truth = dict(
        zip(labels[competition.labels_id_column], labels[competition.labels_label_column], strict=True)
    )
    assert len(index.train) == 40 and len(index.rejects) == 3 and len(index.test) == 12
    assert all(
        truth[i] == competition.classes[label]
        for i, label in zip(index.train["id"], index.train["label"], strict=True)
    )
    if extension == ".tif":
        assert index.train["path"].str.endswith(".png").all()  # converted for TensorFlow

    run = flow.train(config, report_after=False)
    submission = pd.read_csv(flow.predict(config))
    sample = pd.read_csv(tmp_path / slug / competition.sample_submission)
    validate_submission(submission, sample, competition)
    assert list(submission.columns) == [competition.id_column, competition.label_column]
    assert 0.0 <= Run(run.path).read_postprocessing().cv_score("roc_auc") <= 1.0


def test_a_download_with_the_folders_inside_unpacks_once(tmp_path: Path) -> None:
    competition = get_competition("aerial-cactus-identification")
    served = tmp_path / "served"
    generate_competition(competition, served, train_per_class=4, test_size=3, broken=False)
    files = unpack_competition(competition, served, tmp_path / "data")
    assert files.train_dir == tmp_path / "data" / "train" and len(list(files.train_dir.glob("*.jpg"))) == 8
    assert files.labels == tmp_path / "data" / "train.csv" and files.sample_submission.is_file()
    (served / competition.archive).unlink()  # unpacked once: the download is not needed again
    assert unpack_competition(competition, served, tmp_path / "data") == files


@pytest.mark.parametrize(
    ("slug", "classes", "extension"),
    [
        ("dog-breed-identification", ("affenpinscher", "beagle", "collie"), ".jpg"),
        ("plant-seedlings-classification", ("Black-grass", "Common Chickweed", "Maize"), ".png"),
        ("cassava-leaf-disease-classification", ("0", "1", "2"), ".jpg"),
    ],
)
def test_a_many_class_competition_runs_end_to_end(
    tmp_path: Path, slug: str, classes: tuple[str, ...], extension: str
) -> None:
    competition = get_competition(slug)
    assert competition.classes == ()  # read from the data: the labels, the class folders or the sample
    served = tmp_path / "served" / slug
    generate_competition(
        dataclasses.replace(competition, classes=classes), served, 12, 9, seed=5, extension=extension
    )
    config = tiny_config(tmp_path, competition=slug, paths__input_root=str(served.parent), **SMALL)

    index = prepare_index(config, competition)
    assert index.classes == classes and len(index.train) == 36 and len(index.test) == 9
    assert index.train["label"].value_counts().to_dict() == {0: 12, 1: 12, 2: 12}
    run = flow.train(config, report_after=False)
    submission = pd.read_csv(flow.predict(config))
    sample = pd.read_csv(tmp_path / slug / competition.sample_submission)
    resolved = index.resolve(competition)
    validate_submission(submission, sample, resolved)
    assert list(submission.columns) == list(sample.columns)
    assert (
        submission[competition.id_column].astype(str).tolist()
        == sample[competition.id_column].astype(str).tolist()
    )
    if competition.submission_kind == "class_probabilities":
        assert submission.drop(columns=competition.id_column).sum(axis=1).round(4).eq(1).all()
    elif competition.submission_kind == "class_name":
        assert set(submission[competition.label_column]) <= set(classes)
    chosen = Run(run.path).read_postprocessing()
    assert chosen.temperature is not None and 0.0 <= chosen.cv_score(competition.metric) <= 1.5
    assert (Run(run.path).path / "cv.csv").is_file()
