"""How fast this machine turns images into features: images per second of a frozen backbone at one
size, decoding and resizing included, measured on a few training images and cached in
data/throughput.json (the auto recipe plans with it before any real work).

Training runs forward and backward: TRAIN_COST times the forward pass (backward is about twice
the forward), the usual rule; the plan prints its estimates beside the times the members took.
"""

from __future__ import annotations

import json
import os
import time

import keras
import pandas as pd

from pipeline import layout
from pipeline.atomic import write_text
from pipeline.config import Config
from pipeline.data.input_pipeline import make_dataset

SAMPLE = 256  # training images timed per (backbone, size), after a warm-up batch of others
TRAIN_COST = 3.0  # a training step costs this many forward passes


def machine_key() -> str:
    """This machine as the cache knows it: backend, accelerators, CPU count."""
    import tensorflow as tf

    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    where = f"{len(gpus)}gpu" if gpus else "cpu"
    return f"{keras.backend.backend()}-{where}-{os.cpu_count()}cores"


def _read(config: Config) -> dict[str, float]:
    path = layout.throughput_file(config)
    try:
        return {str(k): float(v) for k, v in json.loads(path.read_text()).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def measure(config: Config, images: pd.DataFrame, network_of) -> float:
    """Images per second of `network_of(config)` (a Keras model of images) on `config`'s size,
    decoding included: timed on up to SAMPLE of `images` after one warm-up batch."""
    network = network_of(config)
    sample = images[["path"]].head(SAMPLE)
    warm = images[["path"]].tail(32)  # traces the model and the input pipeline before the timed pass
    network.predict(make_dataset(warm, config, training=False), verbose=0)
    started = time.perf_counter()
    network.predict(make_dataset(sample, config, training=False), verbose=0)
    seconds = time.perf_counter() - started
    keras.backend.clear_session()
    return len(sample) / max(seconds, 1e-6)


def images_per_second(config: Config, backbone: str, weights: str, images: pd.DataFrame, network_of) -> float:
    """The cached rate of `backbone` at `config`'s image size on this machine, measured when new."""
    key = f"{machine_key()}|{backbone}|{config.data.image_size}"
    saved = _read(config)
    if key in saved:
        return saved[key]
    rate = measure(config, images, network_of)
    saved = {**_read(config), key: round(rate, 2)}  # another process may have added rates
    path = layout.throughput_file(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(saved, indent=2, sort_keys=True) + "\n")
    print(
        f"throughput: {backbone} at {config.data.image_size} px, {rate:.0f} images/s here (weights {weights})"
    )
    return rate
