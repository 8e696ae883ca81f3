"""`describe-competition`: infer a competition's table from its downloaded files.

Reads the download's listing (nested archives included) and its CSVs without unpacking: the sample
submission gives the id and submission columns; the test images are the folder whose names cover
every sample id; the training labels come from class folders, a labels CSV whose ids match the
training files, or a `<label>.<number>` file-name pattern. What cannot be read from files (the
metric, whether it is a code competition) is guessed and said so, for the user to check.
"""

from __future__ import annotations

import contextlib
import io
import re
import zipfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pandas as pd

from pipeline.acquire.classes import ordered_classes
from pipeline.acquire.unpack import check_archive
from pipeline.atomic import write_text
from pipeline.competitions import ANY_NAME
from pipeline.tables import TableError, read_text_csv

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".gif"}
_PATTERN_NAME = re.compile(r"^([A-Za-z]+)\.[0-9]+\.[A-Za-z0-9]+$")


class DescribeError(ValueError):
    """The download does not show a layout this version can describe; the message says what is missing."""


@dataclass
class Description:
    """The inferred table, what it rests on, and what the user must check."""

    table: dict[str, object] = field(default_factory=dict)
    inferred: list[str] = field(default_factory=list)
    unsure: list[str] = field(default_factory=list)


@dataclass
class ImageGroup:
    """Images of one folder of the download: its archive (None: the download itself) and folder."""

    archive: str | None
    folder: str
    paths: list[PurePosixPath] = field(default_factory=list)  # relative to the folder

    @property
    def names(self) -> set[str]:
        return {p.name for p in self.paths}

    @property
    def stems(self) -> set[str]:
        return {p.stem for p in self.paths}


def image_groups(outer: zipfile.ZipFile) -> list[ImageGroup]:
    """Every folder of images in the download, nested zips opened in place; largest first."""
    groups: dict[tuple[str | None, str], ImageGroup] = {}

    def add(archive: str | None, names: list[str], default_folder: str) -> None:
        for name in names:
            path = PurePosixPath(name)
            if path.suffix.lower() not in IMAGE_SUFFIXES or name.startswith("__MACOSX"):
                continue
            folder, inside = (
                (path.parts[0], PurePosixPath(*path.parts[1:]))
                if len(path.parts) > 1
                else (default_folder, path)
            )
            groups.setdefault((archive, folder), ImageGroup(archive, folder)).paths.append(inside)

    add(None, outer.namelist(), "")
    for name in outer.namelist():
        if name.lower().endswith(".zip"):
            with outer.open(name) as member, zipfile.ZipFile(member) as inner:
                add(name, inner.namelist(), PurePosixPath(name).stem)
    return sorted(groups.values(), key=lambda g: -len(g.paths))


def read_csvs(outer: zipfile.ZipFile) -> dict[str, pd.DataFrame]:
    """The CSV files at the top of the download, read as text columns."""
    tables = {}
    for name in outer.namelist():
        if name.lower().endswith(".csv") and "/" not in name.strip("/"):
            with outer.open(name) as member, contextlib.suppress(TableError):  # empty: describes nothing
                tables[name] = read_text_csv(io.BytesIO(member.read()))
    return tables


class FolderListing:
    """A folder of a competition's files, read the way a download's zip is (names and members)."""

    def __init__(self, folder: Path):
        self.folder, self.filename = folder, str(folder)

    def namelist(self) -> list[str]:
        return sorted(p.relative_to(self.folder).as_posix() for p in self.folder.rglob("*") if p.is_file())

    def open(self, name: str) -> io.BufferedReader:
        return (self.folder / name).open("rb")


def describe_download(slug: str, archive: Path) -> Description:
    """The table for `slug` inferred from its download `archive` (the zip, or a folder of its files
    unpacked), or a DescribeError."""
    if archive.is_dir():
        listing = FolderListing(archive)
        return _describe(slug, archive, image_groups(listing), read_csvs(listing))  # type: ignore[arg-type]
    with zipfile.ZipFile(archive) as outer:
        check_archive(outer, archive.parent)  # no bomb is read, not even its CSVs
        return _describe(slug, archive, image_groups(outer), read_csvs(outer))


