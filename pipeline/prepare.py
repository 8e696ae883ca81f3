"""Turn a competition's files into a validated image index: unpack, then index (or reuse one)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.competitions import Competition
from pipeline.config import Config
from pipeline.index import ImageIndex, build_index, load_index, save_index
from pipeline.unpack import unpack_competition


def index_dir(config: Config) -> Path:
    """Where the index tables of the configured competition are saved."""
    return config.competition_dir() / "index"


def prepare_index(config: Config, competition: Competition, rebuild: bool = False) -> ImageIndex:
    """Unpack the competition (if needed) and return its index, building it on first use."""
    target = index_dir(config)
    if not rebuild and (saved := load_index(target)) is not None:
        return saved
    files = unpack_competition(competition, config.input_dir(), config.competition_dir())
    index = build_index(competition, files, config.competition_dir(), config.data.validation_workers)
    save_index(index, target)
    config.save(target / "config.json")
    return index


def sample_submission(config: Config, competition: Competition) -> pd.DataFrame:
    """The competition's sample submission (unpacking it first if needed)."""
    files = unpack_competition(competition, config.input_dir(), config.competition_dir())
    return pd.read_csv(files.sample_submission)


def describe_index(index: ImageIndex, competition: Competition, where: Path) -> str:
    """A short report: images per class, test images, rejected files and where they are listed."""
    counts = index.class_counts(competition.classes)
    lines = [f"Index of {competition.slug} in {where}:"]
    lines += [f"  train {name:>8}: {count:,}" for name, count in counts.items()]
    lines.append(f"  test {'':>9}  {len(index.test):,}")
    if len(index.rejects):
        lines.append(
            f"  rejected: {len(index.rejects)} file(s), listed with the reason in {where / 'rejects.csv'}"
        )
        for row in index.rejects.head(5).itertuples():
            lines.append(f"    {Path(row.path).name}: {row.reason}")
    else:
        lines.append("  rejected: none")
    return "\n".join(lines)
