"""Hostile probes, round three: ids kept as text end to end, runs of another competition refused,
slugs, state archives, disks and blends; each reproduces a defect that once got past."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipeline import flow
from pipeline.competitions import USER_FILE_ENV, get_competition
from pipeline.tables import read_text_csv
from tests.conftest import tiny_config

TINY = {
    "model__backbone": "small-cnn",
    "train__folds": 2,
    "train__head_epochs": 1,
    "train__fine_epochs": 0,
    "train__head_learning_rate": 3e-3,
}


def write_folders_competition(
    root: Path,
    slug: str,
    test_ids: list[str],
    classes: tuple[str, ...] = ("cat", "dog"),
    kind: str = "probability",
) -> Path:
    """A competition of one's own in the class-folders layout, its table in a competitions file;
    the images' colour is their class. Returns the input root holding <slug>/."""
    served = root / "served" / slug
    rng = np.random.default_rng(0)
    for k, name in enumerate(classes):
        folder = served / "train" / name
        folder.mkdir(parents=True)
        for i in range(8):
            colour = (255 * (k == 0), 255 * (k == 1), 60 * k + int(rng.integers(0, 20)))
            Image.new("RGB", (24, 24), colour).save(folder / f"{name}-{i}.png")
    (served / "test").mkdir()
    for n, image_id in enumerate(test_ids):
        k = n % len(classes)
        Image.new("RGB", (24, 24), (255 * (k == 0), 255 * (k == 1), 60 * k)).save(
            served / "test" / f"{image_id}.png"
        )
    column = "label"
    sample = {"id": test_ids, column: ["0.5"] * len(test_ids)}
    pd.DataFrame(sample).to_csv(served / "sample_submission.csv", index=False)
    listed = ", ".join(f'"{c}"' for c in classes)
    table = root / "competitions.toml"
    table.write_text(
        f'["{slug}"]\ntitle = "Probe"\ntrain_dir = "train"\ntest_dir = "test"\n'
        f'sample_submission = "sample_submission.csv"\nlabels = "folders"\nclasses = [{listed}]\n'
        f'submission_kind = "{kind}"\nmetric = "log_loss"\n'
    )
    return served.parent


def test_numeric_ids_with_leading_zeros_keep_their_predictions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = ["0000", "0001", "0002", "0003", "0004", "0005"]
    served = write_folders_competition(tmp_path, "zeros-probe", ids)
    monkeypatch.setenv(USER_FILE_ENV, str(tmp_path / "competitions.toml"))
    config = tiny_config(tmp_path, competition="zeros-probe", paths__input_root=str(served), **TINY)

    flow.train(config, report_after=False)
    submission = read_text_csv(flow.predict(config))

    assert submission["id"].tolist() == ids  # not 0, 1, ... and not the class prior in every row
    probabilities = submission["label"].astype(float)
    assert probabilities.nunique() > 1

    # `predict --run NAME` at another configured size: the run's own size (32 px) decides its inputs
    other = tiny_config(
        tmp_path,
        competition="zeros-probe",
        paths__input_root=str(served),
        data__image_size=48,
        predict__run="small-cnn-32px",
    )
    for cache in (tmp_path / "runs").rglob("tta-*.npz"):
        cache.unlink()  # predicted again, not read back
    again = read_text_csv(flow.predict(other))
    assert np.allclose(again["label"].astype(float), probabilities)

    from pipeline.layout import NoModelsError

    with pytest.raises(NoModelsError):  # a run without refit models: not its folds in their place
        flow.predict(
            dataclasses.replace(config, predict=dataclasses.replace(config.predict, ensemble="refit"))
        )


def test_a_submission_must_name_the_samples_ids_exactly(tmp_path: Path) -> None:
    from pipeline.submit.submission_file import SubmissionError, read_submission, validate_submission

    competition = get_competition("dogs-vs-cats-redux-kernels-edition")
    (tmp_path / "sample.csv").write_text("id,label\n0000,0.5\n0001,0.5\n0,0.5\n")
    sample = read_text_csv(tmp_path / "sample.csv")
    for ids in (["0", "1", "00"], ["0000", "0001", " 0"], ["0000", "1", "0"]):
        rows = "".join(f"{i},0.3\n" for i in ids)
        (tmp_path / "bad.csv").write_text("id,label\n" + rows)
        with pytest.raises(SubmissionError):
            validate_submission(read_submission(tmp_path / "bad.csv"), sample, competition)
    (tmp_path / "good.csv").write_text("id,label\n0,0.3\n0001,0.2\n0000,0.9\n")
    validate_submission(read_submission(tmp_path / "good.csv"), sample, competition)