def _describe(
    slug: str, archive: Path, groups: list[ImageGroup], csvs: dict[str, pd.DataFrame]
) -> Description:
    found = Description()
    samples = [n for n in csvs if "sample" in n.lower()]
    if not samples:
        raise DescribeError(
            f"{archive} holds no sample submission (a CSV named *sample*): describe it by hand."
        )
    sample_name, sample = samples[0], csvs[samples[0]]
    id_column, *value_columns = list(sample.columns)
    ids = set(sample[id_column])
    table: dict[str, object] = {"title": slug.replace("-", " ").title(), "sample_submission": sample_name}

    def covers(group: ImageGroup) -> str | None:
        return "name" if ids <= group.names else "stem" if ids <= group.stems else None

    tests = [g for g in groups if covers(g)]
    if not tests:
        best = max(groups, key=lambda g: len(ids & (g.names | g.stems)), default=None)
        seen = 0 if best is None else len(ids & (best.names | best.stems))
        raise DescribeError(
            f"no image folder in {archive} holds every id of {sample_name} (at best {seen} of {len(ids)}): "
            "check the download, or describe it by hand."
        )
    test = tests[-1]  # the smallest folder that covers the ids
    _place(table, "test", test)
    extensions = {p.suffix for p in test.paths}
    if covers(test) == "name":
        ext = re.escape(next(iter(extensions))) if len(extensions) == 1 else r"\.[A-Za-z0-9]+"
        table["test_pattern"] = f"^(?P<id>.+{ext})$"
    else:
        table["test_pattern"] = ANY_NAME
    found.inferred.append(
        f"test images: {len(test.paths):,} in {test.folder}/ ({test.archive or 'the download'}), every "
        f"id of {sample_name} present (ids are file {covers(test)}s)"
    )
    trains = [g for g in groups if g is not test]
    if not trains:
        raise DescribeError(
            f"{archive} holds no training images besides the test folder: describe it by hand."
        )
    train = trains[0]
    _place(table, "train", train)
    classes = _training_labels(train, csvs, sample_name, table, found)
    table["classes"] = classes
    table["id_column"] = id_column
    _submission_format(table, sample, sample_name, value_columns, classes, found)
    found.unsure.append("code_competition: set to false; make it true if submissions must come from a kernel")
    table["code_competition"] = False
    found.table = table
    return found


def _submission_format(
    table: dict[str, object],
    sample: pd.DataFrame,
    sample_name: str,
    value_columns: list[str],
    classes: list[str],
    found: Description,
) -> None:
    """submission_kind, label_column and a guessed metric from the sample submission's columns and
    values: one column per class, class names, class numbers or probabilities."""
    if len(value_columns) > 1:
        unknown = sorted(set(value_columns) - set(classes))
        if unknown:
            raise DescribeError(
                f"{sample_name} has {len(value_columns)} value columns, {len(unknown)} of them no training "
                f"class (e.g. {unknown[:5]}): describe it by hand."
            )
        table["classes"] = list(value_columns)  # the model's outputs in the sample's column order
        table["submission_kind"], table["metric"] = "class_probabilities", "log_loss"
        found.inferred.append(
            f"submission: {table['id_column']} and one probability column per class, in {sample_name}'s order"
        )
    else:
        column = value_columns[0] if value_columns else "label"
        table["label_column"] = column
        values = sample[column] if value_columns else pd.Series([], dtype=str)
        numbers = pd.to_numeric(values, errors="coerce")
        whole = bool(len(values)) and numbers.notna().all() and (numbers == numbers.round()).all()
        names = bool(len(values)) and set(values) <= set(classes) and not whole
        if names:
            kind, metric, what = "class_name", "accuracy", "class names"
        elif whole:
            kind, metric, what = "label", "accuracy", "class numbers"
        else:
            kind, metric = ("probability", "log_loss") if len(classes) == 2 else ("label", "accuracy")
            what = "probabilities of the positive class" if len(classes) == 2 else "class numbers"
        table["submission_kind"], table["metric"] = kind, metric
        found.inferred.append(
            f"submission: {table['id_column']},{column} with {what} (from {sample_name}'s values)"
        )
    choices = "log_loss, accuracy, roc_auc" + (", f1_micro, f1_macro or qwk" if len(classes) > 2 else "")
    found.unsure.append(
        f"metric: guessed {table['metric']} from the sample; check the competition's Evaluation page ({choices})"
    )


