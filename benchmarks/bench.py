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
import resource
import statistics
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
from pipeline.data.augment import augment_layers
from pipeline.data.input_pipeline import apply_layers, decode_image, make_dataset
from pipeline.infer.tta import predict_views
from pipeline.model.classifier import build_classifier

WORK = layout.bench_dir()
Row = dict[str, str]


def seconds(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


TEARDOWNS: list[float] = []  # seconds each drained iterator took to shut down, reported apart


def epoch_rate(dataset: tf.data.Dataset) -> float:
    """Images per second from creating the iterator to receiving its last batch.

    Shutting the iterator down is timed apart (into TEARDOWNS): with AUTOTUNE in a pipeline,
    TensorFlow sometimes holds the deletion of an exhausted iterator for 1.2 s or more with the CPU
    idle (its autotuning thread), which halved an 8,000-image epoch at random and made rows bimodal."""
    count = 0
    start = time.perf_counter()
    iterator = iter(dataset)
    for element in iterator:
        images = element[0] if isinstance(element, tuple) else element
        count += int(images.shape[0])
    elapsed = time.perf_counter() - start
    closing = time.perf_counter()
    del iterator
    TEARDOWNS.append(time.perf_counter() - closing)
    return count / elapsed


Values = float | list[float]


def _spread(values: list[float], unit: str) -> str:
    middle = statistics.median(values)
    if len(values) == 1:
        return f"{middle:,.0f} {unit}"
    return f"{middle:,.0f} {unit} ({min(values):,.0f}-{max(values):,.0f})"


def row(what: str, value: Values, baseline_name: str, baseline: Values, unit: str = "img/s") -> Row:
    """One table row: medians with their min-max over the repetitions, and the median of the
    ratios of pairs measured one after the other (so that drift hits both sides of a pair)."""
    values = value if isinstance(value, list) else [value]
    baselines = baseline if isinstance(baseline, list) else [baseline]
    if len(baselines) == 1:
        baselines = baselines * len(values)
    ratios = [v / b if b else float("nan") for v, b in zip(values, baselines, strict=True)]
    spread = f" ({min(ratios):.2f}-{max(ratios):.2f})" if len(ratios) > 1 else ""
    return {
        "measure": what,
        "value": _spread(values, unit),
        "baseline": f"{baseline_name}: {_spread(baselines, unit)}",
        "ratio": f"{statistics.median(ratios):.2f}{spread}",
    }


def pairs(
    measure: Callable[[], float], baseline: Callable[[], float], repeat: int
) -> tuple[list[float], list[float]]:
    """`repeat` interleaved measurements A B A B ...: (values, baselines)."""
    values, baselines = [], []
    for _ in range(repeat):
        values.append(measure())
        baselines.append(baseline())
    return values, baselines


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


def augmentation_bound(images: tf.Tensor, config: Config) -> tf.data.Dataset:
    """The bound of an augmented cached epoch: the same uint8 images, already in memory as one
    tensor, batched and put through the same augmentation layers in a parallel map."""
    layers = augment_layers(config.augment, config.data.image_size, config.data.seed)
    return (
        tf.data.Dataset.from_tensor_slices(images)
        .batch(config.data.batch_size)
        .map(lambda batch: apply_layers(layers, batch, training=True), num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )


def input_pipeline_rows(name: str, frame: pd.DataFrame, size: int, batch: int, repeat: int) -> list[Row]:
    """The first (decoding) epoch without and with filling the memory cache (the fill's cost: the
    kernel zeroes every fresh page, counted as minor page faults), the cached epoch and the
    augmented cached epoch, each against its bound, all measured in turn within each repetition
    (fresh datasets each time)."""
    paths = frame["path"].tolist()
    results: dict[str, list[float]] = {}
    cached_images = tf.concat(
        [x for x, _ in make_dataset(frame, settings(size, batch, False), training=False)], axis=0
    )
    cached_images = tf.cast(cached_images, tf.uint8)
    for _ in range(repeat):
        no_cache = epoch_rate(make_dataset(frame, settings(size, batch, False, cache="none"), training=True))
        plain = make_dataset(frame, settings(size, batch, False), training=True)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        filling = epoch_rate(plain)
        results.setdefault("faults", []).append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults)
        augmented = settings(size, batch, True)
        with_augmentation = make_dataset(frame, augmented, training=True)
        epoch_rate(with_augmentation)  # fill its cache
        rates = {
            "bound": epoch_rate(bound(paths, size, batch)),
            "keras": epoch_rate(keras_loader(frame, size, batch)),
            "no-cache": no_cache,
            "filling": filling,
            "cached": epoch_rate(plain),
            "augmented": epoch_rate(with_augmentation),
            "augmentation-bound": epoch_rate(augmentation_bound(cached_images, augmented)),
        }
        for key, rate in rates.items():
            results.setdefault(key, []).append(rate)
    first = f"{name}: first (decoding) epoch"
    return [
        row(f"{first}, no cache", results["no-cache"], "image_dataset_from_directory", results["keras"]),
        row(f"{first}, no cache", results["no-cache"], "decode+resize bound", results["bound"]),
        row(
            f"{first}, filling the memory cache (the default; "
            f"{statistics.median(results['faults']) * resource.getpagesize() / 2**30:.2f} GiB of fresh pages)",
            results["filling"],
            "the same epoch without a cache",
            results["no-cache"],
        ),
        row(
            f"{first}, filling the memory cache (the default)",
            results["filling"],
            "image_dataset_from_directory",
            results["keras"],
        ),
        row(f"{name}: cached epoch", results["cached"], "decode+resize bound", results["bound"]),
        row(
            f"{name}: cached epoch with augmentation",
            results["augmented"],
            "the augmentation layers alone on the same images in memory",
            results["augmentation-bound"],
        ),
    ]


class StepsTimer(keras.callbacks.Callback):
    """When training began and when its latest step ended."""

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.start = self.last = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.last = time.perf_counter()


def training_rows(
    frame: pd.DataFrame, backbone: str, size: int, batch: int, steps: int, repeat: int, augment: bool = True
) -> list[Row]:
    """fit through the pipeline against its true bound: the same distinct real images, already
    decoded, resized and augmented, held in memory and fed the same way (a batched tf.data of
    tensors), in `steps`-batch windows alternating A B A B."""
    config = dataclasses.replace(
        settings(size, batch, augment),
        model=dataclasses.replace(Config().model, backbone=backbone, weights="none"),
    )
    frame = frame.iloc[: steps * batch]
    model = build_classifier(config, 2).model
    model.compile(optimizer="adam", loss="binary_crossentropy", jit_compile=False)
    pipeline = make_dataset(frame, config, training=True).repeat()
    epoch = list(make_dataset(frame, config, training=True))  # decoded, resized, augmented: the same work
    images = tf.concat([x for x, _ in epoch], axis=0)
    labels = tf.concat([y for _, y in epoch], axis=0)
    in_memory = tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch).repeat().prefetch(2)
    for dataset in (pipeline, in_memory):  # trace, warm up, fill the cache
        model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)

    def rate(dataset: tf.data.Dataset) -> float:
        """Images/s from the start of training to the end of its last step: `fit` then deletes its
        iterator, which with parallel augmentation took another 3-3.5 s at times (timed apart)."""
        steps_timer = StepsTimer()
        model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[steps_timer])
        TEARDOWNS.append(time.perf_counter() - steps_timer.last)
        return steps * batch / (steps_timer.last - steps_timer.start)

    piped, bounded = pairs(lambda: rate(pipeline), lambda: rate(in_memory), repeat)
    return [
        row(
            f"training {backbone} {size}px, batch {batch}, {steps * batch} distinct images, augmentation "
            f"{'on' if augment else 'off'}: fit through the pipeline",
            piped,
            f"the same images decoded{' and augmented' if augment else ''}, in memory",
            bounded,
        )
    ]


