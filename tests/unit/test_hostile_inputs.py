"""Hostile images, archives, submission files and credentials: refused with a clear message, nothing lost."""

from __future__ import annotations

import errno
import json
import struct
import zipfile
import zlib
from pathlib import Path

import pandas as pd
import pytest

from pipeline.acquire import unpack
from pipeline.acquire.download import archive_problem
from pipeline.acquire.index import build_index, check_image
from pipeline.acquire.unpack import CompetitionFiles, UnsafeArchiveError, check_archive, extract
from pipeline.competitions import get_competition
from pipeline.fit.tune import sampler_seed
from pipeline.kaggle_api import credentials_problem, permissions_warning
from pipeline.submit.submission_file import SubmissionError, build_submission, read_submission


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (no pixel data follows)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\0" * 64)  # the first bytes of a picture that would be gigabytes
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def test_a_decompression_bomb_header_is_set_aside_and_the_rest_indexed(tmp_path: Path) -> None:
    train, test = tmp_path / "train", tmp_path / "test"
    train.mkdir()
    test.mkdir()
    (train / "dog.1.jpg").write_bytes(png_header(20000, 20000))
    (train / "cat.2.jpg").write_bytes(png_header(9500, 9500))  # over the limit, under Pillow's hard error
    from PIL import Image

    Image.new("RGB", (24, 24)).save(train / "cat.3.jpg")
    Image.new("RGB", (24, 24)).save(test / "1.jpg")
    index = build_index(
        get_competition("dogs-vs-cats"), CompetitionFiles(train, test, tmp_path / "s.csv"), tmp_path
    )
    assert index.train["id"].tolist() == ["cat.3"]
    reasons = dict(
        zip(index.rejects["path"].map(lambda p: Path(p).name), index.rejects["reason"], strict=True)
    )
    assert reasons["dog.1.jpg"] == "decompression bomb: 400,000,000 pixels (limit 89,478,485)"
    assert reasons["cat.2.jpg"].startswith("decompression bomb: 90,250,000 pixels")
    assert check_image(train / "cat.3.jpg").ok