def test_predictions_whose_ids_match_no_sample_id_are_refused_not_replaced_by_the_prior() -> None:
    from pipeline.submit.submission_file import SubmissionError, build_submission

    competition = get_competition("dogs-vs-cats-redux-kernels-edition")
    sample = pd.DataFrame({"id": ["0000", "0001"], "label": ["0.5", "0.5"]})
    predictions = pd.DataFrame({"id": ["0", "1"], "label": [1, 0], "probability": [0.9, 0.1]})
    with pytest.raises(SubmissionError):
        build_submission(competition, predictions, sample, 0.5)


def test_class_names_that_pandas_would_read_as_missing_are_kept(tmp_path: Path) -> None:
    import dataclasses

    from pipeline.submit.submission_file import read_submission, validate_submission

    competition = dataclasses.replace(
        get_competition("plant-seedlings-classification"), classes=("NA", "None", "null", "")
    )
    (tmp_path / "sample.csv").write_text("file,species\na.png,NA\nb.png,NA\nc.png,NA\nd.png,NA\n")
    (tmp_path / "sub.csv").write_text("file,species\na.png,NA\nb.png,None\nc.png,null\nd.png,\n")
    sample = read_text_csv(tmp_path / "sample.csv")
    submission = read_submission(tmp_path / "sub.csv")
    validate_submission(submission, sample, competition)
    assert submission["species"].tolist() == ["NA", "None", "null", ""]


@pytest.mark.parametrize("kind", ["probability", "class_probabilities"])
def test_true_and_false_are_no_probabilities(tmp_path: Path, kind: str) -> None:
    from pipeline.submit.submission_file import SubmissionError, read_submission, validate_submission

    if kind == "probability":
        competition = get_competition("dogs-vs-cats-redux-kernels-edition")
        sample_text, bad = "id,label\n1,0.5\n2,0.5\n", "id,label\n1,True\n2,False\n"
    else:
        competition = get_competition("shapes-demo")
        names = ",".join(competition.classes)
        half = ",".join(["0.25"] * len(competition.classes))
        sample_text = f"id,{names}\n1,{half}\n"
        bad = f"id,{names}\n1,True," + ",".join(["False"] * (len(competition.classes) - 1)) + "\n"
    (tmp_path / "sample.csv").write_text(sample_text)
    (tmp_path / "bad.csv").write_text(bad)
    with pytest.raises(SubmissionError):
        validate_submission(
            read_submission(tmp_path / "bad.csv"), read_text_csv(tmp_path / "sample.csv"), competition
        )


def test_slugs_follow_kaggles_rule() -> None:
    from pipeline.competitions import BadSlugError, check_slug

    for slug in (
        "../esc/evil",
        "x;touch${IFS}pwned",
        "Dogs-Vs-Cats",
        "a--b",
        "-a",
        "a-",
        "a/b",
        "",
        "a" * 101,
    ):
        with pytest.raises(BadSlugError):
            check_slug(slug)
    assert check_slug("dogs-vs-cats-redux-kernels-edition") == "dogs-vs-cats-redux-kernels-edition"


@pytest.mark.parametrize("slug", ["../esc/evil", "x;touch${IFS}pwned", "Dogs-Vs-Cats", "a/b"])
def test_a_slug_kaggle_would_not_give_is_refused_before_any_folder_or_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slug: str
) -> None:
    from pipeline.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(USER_FILE_ENV, str(tmp_path / "competitions.toml"))
    monkeypatch.setenv("PIPELINE_KAGGLE_ENDPOINT", "http://127.0.0.1:9")  # nothing may be asked
    before = sorted(tmp_path.rglob("*"))
    assert main(["describe-competition", slug, "--data-root", str(tmp_path / "data")]) == 2
    assert main(["index", "--competition", slug, "--data-root", str(tmp_path / "data")]) == 2
    assert sorted(tmp_path.rglob("*")) == before