def prediction_rows(frame: pd.DataFrame, size: int, batch: int, repeat: int) -> list[Row]:
    config = settings(size, batch, augment=False)
    model = build_classifier(
        dataclasses.replace(config, model=dataclasses.replace(Config().model, backbone="small-cnn")), 2
    ).model
    images = make_dataset(frame[["path"]], config, training=False)
    epoch_rate(images)  # fill the cache
    views = ["original", "hflip", "zoom", "zoom-hflip"]
    four, one = pairs(
        lambda: len(frame) * len(views) / seconds(lambda: predict_views(model, images, views)),
        lambda: len(frame) / seconds(lambda: predict_views(model, images, ["original"])),
        repeat,
    )
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
iterator = iter(dataset)
for _ in iterator:
    pass
seconds = time.perf_counter() - start  # before the iterator's teardown (see epoch_rate)
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


def memory_rows(frame: pd.DataFrame, sizes: Iterable[int], side: int, repeat: int) -> list[Row]:
    """Cache memory against N x H x W x 3 bytes, and caching time per image against the smallest N:
    each size in its own process, the sizes in turn within each repetition."""
    table = WORK / "photos-200px" / "index" / "train.csv"
    sizes = list(sizes)
    results: dict[int, list[dict]] = {n: [] for n in sizes}
    for _ in range(repeat):
        for n in sizes:
            results[n].append(probe(MEMORY_PROBE, table, n, side))
    first_n = min(sizes)
    rows = []
    for n in sizes:
        costs = [(r["peak"] - r["before"]) / 2**20 for r in results[n]]
        rows.append(
            row(
                f"image cache of {n:,} images at {side}px: resident memory added",
                costs,
                "N x H x W x 3 bytes",
                n * side * side * 3 / 2**20,
                unit="MiB",
            )
        )
        rates = [n / r["seconds"] for r in results[n]]
        base = [first_n / r["seconds"] for r in results[first_n]]
        rows.append(
            row(
                f"caching {n:,} images: decode + cache throughput (linear time: ratio ~1)",
                rates,
                f"{first_n:,} images",
                base,
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


def load_average() -> str:
    """The 1, 5 and 15 minute load averages: how busy the machine was around the figures."""
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def machine() -> str:
    gpus = tf.config.list_physical_devices("GPU")
    return (
        f"{platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs, load average {load_average()}, "
        f"{'GPU: ' + ', '.join(g.name for g in gpus) if gpus else 'no GPU'}); Python {platform.python_version()}, "
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}"
    )


def teardown_note() -> str:
    """What the epoch rates leave out: TensorFlow shutting down each drained iterator."""
    if not TEARDOWNS:
        return ""
    stalls = sum(t > 0.5 for t in TEARDOWNS)
    return (
        f" Epoch rates run from creating the iterator to its last batch; shutting the {len(TEARDOWNS)} "
        f"iterators down took {statistics.median(TEARDOWNS):.2f} s in the median, over 0.5 s {stalls} "
        f"times (max {max(TEARDOWNS):.2f} s, CPU idle: TensorFlow's autotuning thread)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run in under 3 minutes")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions of every row (median and min-max)")
    args = parser.parse_args()
    repeat = args.repeat
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
        rows += input_pipeline_rows("mini (first 500 original-size photos)", mini.iloc[:500], 160, 32, repeat)
        rows += training_rows(photos, "small-cnn", 128, 32, steps=40, repeat=repeat)
        rows += prediction_rows(photos.iloc[:512], 128, 64, repeat)
        rows += memory_rows(photos, (2_000, 4_000), 128, repeat)
    else:
        rows += input_pipeline_rows("mini (1,500 original-size photos)", mini, 224, 32, repeat)
        rows += input_pipeline_rows("200px (8,000 photos)", photos, 224, 32, repeat)
        rows += training_rows(photos, "small-cnn", 128, 32, steps=100, repeat=repeat)
        rows += training_rows(photos, "small-cnn", 128, 32, steps=100, repeat=repeat, augment=False)
        rows += training_rows(photos, "efficientnetv2-b0", 224, 32, steps=12, repeat=repeat)
        rows += training_rows(photos, "resnet50v2", 224, 16, steps=8, repeat=repeat)
        rows += prediction_rows(photos.iloc[:2048], 128, 64, repeat)
        rows += index_rows(WORK / "photos-200px")
        rows += memory_rows(photos, (8_000, 24_000, 48_000), 128, repeat)
        rows += backend_rows(repeat=repeat)
    table = markdown_table(rows)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    report = (
        f"# Benchmarks {'(quick)' if args.quick else ''} {stamp}\n\nMachine: {machine()}\n\n{table}\n\n"
        f"Total {time.perf_counter() - started:.0f} s; load average at the end {load_average()}. Each row: "
        f"median (min-max) of {repeat} repetitions, measurement and baseline taken in turn (A B A B ...); "
        "ratio: median (min-max) of the ratios of those pairs."
        f"{teardown_note()}\n"
    )
    print(report)
    (WORK / f"{stamp}.md").write_text(report)


if __name__ == "__main__":
    main()
