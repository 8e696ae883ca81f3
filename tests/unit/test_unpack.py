"""Safe unpacking: archives that would escape their folder, zip bombs, damaged and missing files."""

import zipfile
from pathlib import Path

import pytest

from pipeline.acquire.unpack import MissingDataError, UnsafeArchiveError, extract, unpack_competition


def test_missing_files_say_what_to_run(tmp_path: Path, demo) -> None:
    with pytest.raises(MissingDataError, match="make download COMPETITION=dogs-vs-cats-demo"):
        unpack_competition(demo, tmp_path / "nothing", tmp_path / "data")


def _zip_with(tmp_path: Path, name: str, data: bytes = b"x") -> Path:
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(name, data)
    return path


@pytest.mark.parametrize("entry", ["../escape.txt", "train/../../escape.txt", "/etc/escape.txt"])
def test_zip_slip_is_refused(tmp_path: Path, entry: str) -> None:
    target = tmp_path / "target"
    with pytest.raises(UnsafeArchiveError, match="outside"):
        extract(_zip_with(tmp_path, entry), target)
    assert not (tmp_path / "escape.txt").exists()
    assert not target.exists() or not any(target.rglob("*"))


def test_absurd_declared_size_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bomb:
        bomb.writestr("train/zeros.bin", b"\0" * (32 * 2**20))  # 32 MiB of zeros deflate to ~32 KiB
    with pytest.raises(UnsafeArchiveError, match="zip bomb"):
        extract(archive, tmp_path / "target")
    with pytest.raises(UnsafeArchiveError, match="over the limit"):
        extract(_zip_with(tmp_path, "a.txt", b"y" * 100), tmp_path / "target", max_total_bytes=10)


def test_damaged_archive_says_download_again(tmp_path: Path) -> None:
    broken = tmp_path / "train.zip"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(zipfile.BadZipFile, match="download again"):
        extract(broken, tmp_path / "target")
