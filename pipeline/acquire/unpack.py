"""Safe, resumable unpacking of a competition's nested zip archives into data/<slug>/."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from pipeline.competitions import Competition

MAX_TOTAL_BYTES = 64 * 2**30  # larger than any image competition's archive should unpack to
MAX_ENTRY_RATIO = 100  # an entry over 1 MiB that inflates more than this is a zip bomb (JPEGs: ~1, CSV: ~5)
MAX_ARCHIVE_RATIO = 20  # all entries together, when they declare over 64 MiB: splitting cannot dodge it
_ENTRY_RATIO_FROM = 2**20
_ARCHIVE_RATIO_FROM = 64 * 2**20
_DONE = ".unpacked"
_PARTIAL = ".partial"


class UnsafeArchiveError(ValueError):
    """An archive would write outside its target folder, declares absurd sizes, or does not fit the disk."""


class MissingDataError(FileNotFoundError):
    """A file the competition needs is not where the pipeline looks for it."""


@dataclass(frozen=True)
class CompetitionFiles:
    """Where a competition's unpacked images, sample submission and labels file are."""

    train_dir: Path
    test_dir: Path
    sample_submission: Path
    labels: Path | None = None  # labels = csv: the file with the training labels


def _free_bytes(folder: Path) -> int:
    existing = next(p for p in [folder, *folder.parents] if p.exists())
    return shutil.disk_usage(existing).free


def check_archive(
    archive: zipfile.ZipFile,
    target: Path,
    max_total_bytes: int = MAX_TOTAL_BYTES,
    free_bytes: int | None = None,
) -> int:
    """Refuse entries escaping `target` (zip-slip), links, zip bombs (per entry and for the whole
    archive) and archives larger than the free disk space; return the bytes it will write."""
    root = target.resolve()
    total = compressed = 0
    for info in archive.infolist():
        where = f"{archive.filename}: entry {info.filename!r}"
        destination = (root / info.filename).resolve()
        if info.filename.startswith(("/", "\\")) or not destination.is_relative_to(root):
            raise UnsafeArchiveError(f"{where} would be written outside {target}; refusing to unpack.")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise UnsafeArchiveError(f"{where} is a symbolic link; refusing to unpack.")
        total += info.file_size
        compressed += info.compress_size
        if info.file_size > _ENTRY_RATIO_FROM and info.file_size > MAX_ENTRY_RATIO * max(
            info.compress_size, 1
        ):
            raise UnsafeArchiveError(
                f"{where} declares {info.file_size:,} bytes from {info.compress_size:,} compressed "
                f"(over {MAX_ENTRY_RATIO}x: a zip bomb?); refusing to unpack."
            )
    if total > _ARCHIVE_RATIO_FROM and total > MAX_ARCHIVE_RATIO * max(compressed, 1):
        raise UnsafeArchiveError(
            f"{archive.filename} declares {total:,} bytes unpacked from {compressed:,} compressed "
            f"(over {MAX_ARCHIVE_RATIO}x for the whole archive: a zip bomb?); refusing to unpack."
        )
    if total > max_total_bytes:
        raise UnsafeArchiveError(
            f"{archive.filename} declares {total:,} bytes unpacked, over the limit of {max_total_bytes:,}; "
            "refusing to unpack. Check that this is the competition's archive."
        )
    free = _free_bytes(target) if free_bytes is None else free_bytes
    if total > free:
        raise UnsafeArchiveError(
            f"{archive.filename} needs {total / 2**30:.2f} GiB ({total:,} bytes) unpacked in {target}, "
            f"but only {free / 2**30:.2f} GiB are free there: free some space (or set --data-root to a "
            "larger disk) and run the same command again."
        )
    return total


def extract(archive_path: Path, target: Path, max_total_bytes: int = MAX_TOTAL_BYTES) -> None:
    """Extract `archive_path` into `target` after `check_archive`, with a progress bar. Each file is
    written under a temporary name and renamed when complete, so an interruption (or a full disk)
    never leaves a truncated file under its real name."""
    try:
        with zipfile.ZipFile(archive_path) as archive:
            needed = check_archive(archive, target, max_total_bytes)
            members = archive.infolist()
            for info in tqdm(
                members, desc=f"unpack {archive_path.name}", unit="file", leave=False, disable=None
            ):
                _extract_member(archive, info, target, needed)
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise zipfile.BadZipFile(
            f"{archive_path} is damaged or not a zip archive ({type(error).__name__}: {error}); "
            "delete it and download again."
        ) from error


