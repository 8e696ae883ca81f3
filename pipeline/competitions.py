"""Competitions as data: the layout and scoring of each one, read from competitions.toml."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from pipeline.metrics import METRICS, Metric

_SPEC_FILE = Path(__file__).with_name("competitions.toml")  # built in, read-only
USER_FILE_ENV = "PIPELINE_COMPETITIONS"


class UnknownCompetitionError(KeyError):
    """The competition has no entry in competitions.toml."""

    def __str__(self) -> str:
        return str(self.args[0])


class BadSlugError(UnknownCompetitionError):
    """A competition slug that Kaggle would not give (and that could name a path outside data/)."""


SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")  # Kaggle's own rule: lower-case letters, digits, hyphens
MAX_SLUG_CHARS = 100


def check_slug(slug: str) -> str:
    """`slug` when Kaggle could have given it, else BadSlugError: slugs name folders and files."""
    if len(slug) > MAX_SLUG_CHARS or SLUG.fullmatch(slug) is None:
        raise BadSlugError(
            f"{slug[:MAX_SLUG_CHARS]!r} is no competition slug: a slug has lower-case letters, digits and "
            "single hyphens only, as in the competition's address www.kaggle.com/competitions/<slug>."
        )
    return slug


LABEL_SOURCES = ("pattern", "csv", "folders")
# probability: P(positive) in label_column (two classes); label: the class index in label_column;
# class_name: the class's name in label_column; class_probabilities: one column per class, named
# by the class, in the sample submission's order.
SUBMISSION_KINDS = ("probability", "label", "class_name", "class_probabilities")
ANY_NAME = r"^(?P<id>.+)\.[A-Za-z0-9]+$"  # the file name without its extension


@dataclass(frozen=True)
class Competition:
    """How one competition's files are laid out and how its submissions are scored."""

    slug: str
    title: str
    train_dir: str
    test_dir: str
    sample_submission: str
    classes: tuple[str, ...] = ()  # () = read from the data (labels, class folders or the sample's columns)
    train_archive: str = ""  # "" = train_dir is a folder of the download itself, not a nested zip
    test_archive: str = ""
    labels: str = "pattern"  # where training labels come from: pattern | csv | folders
    train_pattern: str = ""  # labels = pattern: named groups `id` and `label`
    test_pattern: str = ANY_NAME  # the named group `id` is the submission's id
    labels_csv: str = ""  # labels = csv: the file, its id and label columns, ids with extension?
    labels_id_column: str = "id"
    labels_label_column: str = "label"
    labels_id_has_extension: bool = False
    id_column: str = "id"
    label_column: str = "label"
    submission_kind: str = "probability"
    metric: str = "log_loss"
    code_competition: bool = False  # kernels must run offline to submit (Kaggle's "code competition")

    def __post_init__(self) -> None:
        if self.labels not in LABEL_SOURCES:
            raise ValueError(f"labels is {self.labels!r}; write one of {', '.join(LABEL_SOURCES)}")
        if self.labels == "pattern" and not self.train_pattern:
            raise ValueError("labels = pattern needs a train_pattern with the groups id and label")
        if self.labels == "csv" and not self.labels_csv:
            raise ValueError("labels = csv needs labels_csv, the file holding the training labels")
        if self.metric not in METRICS:
            raise ValueError(f"metric is {self.metric!r}; write one of {', '.join(METRICS)}")
        if self.metric_entry.scores == "probabilities" and self.submission_kind in ("label", "class_name"):
            raise ValueError(
                f"metric {self.metric} scores probabilities, but submission_kind = {self.submission_kind} "
                "submits classes: use probability or class_probabilities"
            )
        if self.submission_kind not in SUBMISSION_KINDS:
            raise ValueError(
                f"submission_kind is {self.submission_kind!r}; write one of {', '.join(SUBMISSION_KINDS)}"
            )
        if self.labels == "pattern" and not self.classes:
            raise ValueError("labels = pattern needs the list of classes (the values of the group `label`)")
        if self.classes:
            self.check_classes()

    def check_classes(self) -> None:
        """Raise ValueError unless the classes fit the submission and the metric."""
        count = len(self.classes)
        if count < 2 or len(set(self.classes)) != count:
            raise ValueError(f"lists the classes {list(self.classes)[:10]}; write two or more, each once")
        if self.submission_kind == "probability" and count != 2:
            raise ValueError(
                f"has {count} classes; submission_kind = probability is for two: use class_probabilities, "
                "class_name or label"
            )
        if count == 2 and not self.metric_entry.binary:
            raise ValueError(
                f"metric {self.metric} is for more than two classes; use accuracy, f1 or roc_auc"
            )
        if count > 2 and not self.metric_entry.many:
            raise ValueError(f"metric {self.metric} is for two classes; use f1_micro, f1_macro or accuracy")

    def with_classes(self, classes: tuple[str, ...]) -> Competition:
        """This competition with the classes read from its data (a table that lists them keeps them)."""
        return self if self.classes else dataclasses.replace(self, classes=tuple(classes))

    @property
    def num_classes(self) -> int:
        """How many classes (0 until they are read from the data, see `with_classes`)."""
        return len(self.classes)

    @property
    def metric_entry(self) -> Metric:
        """The competition's metric: its function, direction and post-processing."""
        return METRICS[self.metric]

    @property
    def higher_is_better(self) -> bool:
        """True for metrics where a larger score wins (accuracy, ROC AUC)."""
        return self.metric_entry.higher_is_better

    @property
    def archive(self) -> str:
        """The file `kaggle competitions download -c <slug>` writes."""
        return f"{self.slug}.zip"

    @property
    def url(self) -> str:
        """The competition's page on Kaggle."""
        return f"https://www.kaggle.com/competitions/{self.slug}"

    def parse_train_name(self, name: str) -> tuple[str, int] | None:
        """(id, class index) of a training file name (labels = pattern), or None if it does not fit."""
        match = re.match(self.train_pattern, name, re.ASCII)
        if match is None or match.group("label") not in self.classes:
            return None
        return match.group("id"), self.classes.index(match.group("label"))

    def parse_test_name(self, name: str) -> str | None:
        """The id of a test file name, or None if the name does not fit."""
        match = re.match(self.test_pattern, name, re.ASCII)
        return None if match is None else match.group("id")


