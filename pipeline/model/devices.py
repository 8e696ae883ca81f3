"""Device setup: the distribution strategy, mixed precision and XLA for the hardware found."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf

from pipeline.config import TrainConfig


@dataclass(frozen=True)
class DeviceSetup:
    """What a run executes on."""

    strategy: tf.distribute.Strategy
    kind: str  # tpu | gpu | cpu
    replicas: int
    precision: str  # float32 | mixed_float16 | mixed_bfloat16
    jit_compile: bool

    def __str__(self) -> str:
        return f"{self.kind} x{self.replicas}, {self.precision}, jit_compile={self.jit_compile}"


def tpu_address(environ: Mapping[str, str], accel_device: Path = Path("/dev/accel0")) -> str | None:
    """Where a TPU is: TPU_NAME (a TPU node), 'local' on a TPU VM (TPU_ACCELERATOR_TYPE set, or a
    /dev/accel* device, as on Kaggle's v5e-8), or None when nothing says there is one."""
    if environ.get("TPU_NAME"):
        return environ["TPU_NAME"]
    if environ.get("TPU_ACCELERATOR_TYPE") or accel_device.exists():
        return "local"
    return None


def find_tpu() -> tf.distribute.cluster_resolver.TPUClusterResolver | None:
    """The TPU's resolver, or None; a TPU that should be there but cannot be reached is said aloud."""
    address = tpu_address(os.environ)
    if address is None:
        return None
    try:
        return tf.distribute.cluster_resolver.TPUClusterResolver(tpu=address)
    except (ValueError, RuntimeError, tf.errors.NotFoundError) as error:
        print(
            f"warning: this machine looks like a TPU host ({address}) but TensorFlow cannot reach it: {error}"
        )
        return None


def choose_precision(kind: str, setting: str) -> str:
    """mixed_float16 on GPU, mixed_bfloat16 on TPU, float32 on CPU, unless the setting forces it."""
    if setting == "off" or (setting == "auto" and kind == "cpu"):
        return "float32"
    return "mixed_bfloat16" if kind in ("tpu", "cpu") else "mixed_float16"


def setup_devices(config: TrainConfig) -> DeviceSetup:
    """Pick TPUStrategy, MirroredStrategy (several GPUs) or the default strategy, and set precision."""
    resolver = find_tpu()
    if resolver is not None:
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        strategy: tf.distribute.Strategy = tf.distribute.TPUStrategy(resolver)
        kind = "tpu"
    else:
        gpus = tf.config.list_logical_devices("GPU")
        strategy = tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
        kind = "gpu" if gpus else "cpu"
    precision = choose_precision(kind, config.mixed_precision)
    keras.mixed_precision.set_global_policy(precision)
    # XLA pays off on accelerators; on a CPU its compile time outweighs the gain for short runs.
    jit = {"on": True, "off": False}.get(config.jit_compile, kind != "cpu")
    return DeviceSetup(strategy, kind, strategy.num_replicas_in_sync, precision, jit)
