"""Keras backends side by side: fit throughput through the pipeline under TensorFlow and JAX, and
JAX data parallelism over 1, 2 and 4 virtual CPU devices, each figure beside its baseline measured
in the same run. Every measurement runs in its own process (a backend is fixed at import).

    python -m benchmarks.backends [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time

from benchmarks.photos import photos_200px
from pipeline import layout

Row = dict[str, str]
WORK = layout.bench_dir() / "photos-200px"


def measure(backbone: str, size: int, batch: int, images: int) -> dict:
    """In a worker process: images/s of the second epoch of `fit` through the input pipeline
    (the first compiles and fills the cache), with the devices this process sees."""
    import keras

    from pipeline.config import load_config
    from pipeline.data.input_pipeline import make_dataset
    from pipeline.model.classifier import build_classifier
    from pipeline.model.devices import setup_devices

    config = load_config(
        overrides={
            "competition": "dogs-vs-cats",
            "paths.data_root": str(WORK / "data"),
            "model.backbone": backbone,
            "model.weights": "none",
            "data.image_size": size,
            "data.batch_size": batch,
        },
        environ={},
    )
    devices = setup_devices(config.train)
    global_batch = batch * devices.replicas
    frame = photos_200px(WORK).iloc[: max(images, 2 * global_batch)]
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, batch_size=global_batch))
    dataset = make_dataset(frame, config, training=True)
    with devices.scope():
        model = build_classifier(config, 2).model
        model.compile(optimizer="adam", loss="binary_crossentropy", jit_compile=devices.jit_compile)
    model.fit(dataset, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(dataset, epochs=1, verbose=0)
    seconds = time.perf_counter() - start
    return {"rate": len(frame) / seconds, "devices": devices.replicas, "backend": keras.backend.backend()}


def run_worker(backend: str, devices: int, backbone: str, size: int, batch: int, images: int) -> dict:
    env = {
        **os.environ,
        "KERAS_BACKEND": backend,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
    }
    args = [
        sys.executable,
        "-m",
        "benchmarks.backends",
        "--worker",
        backbone,
        str(size),
        str(batch),
        str(images),
    ]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"{backend} x{devices} {backbone}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def backend_rows(quick: bool = False, repeat: int = 3) -> list[Row]:
    """Rows in the table format of benchmarks.bench: each a median over `repeat` worker processes,
    measurement and baseline started in turn."""
    from benchmarks.bench import pairs, row

    photos_200px(WORK)  # unpack and index once, before the workers
    images = 512 if quick else 2048
    rows = []
    cases = [("small-cnn", 128, 32, images)]
    if not quick:
        cases.append(("efficientnetv2-b0", 224, 32, 256))
    for backbone, size, batch, count in cases:
        jax_rates, tf_rates = pairs(
            lambda b=backbone, s=size, k=batch, n=count: run_worker("jax", 1, b, s, k, n)["rate"],
            lambda b=backbone, s=size, k=batch, n=count: run_worker("tensorflow", 1, b, s, k, n)["rate"],
            repeat,
        )
        rows.append(
            row(
                f"fit {backbone} {size}px through the pipeline: JAX backend",
                jax_rates,
                "TensorFlow backend",
                tf_rates,
            )
        )
    for devices in (2, 4):
        several, one = pairs(
            lambda d=devices: run_worker("jax", d, "small-cnn", 128, 32, images)["rate"],
            lambda: run_worker("jax", 1, "small-cnn", 128, 32, images)["rate"],
            repeat,
        )
        rows.append(
            row(
                f"JAX data-parallel over {devices} virtual CPU devices (batch 32 each), small-cnn 128px",
                several,
                "1 device",
                one,
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs: a smoke test")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions of every row (median and min-max)")
    parser.add_argument(
        "--worker", nargs=4, metavar=("BACKBONE", "SIZE", "BATCH", "IMAGES"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.worker:
        backbone, size, batch, images = args.worker
        print(json.dumps(measure(backbone, int(size), int(batch), int(images))))
        return
    from benchmarks.bench import machine, markdown_table

    started = time.perf_counter()
    table = markdown_table(backend_rows(args.quick, args.repeat))
    print(f"# Backends\n\nMachine: {machine()}\n\n{table}\n\nTotal {time.perf_counter() - started:.0f} s.")


if __name__ == "__main__":
    main()
