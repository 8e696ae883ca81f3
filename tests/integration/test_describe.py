"""describe-competition: a table inferred from the download alone matches the one written by hand,
for each supported layout, and the described competition indexes like the original."""

from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path

import pytest

from pipeline import flow
from pipeline.acquire.describe import DescribeError, describe_download
from pipeline.acquire.index import prepare_index
from pipeline.competitions import USER_FILE_ENV, UnknownCompetitionError, get_competition
from pipeline.demo.generate import generate_competition
from pipeline.demo.sandbox import SandboxServer
from tests.conftest import tiny_config

FIELDS = (
    "train_dir",
    "test_dir",
    "train_archive",
    "test_archive",
    "sample_submission",
    "labels",
    "labels_csv",
    "labels_id_column",
    "labels_label_column",
    "labels_id_has_extension",
    "classes",
    "id_column",
    "label_column",
    "submission_kind",
)


def folders_layout():
    return dataclasses.replace(
        get_competition("aerial-cactus-identification"), labels="folders", labels_csv=""
    )


@pytest.mark.parametrize(
    ("original", "extension"),
    [
        (lambda: get_competition("dogs-vs-cats-demo"), ".jpg"),  # nested archives, labels in file names
        (lambda: get_competition("dogs-vs-cats"), ".jpg"),  # hard labels
        (lambda: get_competition("aerial-cactus-identification"), ".jpg"),  # CSV, ids are file names
        (lambda: get_competition("histopathologic-cancer-detection"), ".tif"),  # CSV, ids are stems
        (folders_layout, ".jpg"),  # one folder per class
    ],
)
def test_the_described_table_matches_the_hand_written_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, original, extension: str
) -> None:
    monkeypatch.setenv(USER_FILE_ENV, str(tmp_path / "competitions.toml"))
    known = dataclasses.replace(original(), slug="a-new-competition")
    generate_competition(known, tmp_path / "a-new-competition", 6, 5, extension=extension)
    with pytest.raises(UnknownCompetitionError, match="describe-competition a-new-competition"):
        get_competition("a-new-competition")
    config = tiny_config(tmp_path)
    assert flow.describe_competition(config, "a-new-competition") == tmp_path / "competitions.toml"
    described = get_competition("a-new-competition")
    fields = [f for f in FIELDS if known.labels == "csv" or not f.startswith("labels_")]
    assert {f: getattr(described, f) for f in fields} == {f: getattr(known, f) for f in fields}
    index = prepare_index(tiny_config(tmp_path, competition="a-new-competition"), described)
    assert len(index.train) == 12 and len(index.test) == 5 and len(index.rejects) == 3
    assert sorted(index.train["label"].tolist()) == [0] * 6 + [1] * 6


def test_a_download_without_a_sample_submission_is_not_guessed(tmp_path: Path) -> None:
    archive = tmp_path / "x.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("train/cat.1.jpg", b"")
    with pytest.raises(DescribeError, match="no sample submission"):
        describe_download("x", archive)


def test_an_unknown_competition_is_downloaded_then_described(
    sandbox: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(USER_FILE_ENV, str(tmp_path / "competitions.toml"))
    cactus = dataclasses.replace(get_competition("aerial-cactus-identification"), slug="cactus-again")
    sandbox.state.archives["cactus-again"] = generate_competition(cactus, tmp_path / "served", 6, 5)
    flow.describe_competition(tiny_config(tmp_path / "data"), "cactus-again")
    assert (tmp_path / "data" / "cactus-again" / "cactus-again.zip").is_file()
    assert get_competition("cactus-again").labels_csv == "train.csv"
    with pytest.raises(UnknownCompetitionError, match="described already"):
        flow.describe_competition(tiny_config(tmp_path / "data"), "cactus-again")


@pytest.mark.parametrize(
    ("slug", "classes", "extension"),
    [
        ("dog-breed-identification", ("collie", "affenpinscher", "beagle"), ".jpg"),  # one column per class
        ("plant-seedlings-classification", ("Black-grass", "Common Chickweed", "Maize"), ".png"),  # names
        ("cassava-leaf-disease-classification", ("0", "1", "2"), ".jpg"),  # class numbers
    ],
)
def test_a_many_class_layout_is_described_like_its_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slug: str, classes: tuple[str, ...], extension: str
) -> None:
    monkeypatch.setenv(USER_FILE_ENV, str(tmp_path / "competitions.toml"))
    known = dataclasses.replace(get_competition(slug), slug="a-new-competition", classes=classes)
    generate_competition(known, tmp_path / "a-new-competition", 6, 5, extension=extension)
    flow.describe_competition(tiny_config(tmp_path), "a-new-competition")
    described = get_competition("a-new-competition")
    fields = [f for f in FIELDS if known.labels == "csv" or not f.startswith("labels_")]
    assert {f: getattr(described, f) for f in fields} == {f: getattr(known, f) for f in fields}
    index = prepare_index(tiny_config(tmp_path, competition="a-new-competition"), described)
    assert index.classes == classes and len(index.train) == 18 and len(index.test) == 5


@pytest.mark.parametrize("given", ["zip", "folder"])
def test_a_local_zip_or_folder_is_described_without_kaggle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    monkeypatch.setenv(USER_FILE_ENV, str(tmp_path / "competitions.toml"))
    monkeypatch.setenv("PIPELINE_KAGGLE_ENDPOINT", "http://127.0.0.1:9")  # nothing may be asked
    known = dataclasses.replace(get_competition("aerial-cactus-identification"), slug="cactus-local")
    archive = generate_competition(known, tmp_path / "mine" / "cactus-local", 6, 5)
    local, input_root = archive, ""
    if given == "folder":
        local = tmp_path / "unpacked" / "cactus-local"
        with zipfile.ZipFile(archive) as opened:
            opened.extractall(local)
        input_root = str(local.parent)
    config = tiny_config(tmp_path / "data")
    flow.describe_competition(config, str(local))
    described = get_competition("cactus-local")
    assert described.labels_csv == "train.csv" and described.id_column == known.id_column
    index = prepare_index(
        tiny_config(tmp_path / "data", competition="cactus-local", paths__input_root=input_root), described
    )
    assert len(index.train) == 12 and len(index.test) == 5