def test_a_described_table_with_control_characters_reads_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import zipfile

    from pipeline.acquire.describe import describe_download, write_table

    archive = tmp_path / "odd-columns.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("sample_submission.csv", 'i\x7fd,"la""bel\x01"\n1,0.5\n2,0.5\n')
        for name in ("1.jpg", "2.jpg"):
            out.writestr(f"test/{name}", b"x")
        for name in ("cat.1.jpg", "dog.2.jpg"):
            out.writestr(f"train/{name}", b"x")
    found = describe_download("odd-columns", archive)
    mine = tmp_path / "competitions.toml"
    monkeypatch.setenv(USER_FILE_ENV, str(mine))
    write_table(mine, "odd-columns", found.table, "# mine\n")
    described = get_competition("odd-columns")
    assert (described.id_column, described.label_column) == ("i\x7fd", 'la"bel\x01')
    assert get_competition("dogs-vs-cats").slug == "dogs-vs-cats"  # every other table still reads


def test_class_names_in_unicode_digits_and_equal_numbers_have_one_order() -> None:
    from pipeline.acquire.classes import ordered_classes

    assert ordered_classes({"1", "\u00b2"}) == ("1", "\u00b2")  # ² is a digit to str.isdigit, not to int()
    assert ordered_classes({"10", "2", "01", "1"}) == ("01", "1", "2", "10")
    assert ordered_classes(["1", "01"]) == ordered_classes(["01", "1"])


def test_a_download_with_an_empty_or_no_sample_submission_is_one_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import zipfile

    from pipeline.cli import main

    monkeypatch.setenv(USER_FILE_ENV, str(tmp_path / "competitions.toml"))
    for slug, sample in (("no-sample", None), ("empty-sample", b"")):
        folder = tmp_path / "data" / slug
        folder.mkdir(parents=True)
        with zipfile.ZipFile(folder / f"{slug}.zip", "w") as out:
            out.writestr("train/cat.1.jpg", b"x")
            out.writestr("test/1.jpg", b"x")
            if sample is not None:
                out.writestr("sample_submission.csv", sample)
        assert main(["describe-competition", slug, "--data-root", str(tmp_path / "data")]) == 2
        assert "Traceback" not in capsys.readouterr().err


def test_disk_errors_are_one_sentence_each() -> None:
    import errno

    from pipeline.atomic import disk_error_message

    full = disk_error_message(OSError("10240 requested and 7136 written"))  # numpy's tofile on a full disk
    assert full is not None and "same command" in full
    assert disk_error_message(OSError(errno.EROFS, "Read-only file system", "/mnt/runs")) is not None
    assert disk_error_message(OSError(errno.EACCES, "Permission denied", "/root/x")) is not None
    assert disk_error_message(OSError(errno.ECONNRESET, "reset")) is None  # not the disk's: not hidden


def test_a_read_only_runs_root_is_refused_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import errno
    import tempfile

    from pipeline import atomic
    from pipeline.cli import main

    runs = tmp_path / "runs"
    real = tempfile.TemporaryFile

    def read_only(*args: object, dir: str | None = None, **kwargs: object):
        if dir is not None and Path(dir).is_relative_to(runs):
            raise OSError(errno.EROFS, "Read-only file system")
        return real(*args, dir=dir, **kwargs)

    runs.mkdir()
    monkeypatch.setattr(atomic.tempfile, "TemporaryFile", read_only)
    flags = ["--data-root", str(tmp_path / "data"), "--runs-root", str(runs)]
    for command in (["train", *flags], ["tune", *flags], ["stack", *flags]):
        assert main(command) == 2
    error = capsys.readouterr().err
    assert "Traceback" not in error and str(runs) in error
    assert not (tmp_path / "data").exists()  # nothing was unpacked or indexed first


def test_a_missing_weights_file_is_refused_before_any_folder_or_tensorflow(
    tmp_path: Path, demo_archive_dir: Path
) -> None:
    from pipeline.config import ConfigError

    config = tiny_config(
        tmp_path,
        paths__input_root=str(demo_archive_dir.parent),
        model__backbone="mobilenet-0.25",
        model__weights=str(tmp_path / "mobilenet_2_5_224_tf_no_top.h5"),
    )
    with pytest.raises(ConfigError):
        flow.train(config)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "dogs-vs-cats-demo").exists()
