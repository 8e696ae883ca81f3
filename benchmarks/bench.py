"""`make bench` / `make bench-quick`: every figure beside a baseline measured in the same run.

    python -m benchmarks.bench [--quick]

Prints one markdown table and writes it to runs/bench/<UTC time>.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import keras
import pandas as pd
import tensorflow as tf

from benchmarks.backends import backend_rows
from benchmarks.photos import SHARED, photos_200px
from pipeline import layout
from pipeline.acquire.index import prepare_index
from pipeline.competitions import get_competition
from pipeline.config import Config, load_config
from pipeline.data.input_pipeline import decode_image, make_dataset
from pipeline.infer.tta import predict_views
from pipeline.model.classifier import build_classifier

WORK = layout.bench_dir()
Row = dict[str, str]


def seconds(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def drain(dataset: tf.data.Dataset) -> int:
    """Iterate a dataset to its end; return the number of images seen."""
    count = 0
    for element in dataset:
        images = element[0] if isinstance(element, tuple) else element
        count += int(images.shape[0])
    return count


def row(what: str, value: float, baseline_name: str, baseline: float, unit: str = "img/s") -> Row:
    ratio = value / baseline if baseline else float("nan")
    return {
        "measure": what,
        "value": f"{value:,.0f} {unit}",
        "baseline": f"{baseline_name}: {baseline:,.0f} {unit}",
        "ratio": f"{ratio:.2f}",
    }


def settings(size: int, batch: int, augment: bool, cache: str = "memory") -> Config:
    overrides = {
        "competition": "dogs-vs-cats",
        "paths.data_root": str(WORK / "data"),
        "data.image_size": size,
        "data.batch_size": batch,
        "data.cache": cache,
    }
    if not augment:
        overrides.update(
            {f"augment.{k}": 0.0 for k in ("rotation", "zoom", "translation", "contrast", "brightness")}
        )
        overrides["augment.flip"] = False
    return load_config(overrides=overrides, environ={})


def bound(paths: list[str], size: int, batch: int) -> tf.data.Dataset:
    """The bound: decode + resize alone in a parallel map, nothing else."""

    def load(path: tf.Tensor) -> tf.Tensor:
        return tf.image.resize(decode_image(path), (size, size))

    return (
        tf.data.Dataset.from_tensor_slices(paths).map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(batch)
    )


def keras_loader(frame: pd.DataFrame, size: int, batch: int) -> tf.data.Dataset:
    """keras.utils.image_dataset_from_directory on the same files (linked into one folder per class)."""
    digest = hashlib.sha1("\n".join(frame["path"]).encode()).hexdigest()[:12]  # stable across runs
    folder = WORK / "by-class" / digest
    if not folder.exists():
        for path, label in zip(frame["path"], frame["label"], strict=True):
            target = folder / str(label) / Path(path).name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(Path(path).resolve())
    return keras.utils.image_dataset_from_directory(
        folder, image_size=(size, size), batch_size=batch, shuffle=True, seed=1, verbose=False
    )


def input_pipeline_rows(name: str, frame: pd.DataFrame, size: int, batch: int) -> list[Row]:
    rows = []
    n = len(frame)
    bound_rate = n / seconds(lambda: drain(bound(frame["path"].tolist(), size, batch)))
    keras_rate = n / seconds(lambda: drain(keras_loader(frame, size, batch)))
    for augment in (False, True):
        dataset = make_dataset(frame, settings(size, batch, augment), training=True)
        first = n / seconds(lambda ds=dataset: drain(ds))
        cached = n / seconds(lambda ds=dataset: drain(ds))
        label = f"{name}: input pipeline, augmentation {'on' if augment else 'off'}"
        rows.append(row(f"{label}, first epoch (decoding)", first, "decode+resize bound", bound_rate))
        rows.append(
            row(f"{label}, first epoch (decoding)", first, "image_dataset_from_directory", keras_rate)
        )
        rows.append(row(f"{label}, cached epoch", cached, "decode+resize bound", bound_rate))
    return rows


def training_rows(frame: pd.DataFrame, backbone: str, size: int, batch: int, steps: int) -> list[Row]:
    """fit throughput through the pipeline against the same model fed from an in-memory tensor."""
    config = dataclasses.replace(
        settings(size, batch, augment=True),
        model=dataclasses.replace(Config().model, backbone=backbone, weights="none"),
    )
    frame = frame.iloc[: steps * batch]
    model = build_classifier(config, 2).model
    model.compile(optimizer="adam", loss="binary_crossentropy", jit_compile=False)
    pipeline = make_dataset(frame, config, training=True).repeat()
    drain(make_dataset(frame, config, training=True))  # fill the cache: measure steady-state epochs
    model.fit(pipeline, steps_per_epoch=2, epochs=1, verbose=0)  # trace and warm up
    piped = steps * batch / seconds(lambda: model.fit(pipeline, steps_per_epoch=steps, epochs=1, verbose=0))
    tensors = tf.data.Dataset.from_tensors(
        (tf.random.uniform((batch, size, size, 3), 0, 255), tf.ones((batch, 1)))
    ).repeat()
    model.fit(tensors, steps_per_epoch=2, epochs=1, verbose=0)
    bound_rate = (
        steps * batch / seconds(lambda: model.fit(tensors, steps_per_epoch=steps, epochs=1, verbose=0))
    )
    return [
        row(
            f"training {backbone} {size}px, batch {batch}: fit through the pipeline",
            piped,
            "same model on an in-memory tensor",
            bound_rate,
        )
    ]


def prediction_rows(frame: pd.DataFrame, size: int, batch: int) -> list[Row]:
    config = settings(size, batch, augment=False)
    model = build_classifier(
        dataclasses.replace(config, model=dataclasses.replace(Config().model, backbone="small-cnn")), 2
    ).model
    images = make_dataset(frame[["path"]], config, training=False)
    drain(images)
    one = len(frame) / seconds(lambda: predict_views(model, images, ["original"]))
    views = ["original", "hflip", "zoom", "zoom-hflip"]
    four = len(frame) * len(views) / seconds(lambda: predict_views(model, images, views))
    return [row(f"prediction small-cnn {size}px with 4 TTA views, per view", four, "one view", one)]


MEMORY_PROBE = """
import json, sys, time
import pandas as pd
from pipeline.config import load_config
from pipeline.data.input_pipeline import make_dataset

