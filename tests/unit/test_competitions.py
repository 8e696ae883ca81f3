"""Competition tables: what they may say, and how each label source names a training file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pipeline.acquire.index import train_labeller
from pipeline.acquire.unpack import CompetitionFiles
from pipeline.competitions import get_competition


def test_each_metric_knows_its_direction() -> None:
    assert not get_competition("dogs-vs-cats-redux-kernels-edition").higher_is_better  # log loss
    assert get_competition("dogs-vs-cats").higher_is_better  # accuracy
    assert get_competition("aerial-cactus-identification").higher_is_better  # ROC AUC


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"labels": "folder"}, "labels is 'folder'"),
        ({"labels": "csv", "labels_csv": ""}, "needs labels_csv"),
        ({"labels": "pattern", "train_pattern": ""}, "needs a train_pattern"),
        ({"metric": "f2"}, "metric is 'f2'"),
    ],
)
def test_a_table_that_cannot_work_is_refused_naming_the_field(change: dict, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        dataclasses.replace(get_competition("aerial-cactus-identification"), **change)


def test_class_folders_give_the_label_and_a_unique_id(tmp_path: Path) -> None:
    folders = dataclasses.replace(get_competition("dogs-vs-cats"), labels="folders", classes=("cat", "dog"))
    files = CompetitionFiles(tmp_path / "train", tmp_path / "test", tmp_path / "sample.csv")
    label = train_labeller(folders, files)
    assert label(Path("dog/1.jpg")) == ("dog/1.jpg", 1) and label(Path("cat/1.jpg")) == ("cat/1.jpg", 0)
    assert label(Path("horse/1.jpg")) is None and label(Path("1.jpg")) is None


def test_a_labels_csv_matches_ids_with_or_without_the_extension(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("id,has_cactus\na1.jpg,1\nb2.jpg,0\n")
    cactus = get_competition("aerial-cactus-identification")
    files = CompetitionFiles(
        tmp_path / "train", tmp_path / "test", tmp_path / "s.csv", tmp_path / "train.csv"
    )
    label = train_labeller(cactus, files)
    assert label(Path("a1.jpg")) == ("a1.jpg", 1) and label(Path("b2.jpg")) == ("b2.jpg", 0)
    assert label(Path("c3.jpg")) is None  # not in the CSV: set aside
    stems = dataclasses.replace(cactus, labels_id_has_extension=False)
    (tmp_path / "train.csv").write_text("id,has_cactus\na1,1\n")
    assert train_labeller(stems, files)(Path("a1.tif")) == ("a1", 1)
