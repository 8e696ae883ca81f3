"""Measure: the small CNN from scratch on the 8,000 real 200px photos, 20% held out, on this machine.

python -m benchmarks.train_small_cnn [image_size] [epochs]
"""

from __future__ import annotations

import sys
import time

from benchmarks.photos import photos_200px
from pipeline import layout
from pipeline.acquire.index import ImageIndex
from pipeline.competitions import get_competition
from pipeline.config import load_config
from pipeline.fit.splits import holdout_split
from pipeline.fit.train import train_run
from pipeline.run import Run


def main() -> None:
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 128
    epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    work = layout.bench_dir() / "photos-200px"
    train = photos_200px(work)
    config = load_config(
        overrides={
            "competition": "dogs-vs-cats",
            "paths.data_root": str(work / "data"),
            "paths.runs_root": str(layout.bench_dir()),
            "model.backbone": "small-cnn",
            "data.image_size": size,
            "data.batch_size": 64,
            "train.head_epochs": epochs,
            "train.head_learning_rate": 2e-3,
            "train.patience": 5,
            "train.run_name": f"small-cnn-200px-photos-{size}px-{epochs}ep",
        }
    )
    training, validation = holdout_split(config, ImageIndex(train, train.iloc[:0], train.iloc[:0]))
    start = time.perf_counter()
    result = train_run(
        config,
        get_competition("dogs-vs-cats"),
        training,
        validation,
        Run(layout.kfold_run_dir(config)),
        verbose=2,
    )
    print(f"{result.read_metrics()} wall {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