def _extract_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, needed: int) -> None:
    destination = target / info.filename
    if info.is_dir():
        destination.mkdir(parents=True, exist_ok=True)
        return
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + _PARTIAL)
    try:
        with archive.open(info) as source, partial.open("wb") as sink:
            shutil.copyfileobj(source, sink, 1 << 20)
    except OSError as error:
        partial.unlink(missing_ok=True)
        if error.errno == errno.ENOSPC:
            raise UnsafeArchiveError(
                f"the disk holding {target} filled up while unpacking {Path(archive.filename or '').name} "
                f"(entry {info.filename!r}); the archive needs {needed / 2**30:.2f} GiB ({needed:,} bytes) "
                "unpacked. Free some space and run the same command again: finished work is kept."
            ) from error
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        partial.unlink(missing_ok=True)
        raise zipfile.BadZipFile(f"entry {info.filename!r}: {error}") from error
    os.replace(partial, destination)


def _find(name: str, folders: list[Path]) -> Path | None:
    return next((folder / name for folder in folders if (folder / name).exists()), None)


def unpack_images(archive: Path, folder_name: str, data_dir: Path) -> Path:
    """Extract an inner image archive to data_dir/folder_name atomically (partial work is redone)."""
    final = data_dir / folder_name
    if (final / _DONE).exists():
        return final
    partial = data_dir / f".partial-{folder_name}"
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(final, ignore_errors=True)
    extract(archive, partial)
    inner = partial / folder_name
    (inner if inner.is_dir() else partial).rename(final)
    shutil.rmtree(partial, ignore_errors=True)
    (final / _DONE).touch()
    return final


def unpack_flat(outer: Path, competition: Competition, data_dir: Path) -> None:
    """Unpack a download that holds the image folders directly (most newer competitions) into
    data_dir, atomically: into a partial folder first, then each top-level entry moved in, the
    image folders marked done last."""
    partial = data_dir / ".partial-download"
    shutil.rmtree(partial, ignore_errors=True)
    extract(outer, partial)
    for entry in sorted(partial.iterdir()):
        target = data_dir / entry.name
        if target.is_dir():
            shutil.rmtree(target)
        entry.replace(target)
    shutil.rmtree(partial, ignore_errors=True)
    for folder_name in (competition.train_dir, competition.test_dir):
        if (data_dir / folder_name).is_dir():
            (data_dir / folder_name / _DONE).touch()


def unpack_competition(competition: Competition, input_dir: Path, data_dir: Path) -> CompetitionFiles:
    """Make the competition's train and test images available as folders; idempotent.

    Looks in `data_dir` then `input_dir` (read-only, e.g. /kaggle/input/<slug>) for folders already
    unpacked, then for the inner archives, then for the outer archive Kaggle's download gives.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    folders = [data_dir, input_dir] if input_dir != data_dir else [data_dir]

    def present(folder_name: str, archive_name: str) -> bool:
        return (
            any((f / folder_name / _DONE).exists() for f in folders)
            or any((f / folder_name).is_dir() for f in folders[1:])  # read-only input
            or bool(archive_name and _find(archive_name, folders))
        )

    missing = any(
        name and _find(name, folders) is None
        for name in (competition.sample_submission, competition.labels_csv)
    )
    if (
        missing
        or not present(competition.train_dir, competition.train_archive)
        or not present(competition.test_dir, competition.test_archive)
    ):
        outer = _find(competition.archive, folders)
        if outer is not None and competition.train_archive:
            extract(outer, data_dir)
        elif outer is not None:
            unpack_flat(outer, competition, data_dir)
    resolved: dict[str, Path] = {}
    for key, folder_name, archive_name in (
        ("train", competition.train_dir, competition.train_archive),
        ("test", competition.test_dir, competition.test_archive),
    ):
        ready = [f / folder_name for f in folders if (f / folder_name / _DONE).exists()]
        given = [f / folder_name for f in folders[1:] if (f / folder_name).is_dir()]  # read-only input
        archive = _find(archive_name, folders) if archive_name else None
        if ready or given:
            resolved[key] = (ready or given)[0]
        elif archive is not None:
            resolved[key] = unpack_images(archive, folder_name, data_dir)
        else:
            wanted = archive_name or f"the folder {folder_name}/"
            raise MissingDataError(
                f"neither {wanted} nor {competition.archive} found in {', '.join(map(str, folders))}: "
                f"run `make download COMPETITION={competition.slug}` (or put Kaggle's files there)."
            )
    found = {}
    for name in (competition.sample_submission, competition.labels_csv):
        if name and (found.setdefault(name, _find(name, folders))) is None:
            raise MissingDataError(
                f"{name} not found in {', '.join(map(str, folders))}: "
                f"run `make download COMPETITION={competition.slug}` again."
            )
    labels = found.get(competition.labels_csv) if competition.labels_csv else None
    return CompetitionFiles(resolved["train"], resolved["test"], found[competition.sample_submission], labels)