def resident():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))

frame = pd.read_csv(sys.argv[1], dtype={"id": str})
n, size = int(sys.argv[2]), int(sys.argv[3])
frame = pd.concat([frame] * (n // len(frame) + 1), ignore_index=True).iloc[:n]
config = load_config(overrides={"data.image_size": size, "data.batch_size": 64}, environ={})
dataset = make_dataset(frame, config, training=False)
before = resident()
start = time.perf_counter()
for _ in dataset:
    pass
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "before": before, "peak": resident()}))
"""

PEAK = """
def peak():  # VmHWM: this process's own peak (ru_maxrss would include the forking parent's)
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
"""

INDEX_PROBE = (
    PEAK
    + """
import json, sys, time
from pathlib import Path
from pipeline.competitions import get_competition
from pipeline.acquire.index import build_index
from pipeline.acquire.unpack import CompetitionFiles
train, empty = Path(sys.argv[1]), Path(sys.argv[2])
start = time.perf_counter()
index = build_index(get_competition("dogs-vs-cats"), CompetitionFiles(train, empty, empty), Path(sys.argv[3]))
print(json.dumps({"seconds": time.perf_counter() - start, "images": len(index.train), "peak": peak()}))
"""
)

BASELINE_PROBE = (
    PEAK
    + """
