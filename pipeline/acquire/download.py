"""Fetch a competition's archive once: skip what is complete, resume what was interrupted."""

from __future__ import annotations

import zipfile
from pathlib import Path

from pipeline.acquire.kaggle_api import KaggleGateway
from pipeline.competitions import Competition


def _marker(archive: Path) -> Path:
    return archive.with_name(archive.name + ".complete")


def is_downloaded(competition: Competition, folder: Path) -> bool:
    """True when the archive in `folder` was downloaded completely and checked."""
    archive = folder / competition.archive
    return archive.is_file() and _marker(archive).is_file()


def download_competition(
    competition: Competition, folder: Path, gateway: KaggleGateway, force: bool = False
) -> Path:
    """Download `competition`'s archive into `folder` unless a complete one is there; return its path."""
    archive = folder / competition.archive
    if is_downloaded(competition, folder) and not force:
        print(f"{archive} is already complete; skipping the download (use --force to fetch it again).")
        return archive
    _marker(archive).unlink(missing_ok=True)
    if force:
        archive.unlink(missing_ok=True)
    downloaded = gateway.download_competition_archive(competition.slug, folder)
    if downloaded != archive:
        downloaded.replace(archive)
    if not zipfile.is_zipfile(archive):
        raise zipfile.BadZipFile(
            f"the download {archive} is not a zip archive; delete it and run the download again."
        )
    _marker(archive).touch()
    return archive