def user_file() -> Path:
    """The user's own competitions file (tables written by `describe-competition`, or by hand):
    $PIPELINE_COMPETITIONS, or competitions.toml in the working folder."""
    return Path(os.environ.get(USER_FILE_ENV, "competitions.toml"))


@cache
def _read_tables(path: Path, stamp: float) -> dict[str, dict]:
    return tomllib.loads(path.read_text()) if stamp else {}


def _tables() -> dict[str, tuple[dict, Path]]:
    """Every table: the built-in ones, then the user's (which may not reuse a built-in slug)."""
    tables = {slug: (spec, _SPEC_FILE) for slug, spec in _read_tables(_SPEC_FILE, 1.0).items()}
    mine = user_file()
    stamp = mine.stat().st_mtime if mine.is_file() else 0.0
    try:
        user_tables = _read_tables(mine.resolve(), stamp)
    except tomllib.TOMLDecodeError as error:
        raise UnknownCompetitionError(f"{mine} is not valid TOML ({error}): fix or delete it.") from error
    for slug, spec in user_tables.items():
        if slug in tables:
            raise UnknownCompetitionError(
                f"{mine} describes {slug!r} again; it is built in: remove that table."
            )
        tables[slug] = (spec, mine)
    return tables


@cache
def _build(slug: str, spec_json: str) -> Competition:
    spec = json.loads(spec_json)
    return Competition(slug=slug, **{**spec, "classes": tuple(str(c) for c in spec.get("classes", ()))})


def get_competition(slug: str) -> Competition:
    """The description of `slug`, or an error listing the known ones and how to add one."""
    check_slug(slug)
    tables = _tables()
    if slug not in tables:
        raise UnknownCompetitionError(
            f"no description of competition {slug!r}; known: {', '.join(sorted(tables))}. To add one, run "
            f"`python -m pipeline describe-competition {slug}` (it reads the downloaded files and writes a "
            f"table into {user_file()}), or describe its layout there by hand."
        )
    spec, source = tables[slug]
    try:
        return _build(slug, json.dumps(spec, sort_keys=True))
    except (TypeError, ValueError) as error:  # an unknown or missing field, a value it cannot use
        raise UnknownCompetitionError(f"the table [{slug!r}] in {source}: {error}") from error
