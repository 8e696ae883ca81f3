"""Device setup for either Keras backend: where a run executes, how a batch is spread over the
devices, mixed precision and XLA.

TensorFlow: TPUStrategy (resolver with tpu="local" on a TPU VM), MirroredStrategy over several
GPUs, or the default strategy. JAX: keras.distribution.DataParallel over every local device (TPU
cores, GPUs, or virtual CPU devices), or nothing to set up for one device.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras

from pipeline.config import TrainConfig


@dataclass(frozen=True)
class DeviceSetup:
    """What a run executes on."""

    backend: str  # tensorflow | jax
    kind: str  # tpu | gpu | cpu
    replicas: int  # devices a global batch is split over
    precision: str  # float32 | mixed_float16 | mixed_bfloat16
    jit_compile: bool
    strategy: Any = field(default=None)  # the tf.distribute strategy (TensorFlow only)

    def scope(self) -> contextlib.AbstractContextManager:
        """Where models are built and compiled: the TensorFlow strategy's scope, else nothing."""
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def __str__(self) -> str:
        return f"{self.backend} on {self.kind} x{self.replicas}, {self.precision}, jit_compile={self.jit_compile}"


def tpu_address(environ: Mapping[str, str], accel_device: Path = Path("/dev/accel0")) -> str | None:
    """Where a TPU is: TPU_NAME (a TPU node), 'local' on a TPU VM (TPU_ACCELERATOR_TYPE set, or a
    /dev/accel* device, as on Kaggle's v5e-8), or None when nothing says there is one."""
    if environ.get("TPU_NAME"):
        return environ["TPU_NAME"]
    if environ.get("TPU_ACCELERATOR_TYPE") or accel_device.exists():
        return "local"
    return None


def find_tpu() -> Any:
    """The TPU's TensorFlow resolver, or None; a TPU that should be there but cannot be reached is said aloud."""
    import tensorflow as tf

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


def choose_jit(backend: str, kind: str, setting: str) -> bool:
    """XLA: on where forced; on accelerators; on a CPU only under JAX, which has no other way to run
    fast (TensorFlow's compile time outweighs the gain on a CPU for short runs)."""
    if setting in ("on", "off"):
        return setting == "on"
    return kind != "cpu" or backend == "jax"


def _tensorflow_devices() -> tuple[Any, str]:
    import tensorflow as tf

    resolver = find_tpu()
    if resolver is not None:
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver), "tpu"
    gpus = tf.config.list_logical_devices("GPU")
    strategy = tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    return strategy, "gpu" if gpus else "cpu"


def _jax_devices() -> tuple[int, str]:
    devices = keras.distribution.list_devices()
    kind = devices[0].split(":")[0].lower()
    if len(devices) > 1:  # one global batch, split along its first axis over every device
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    return len(devices), {"cuda": "gpu"}.get(kind, kind)


def setup_devices(config: TrainConfig) -> DeviceSetup:
    """Find the devices of the current Keras backend, spread batches over them, set precision and XLA;
    the caller says what was chosen."""
    backend = keras.backend.backend()
    if backend == "jax":
        strategy, (replicas, kind) = None, _jax_devices()
    else:
        strategy, kind = _tensorflow_devices()
        replicas = strategy.num_replicas_in_sync
    precision = choose_precision(kind, config.mixed_precision)
    keras.mixed_precision.set_global_policy(precision)
    setup = DeviceSetup(
        backend, kind, replicas, precision, choose_jit(backend, kind, config.jit_compile), strategy
    )
    return setup
