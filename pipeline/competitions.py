"""Competitions as data: the layout and scoring of each one, read from competitions.toml."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

_SPEC_FILE = Path(__file__).with_name("competitions.toml")


class UnknownCompetitionError(KeyError):
    """The competition has no entry in competitions.toml."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class Competition:
    """How one competition's files are laid out and how its submissions are scored."""

    slug: str
    title: str
    train_archive: str
    train_dir: str
    test_archive: str
    test_dir: str
    sample_submission: str
    train_pattern: str
    test_pattern: str
    classes: tuple[str, ...]
    id_column: str
    label_column: str
    submission_kind: str
    metric: str
    code_competition: bool = False  # kernels must run offline to submit (Kaggle's "code competition")

    @property
    def archive(self) -> str:
        """The file `kaggle competitions download -c <slug>` writes."""
        return f"{self.slug}.zip"

    @property
    def url(self) -> str:
        """The competition's page on Kaggle."""
        return f"https://www.kaggle.com/competitions/{self.slug}"

    def parse_train_name(self, name: str) -> tuple[str, int] | None:
        """(id, class index) of a training file name, or None if the name does not fit."""
        match = re.match(self.train_pattern, name, re.ASCII)
        if match is None or match.group("label") not in self.classes:
            return None
        return match.group("id"), self.classes.index(match.group("label"))

    def parse_test_name(self, name: str) -> str | None:
        """The id of a test file name, or None if the name does not fit."""
        match = re.match(self.test_pattern, name, re.ASCII)
        return None if match is None else match.group("id")


@cache
def _load_specs() -> dict[str, Competition]:
    raw = tomllib.loads(_SPEC_FILE.read_text())
    return {
        slug: Competition(slug=slug, **{**spec, "classes": tuple(spec["classes"])})
        for slug, spec in raw.items()
    }


def get_competition(slug: str) -> Competition:
    """The description of `slug`, or an error listing the known ones."""
    specs = _load_specs()
    if slug not in specs:
        raise UnknownCompetitionError(
            f"no description of competition {slug!r}; known: {', '.join(sorted(specs))}. "
            f"To add one, describe its layout in {_SPEC_FILE}."
        )
    return specs[slug]
