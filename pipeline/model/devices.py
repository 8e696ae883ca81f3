"""Device setup: the distribution strategy, mixed precision and XLA for the hardware found."""

from __future__ import annotations

from dataclasses import dataclass

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


def _find_tpu() -> tf.distribute.cluster_resolver.TPUClusterResolver | None:
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
    except (ValueError, RuntimeError, tf.errors.NotFoundError):
        return None
    return resolver


def choose_precision(kind: str, setting: str) -> str:
    """mixed_float16 on GPU, mixed_bfloat16 on TPU, float32 on CPU, unless the setting forces it."""
    if setting == "off" or (setting == "auto" and kind == "cpu"):
        return "float32"
    return "mixed_bfloat16" if kind in ("tpu", "cpu") else "mixed_float16"


def setup_devices(config: TrainConfig) -> DeviceSetup:
    """Pick TPUStrategy, MirroredStrategy (several GPUs) or the default strategy, and set precision."""
    resolver = _find_tpu()
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