def zip_of(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


def test_zip_bombs_split_or_mixed_with_real_files_are_refused(tmp_path: Path) -> None:
    split = zip_of(tmp_path / "split.zip", {f"train/zeros-{i}.bin": b"\0" * (2 * 2**20) for i in range(40)})
    with zipfile.ZipFile(split) as archive, pytest.raises(UnsafeArchiveError, match="zip bomb"):
        check_archive(archive, tmp_path / "out")
    photo = bytes(range(256)) * 4096  # 1 MiB that hardly compresses, like a JPEG
    mixed = zip_of(
        tmp_path / "mixed.zip", {"train/zeros.bin": b"\0" * (64 * 2**20), "train/cat.1.jpg": photo}
    )
    with zipfile.ZipFile(mixed) as archive, pytest.raises(UnsafeArchiveError, match="zip bomb"):
        check_archive(archive, tmp_path / "out")
    honest = zip_of(tmp_path / "honest.zip", {f"train/cat.{i}.jpg": photo for i in range(3)})
    with zipfile.ZipFile(honest) as archive:
        assert check_archive(archive, tmp_path / "out") == 3 * len(photo)
        with pytest.raises(UnsafeArchiveError, match=r"only 0\.00 GiB are free"):
            check_archive(archive, tmp_path / "out", free_bytes=1000)


def test_a_corrupt_entry_in_an_inner_zip_names_the_file(tmp_path: Path) -> None:
    archive = zip_of(tmp_path / "train.zip", {"train/cat.1.jpg": b"a photo of a cat " * 1000})
    data = bytearray(archive.read_bytes())
    start = data.index(b"train/cat.1.jpg") + len("train/cat.1.jpg")
    data[start + 10 : start + 40] = b"\xff" * 30  # damage the deflate stream, keep the directory
    archive.write_bytes(bytes(data))
    with pytest.raises(zipfile.BadZipFile, match=r"train\.zip is damaged .*cat\.1\.jpg.*download again"):
        extract(archive, tmp_path / "out")
    assert not list((tmp_path / "out").rglob("cat.1.jpg*"))  # no half-written file left


def test_a_full_disk_says_what_is_needed_and_leaves_no_truncated_file(tmp_path: Path, monkeypatch) -> None:
    outer = zip_of(tmp_path / "comp.zip", {"sample.csv": b"id,label\n", "train.zip": b"x" * 300_000})
    real_copy = unpack.shutil.copyfileobj

    def full_after_a_while(source, sink, length=0):
        if Path(sink.name).name.startswith("train.zip"):
            sink.write(source.read(1000))
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_copy(source, sink, length)

    monkeypatch.setattr(unpack.shutil, "copyfileobj", full_after_a_while)
    with pytest.raises(
        UnsafeArchiveError, match=r"filled up .*needs 0\.00 GiB \(300,009 bytes\).*run the same command again"
    ):
        extract(outer, tmp_path / "data")
    assert not (tmp_path / "data" / "train.zip").exists()  # never trusted later: it was never complete
    assert not list((tmp_path / "data").glob("*.partial"))
    monkeypatch.setattr(unpack.shutil, "copyfileobj", real_copy)  # space freed: the same command recovers
    extract(outer, tmp_path / "data")
    assert (tmp_path / "data" / "train.zip").stat().st_size == 300_000


def test_an_archive_is_trusted_only_when_every_crc_checks_out(tmp_path: Path) -> None:
    good = zip_of(tmp_path / "good.zip", {"a.txt": b"hello " * 100})
    assert archive_problem(good) is None
    data = bytearray(good.read_bytes())
    data[40:60] = b"\0" * 20
    (tmp_path / "bad.zip").write_bytes(bytes(data))
    assert archive_problem(tmp_path / "bad.zip") is not None
    (tmp_path / "cut.zip").write_bytes(good.read_bytes()[:50])
    assert "BadZipFile" in archive_problem(tmp_path / "cut.zip")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (bytes(range(256)) * 4000, "not UTF-8 text"),
        (b"id,label\n1,\0\n", "not text"),
    ],
)
def test_files_that_are_no_csv_are_refused_in_a_sentence(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "submission.csv"
    path.write_bytes(content)
    with pytest.raises(SubmissionError, match=message) as caught:
        read_submission(path)
    assert len(str(caught.value)) < 200


def test_a_huge_header_is_quoted_short(tmp_path: Path) -> None:
    from pipeline.submit.submission_file import validate_submission

    path = tmp_path / "submission.csv"
    path.write_text("x" * 1_000_000 + ",label\n1,0.5\n")
    with pytest.raises(SubmissionError, match="header") as caught:
        validate_submission(
            read_submission(path),
            pd.DataFrame({"id": [1], "label": [0.5]}),
            get_competition("dogs-vs-cats-redux-kernels-edition"),
        )
    assert len(str(caught.value)) < 300


def test_predictions_outside_the_sample_submission_are_reported(capsys) -> None:
    competition = get_competition("dogs-vs-cats-redux-kernels-edition")
    predictions = pd.DataFrame({"id": ["1", "2", "99"], "probability": [0.1, 0.2, 0.9]})
    build_submission(competition, predictions, pd.DataFrame({"id": [1, 2], "label": [0.5, 0.5]}), 0.5)
    assert "1 predicted test id(s) are not in the sample submission" in capsys.readouterr().out


def test_names_with_other_scripts_digits_do_not_fit(tmp_path: Path) -> None:
    competition = get_competition("dogs-vs-cats")
    assert competition.parse_test_name("\u0665.jpg") is None  # Arabic-Indic five
    assert competition.parse_train_name("cat.\u0665.jpg") is None
    assert competition.parse_test_name("5.jpg") == "5"


def test_credential_files_are_checked_and_never_quoted(tmp_path: Path) -> None:
    broken = tmp_path / "kaggle.json"
    broken.write_text('{"username": "me", "key": ')
    assert "not valid JSON" in credentials_problem(str(broken))
    broken.write_text(json.dumps({"username": "me"}))
    assert "must hold" in credentials_problem(str(broken))
    broken.write_text(json.dumps({"username": "me", "key": "s3cret-key"}))
    assert credentials_problem(str(broken)) is None
    broken.chmod(0o644)
    warning = permissions_warning(str(broken))
    assert "chmod 600" in warning and "s3cret-key" not in warning
    broken.chmod(0o600)
    assert permissions_warning(str(broken)) is None


def test_a_restarted_study_draws_new_seeds() -> None:
    seeds = {sampler_seed(42, worker, trials) for worker in (0, 1) for trials in (0, 1, 2)}
    assert len(seeds) == 6