import json
import pandas, PIL.Image  # what indexing imports, without indexing anything
print(json.dumps({"peak": peak()}))
"""
)


def probe(script: str, *args: object) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(Path.cwd())}
    done = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def memory_rows(frame: pd.DataFrame, sizes: Iterable[int], side: int) -> list[Row]:
    table = WORK / "photos-200px" / "index" / "train.csv"
    rows = []
    results = {n: probe(MEMORY_PROBE, table, n, side) for n in sizes}
    first_n = min(results)
    for n, result in results.items():
        ideal = n * side * side * 3
        cost = result["peak"] - result["before"]
        rows.append(
            row(
                f"image cache of {n:,} images at {side}px: resident memory added",
                cost / 2**20,
                "N x H x W x 3 bytes",
                ideal / 2**20,
                unit="MiB",
            )
        )
        rate, base_rate = n / result["seconds"], first_n / results[first_n]["seconds"]
        rows.append(
            row(
                f"caching {n:,} images: decode + cache throughput (linear time: ratio ~1)",
                rate,
                f"{first_n:,} images",
                base_rate,
            )
        )
    return rows


def index_rows(photos_dir: Path) -> list[Row]:
    empty = WORK / "empty"
    empty.mkdir(parents=True, exist_ok=True)
    result = probe(INDEX_PROBE, photos_dir / "train", empty, WORK / "index-probe")
    baseline = probe(BASELINE_PROBE)
    return [
        row(
            f"indexing + validating {result['images']:,} photos: peak resident memory",
            result["peak"] / 2**20,
            "Python with pandas and Pillow imported",
            baseline["peak"] / 2**20,
            unit="MiB",
        ),
    ]


def markdown_table(rows: list[Row]) -> str:
    """Rows of equal keys as a GitHub markdown table."""
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r[k] for k in header) + " |" for r in rows]
    return "\n".join(lines)


def machine() -> str:
    gpus = tf.config.list_physical_devices("GPU")
    return (
        f"{platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs, "
        f"{'GPU: ' + ', '.join(g.name for g in gpus) if gpus else 'no GPU'}); Python {platform.python_version()}, "
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run in under 3 minutes")
    args = parser.parse_args()
    os.environ["PIPELINE_SHARED_DATASETS"] = str(SHARED)
    WORK.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    mini_config = load_config(
        overrides={
            "competition": "dogs-vs-cats",
            "paths.data_root": str(WORK / "data"),
            "paths.input_root": str(WORK / "input"),
        },
        environ={},
    )
    (WORK / "input").mkdir(exist_ok=True)
    if not (WORK / "input" / "dogs-vs-cats").exists():
        (WORK / "input" / "dogs-vs-cats").symlink_to(SHARED / "dogs-vs-cats-mini")
    mini = prepare_index(mini_config, get_competition("dogs-vs-cats")).train
    photos = photos_200px(WORK / "photos-200px")
    rows: list[Row] = []
    if args.quick:
        rows += input_pipeline_rows("mini (1,500 original-size photos)", mini, 160, 32)
        rows += training_rows(photos, "small-cnn", 128, 32, steps=10)
        rows += prediction_rows(photos.iloc[:512], 128, 64)
        rows += memory_rows(photos, (4_000, 8_000), 128)
    else:
        rows += input_pipeline_rows("mini (1,500 original-size photos)", mini, 224, 32)
        rows += input_pipeline_rows("200px (8,000 photos)", photos, 224, 32)
        rows += training_rows(photos, "small-cnn", 128, 32, steps=40)
        rows += training_rows(photos, "efficientnetv2-b0", 224, 32, steps=8)
        rows += training_rows(photos, "resnet50v2", 224, 32, steps=8)
        rows += prediction_rows(photos.iloc[:2048], 128, 64)
        rows += index_rows(WORK / "photos-200px")
        rows += memory_rows(photos, (8_000, 24_000, 48_000), 128)
        rows += backend_rows()
    table = markdown_table(rows)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    report = (
        f"# Benchmarks {'(quick)' if args.quick else ''} {stamp}\n\nMachine: {machine()}\n\n{table}\n\n"
        f"Total {time.perf_counter() - started:.0f} s. Ratio = value / baseline, both measured in this run.\n"
    )
    print(report)
    (WORK / f"{stamp}.md").write_text(report)


if __name__ == "__main__":
    main()
