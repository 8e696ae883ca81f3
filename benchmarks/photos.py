"""The real photos of ../shared/datasets as indexed tables, for benchmarks and measurements."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from pipeline.acquire.index import build_index, load_index, save_index
from pipeline.acquire.unpack import CompetitionFiles, unpack_images
from pipeline.competitions import get_competition

SHARED = Path(
    os.environ.get("PIPELINE_SHARED_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets")
)


def photos_200px(work_dir: Path) -> pd.DataFrame:
    """Index of the 8,000 200x200 photos (train.zip only: no test set), unpacked under `work_dir`."""
    index_dir = work_dir / "index"
    saved = load_index(index_dir)
    if saved is not None:
        return saved.train
    train_dir = unpack_images(SHARED / "dogs-vs-cats-200px" / "train.zip", "train", work_dir)
    empty = work_dir / "no-test"
    empty.mkdir(exist_ok=True)
    index = build_index(
        get_competition("dogs-vs-cats"), CompetitionFiles(train_dir, empty, empty), work_dir / "converted"
    )
    save_index(index, index_dir)
    return index.train