def _place(table: dict[str, object], split: str, group: ImageGroup) -> None:
    table[f"{split}_dir"] = group.folder
    if group.archive is not None:
        table[f"{split}_archive"] = group.archive


def _training_labels(
    train: ImageGroup,
    csvs: dict[str, pd.DataFrame],
    sample_name: str,
    table: dict[str, object],
    found: Description,
) -> list[str]:
    """Set the table's label source from class folders, a labels CSV or file names; return the classes."""
    folders = Counter(p.parts[0] for p in train.paths if len(p.parts) == 2)
    if folders and sum(folders.values()) == len(train.paths):
        table["labels"] = "folders"
        found.inferred.append(
            f"training labels: {len(folders)} class folders under {train.folder}/ ({len(train.paths):,} images)"
        )
        return sorted(folders)
    for name, frame in csvs.items():
        if name == sample_name:
            continue
        for column in frame.columns:
            values = set(frame[column])
            by = (
                "name"
                if len(values & train.names) >= 0.9 * len(train.paths)
                else "stem"
                if len(values & train.stems) >= 0.9 * len(train.paths)
                else None
            )
            others = [c for c in frame.columns if c != column]
            if by is None or not others:
                continue
            label = min(others, key=lambda c: frame[c].nunique())
            table.update(
                labels="csv",
                labels_csv=name,
                labels_id_column=column,
                labels_label_column=label,
                labels_id_has_extension=by == "name",
            )
            classes = list(ordered_classes(frame[label].unique()))
            found.inferred.append(
                f"training labels: {name}, ids in {column!r} (file {by}s of {len(train.paths):,} images in "
                f"{train.folder}/), labels in {label!r}: {len(classes)} classes"
            )
            return classes
    labels = defaultdict(int)
    for path in train.paths:
        match = _PATTERN_NAME.match(path.name)
        if match is None:
            raise DescribeError(
                f"no class folders, no CSV naming the files of {train.folder}/ and no <label>.<number> file "
                f"names (e.g. {path.name}): describe the training labels by hand."
            )
        labels[match.group(1)] += 1
    alternatives = "|".join(sorted(labels))
    table["labels"] = "pattern"
    table["train_pattern"] = rf"^(?P<id>(?P<label>{alternatives})\.[0-9]+)\.[A-Za-z0-9]+$"
    found.inferred.append(f"training labels: file names <label>.<number> in {train.folder}/: {dict(labels)}")
    return sorted(labels)


def write_table(path: Path, slug: str, table: dict[str, object], header: str) -> None:
    """Add (or replace) the table of `slug` in the user's competitions file: written by tomli-w,
    read back before it replaces the file, so the file every command reads stays readable."""
    import tomllib

    import tomli_w

    try:
        tables = tomllib.loads(path.read_text()) if path.is_file() else {}
    except tomllib.TOMLDecodeError as error:
        raise DescribeError(
            f"{path} is not valid TOML ({error}): fix or move it, then describe again."
        ) from error
    tables[slug] = table
    text = header + "\n" + tomli_w.dumps(tables)
    if tomllib.loads(text) != tables:  # what a later command would read must be what was meant
        raise DescribeError(f"the table of {slug} would not read back the same: {path} is left as it was.")
    write_text(path, text)
