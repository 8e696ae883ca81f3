"""Fetch a competition's archive once: skip what is complete, resume what was interrupted.

An archive is marked complete (`<archive>.complete`) only after every entry's CRC checks out, so
a truncated or corrupted archive is never trusted: it is checked again, then fetched again.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from pipeline.competitions import Competition
from pipeline.kaggle_api import KaggleGateway


def _marker(archive: Path) -> Path:
    return archive.with_name(archive.name + ".complete")


def is_downloaded(competition: Competition, folder: Path) -> bool:
    """True when the archive in `folder` was downloaded completely and checked."""
    archive = folder / competition.archive
    return archive.is_file() and _marker(archive).is_file()


def archive_problem(archive: Path) -> str | None:
    """Why `archive` cannot be trusted (not a zip, a bad CRC, truncated), or None when it is whole."""
    try:
        with zipfile.ZipFile(archive) as opened:
            bad = opened.testzip()  # reads every entry and checks its CRC
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        return f"{type(error).__name__}: {error}"
    return None if bad is None else f"entry {bad!r} fails its CRC check"


def archive_size(path: Path) -> str:
    """A file's size in MB, for messages."""
    return f"{path.stat().st_size / 1e6:,.1f} MB"


def download_competition(
    competition: Competition, folder: Path, gateway: KaggleGateway, force: bool = False
) -> Path:
    """Download `competition`'s archive into `folder` unless a complete one is there; return its path."""
    archive = folder / competition.archive
    if is_downloaded(competition, folder) and not force:
        print(f"{archive} is already complete; skipping the download (use --force to fetch it again).")
        return archive
    _marker(archive).unlink(missing_ok=True)
    if archive.is_file() and not force:  # left by an earlier run that never marked it complete
        problem = archive_problem(archive)
        if problem is None:
            _marker(archive).touch()
            print(f"{archive} was left complete by an earlier run; checked, not downloaded again.")
            return archive
        print(f"{archive} is damaged ({problem}); downloading it again.")
        archive.unlink()
    if force:
        archive.unlink(missing_ok=True)
    print(f"Downloading {competition.archive} into {folder} ...", flush=True)
    downloaded = gateway.download_competition_archive(competition.slug, folder)
    print(f"Downloaded {archive} ({archive_size(downloaded)})")
    if downloaded != archive:
        downloaded.replace(archive)
    problem = archive_problem(archive)
    if problem is not None:
        raise zipfile.BadZipFile(
            f"the download {archive} is damaged ({problem}); delete it and run the download again."
        )
    _marker(archive).touch()
    return archive
