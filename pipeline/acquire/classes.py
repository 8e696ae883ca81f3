"""A competition's classes: from its table, or read from its data, and checked against both the
training labels and the sample submission before anything trains."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.acquire.unpack import CompetitionFiles, MissingDataError
from pipeline.competitions import Competition
from pipeline.tables import read_text_csv

IGNORED_NAMES = {".unpacked", ".DS_Store", "Thumbs.db"}  # never images, never reported


def ordered_classes(names: set[str] | list[str]) -> tuple[str, ...]:
    """Class names in one total order that never depends on the run: by number when every name is a
    number written in ASCII digits (0, 1, 2, ..., 10; `1` before `01`), else by name."""
    names = set(names)
    if names and all(name.isascii() and name.isdigit() for name in names):
        return tuple(sorted(names, key=lambda name: (int(name), name)))
    return tuple(sorted(names))


@dataclass(frozen=True)
class LabelsTable:
    """A labels CSV read: each id's label, and the ids it gives different labels (set aside)."""

    labels: dict[str, str]  # ids listed once, or repeated with the same label (counted once)
    conflicting: dict[str, list[str]]  # id -> its different labels: its image is not trained on
    repeated: int  # ids listed more than once with the same label


def read_labels_csv(competition: Competition, path: Path) -> LabelsTable:
    """The labels CSV at `path`; a missing column is an error naming it."""
    table = read_text_csv(path)
    id_column, label_column = competition.labels_id_column, competition.labels_label_column
    for column in (id_column, label_column):
        if column not in table.columns:
            raise MissingDataError(
                f"{path} has no column {column!r} (its columns: {', '.join(table.columns)}): "
                f"check labels_id_column / labels_label_column of {competition.slug} in its table."
            )
    distinct = table[[id_column, label_column]].drop_duplicates()
    counts = distinct[id_column].value_counts()
    clashing = set(counts[counts > 1].index)
    conflicting = {
        str(i): sorted(group[label_column])
        for i, group in distinct[distinct[id_column].isin(clashing)].groupby(id_column)
    }
    kept = distinct[~distinct[id_column].isin(clashing)]
    repeated = len(table) - len(distinct)  # rows repeating an (id, label) pair
    return LabelsTable(dict(zip(kept[id_column], kept[label_column], strict=True)), conflicting, repeated)


def report_label_problems(path: Path, labels: LabelsTable) -> None:
    """One warning per kind of problem in a labels CSV: what, how many, examples."""
    if labels.conflicting:
        examples = "; ".join(f"{i}: {', '.join(v)}" for i, v in list(labels.conflicting.items())[:3])
        print(
            f"warning: {path} gives {len(labels.conflicting):,} id(s) different labels ({examples}): their "
            "images are set aside (rejects.csv); fix the rows to train on them"
        )
    if labels.repeated:
        print(f"warning: {path} repeats {labels.repeated:,} row(s) with the same id and label; counted once")


def _class_folders(train_dir: Path) -> dict[str, int]:
    """Class folder name -> number of files in it."""
    return {
        folder.name: sum(1 for f in folder.iterdir() if f.is_file() and f.name not in IGNORED_NAMES)
        for folder in sorted(train_dir.iterdir())
        if folder.is_dir() and not folder.name.startswith(".")
    }


def _classes_in_data(
    competition: Competition, files: CompetitionFiles, labels: LabelsTable | None
) -> tuple[str, ...]:
    if competition.labels == "folders":
        counts = _class_folders(files.train_dir)
        empty = [name for name, count in counts.items() if count == 0]
        if empty:
            print(
                f"warning: {files.train_dir} has {len(empty)} empty class folder(s) ({', '.join(empty[:5])}): "
                "no class until they hold training images"
            )
        return ordered_classes({name for name, count in counts.items() if count})
    if competition.labels == "csv" and files.labels is not None:
        labels = labels or read_labels_csv(competition, files.labels)
        return ordered_classes(set(labels.labels.values()))
    return competition.classes


def _sample_columns(competition: Competition, files: CompetitionFiles) -> list[str]:
    columns = list(read_text_csv(files.sample_submission, nrows=0).columns)
    if competition.id_column not in columns:
        raise MissingDataError(
            f"{files.sample_submission} has no id column {competition.id_column!r} (its columns: "
            f"{', '.join(columns[:8])}): check id_column of {competition.slug} in its table."
        )
    return [c for c in columns if c != competition.id_column]


def resolve_classes(
    competition: Competition, files: CompetitionFiles, labels: LabelsTable | None = None
) -> Competition:
    """The competition with its classes: the table's, else those of the training data (`labels`:
    its labels CSV if read already). Refused in one sentence: a training class the submission has no column
    for (class_probabilities), a sample submission whose columns match no class, fewer than two
    classes."""
    classes = competition.classes or _classes_in_data(competition, files, labels)
    if competition.submission_kind == "class_probabilities":
        columns = _sample_columns(competition, files)
        unknown = [c for c in classes if c not in columns]
        if len(unknown) == len(classes):
            raise MissingDataError(
                f"the columns of {files.sample_submission} ({', '.join(columns[:5])}, ...) match none of the "
                f"{len(classes)} classes ({', '.join(classes[:5])}, ...): check the table's classes and labels."
            )
        if unknown:
            raise MissingDataError(
                f"{len(unknown)} training class(es) have no column in {files.sample_submission} "
                f"(e.g. {unknown[:5]}): a submission cannot score them; fix the labels or the table's classes."
            )
        extra = [c for c in columns if c not in classes]
        if extra:
            raise MissingDataError(
                f"{files.sample_submission} has {len(extra)} column(s) that no training image is labelled "
                f"with (e.g. {extra[:5]}): list them in the table's classes or fix the labels."
            )
        if not competition.classes:
            classes = tuple(columns)  # the sample's order: the model's outputs are its columns
    try:
        return competition.with_classes(classes)  # checks them
    except ValueError as error:
        raise MissingDataError(f"{competition.slug}: the data {error}") from error
