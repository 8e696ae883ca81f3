"""The JAX backend: training, resume, prediction, augmentation, data parallelism over virtual devices,
and models that move between backends. Each JAX run is its own process (a backend is fixed at import)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("jax")

from pipeline.acquire.index import ImageIndex
from pipeline.competitions import Competition
from pipeline.data.input_pipeline import make_dataset
from pipeline.fit.train import train_holdout
from pipeline.submit.submission_file import validate_submission
from tests.conftest import tiny_config


def jax_env(devices: int = 1) -> dict[str, str]:
    return {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
    }


def pipeline_args(tmp_path: Path, demo_archive_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "pipeline", *extra, "--competition", "dogs-vs-cats-demo",
        "--data-root", str(tmp_path / "data"), "--input-root", str(demo_archive_dir.parent),
        "--runs-root", str(tmp_path / "runs"), "--submissions-root", str(tmp_path / "submissions"),
        "--backbone", "small-cnn", "--image-size", "32", "--batch-size", "8", "--validation-workers", "1",
    ]  # fmt: skip


def test_a_two_fold_jax_run_resumes_after_a_kill_and_predicts(
    tmp_path: Path, demo_archive_dir: Path, demo: Competition
) -> None:
    train = [
        *pipeline_args(tmp_path, demo_archive_dir, "train"),
        "--folds",
        "2",
        "--epochs-head",
        "4",
        "--patience",
        "9",
    ]
    first = subprocess.Popen(train, env=jax_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    history = tmp_path / "runs" / "dogs-vs-cats-demo" / "small-cnn-32px" / "fold-0" / "history-head.csv"
    deadline = time.time() + 180
    while time.time() < deadline and first.poll() is None:
        if history.is_file() and len(history.read_text().splitlines()) >= 2:  # epoch 1 done
            break
        time.sleep(0.1)
    first.send_signal(signal.SIGKILL)
    first.wait()
    resumed = subprocess.run(train, env=jax_env(), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "on jax on cpu x1" in resumed.stdout
    assert re.search(r"phase head: epochs [234]-4", resumed.stdout)  # fold 0 went on where it stopped
    assert json.loads((history.parent / "config.json").read_text())["backend"] == "jax"
    predicted = subprocess.run(
        pipeline_args(tmp_path, demo_archive_dir, "predict"),
        env=jax_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    submission = next((tmp_path / "submissions").glob("*.csv"))
    validate_submission(
        pd.read_csv(submission), pd.read_csv(demo_archive_dir / "solution.csv").assign(label=0.5), demo
    )


PROBE = """
import json, sys
import numpy as np
from pipeline.acquire.index import load_index
from pipeline.config import load_config
from pipeline.data.input_pipeline import make_dataset
config = load_config(overrides=json.loads(sys.argv[1]))
index = load_index(__import__("pathlib").Path(sys.argv[2]))
batch = next(iter(make_dataset(index.train, config, training=True)))[0].numpy()
# seeding: two pipelines built alike give the same batch (without RandAugment, which takes ~15 s to
# build under JAX on this CPU)
lighter = load_config(overrides={**json.loads(sys.argv[1]), "augment.randaugment_magnitude": 0.0})
again = [next(iter(make_dataset(index.train, lighter, training=True)))[0].numpy() for _ in range(2)]
print(json.dumps({"shape": list(batch.shape), "min": float(batch.min()), "max": float(batch.max()),
                  "seeded": bool(np.array_equal(*again))}))
"""


def test_augmentation_under_jax_gives_the_same_shapes_ranges_and_seeding(
    tmp_path: Path, demo_index: ImageIndex
) -> None:
    from pipeline.acquire.index import save_index

    values = {
        "competition": "dogs-vs-cats-demo", "data.image_size": 32, "data.batch_size": 8, "data.deterministic": True,
        "augment.randaugment_magnitude": 0.5, "augment.mixup_alpha": 0.4, "augment.crop": 0.1,
    }  # fmt: skip
    save_index(demo_index, tmp_path / "index")
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(values), str(tmp_path / "index")],
        env=jax_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    under_jax = json.loads(done.stdout.strip().splitlines()[-1])
    config = tiny_config(
        tmp_path, **{k.replace(".", "__"): v for k, v in values.items() if k != "competition"}
    )
    under_tf = next(iter(make_dataset(demo_index.train, config, training=True)))[0].numpy()
    assert under_jax["shape"] == list(under_tf.shape) and under_jax["seeded"]
    assert under_jax["min"] >= 0 and under_jax["max"] <= 255 and under_tf.min() >= 0 and under_tf.max() <= 255


SHARDING = """
import json, sys
import keras, numpy as np
from pipeline.config import load_config
from pipeline.model.devices import setup_devices
setup = setup_devices(load_config(environ={}).train)
distribution = keras.distribution.distribution()
batch = keras.distribution.distribute_tensor(np.zeros((16, 8), "float32"), distribution.get_data_layout((16, 8)))
print(json.dumps({"replicas": setup.replicas, "mesh": list(distribution.device_mesh.shape),
                  "devices": len(batch.sharding.device_set), "shard": list(batch.addressable_shards[0].data.shape)}))
"""


def validation_log_loss(
    tmp_path: Path, demo_archive_dir: Path, devices: int, batch: int
) -> tuple[float, str]:
    args = [
        *pipeline_args(tmp_path / f"x{devices}", demo_archive_dir, "train"),
        "--holdout",
        "--epochs-head",
        "3",
        "--deterministic",
    ]
    args[args.index("--batch-size") + 1] = str(batch)
    done = subprocess.run(args, env=jax_env(devices), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return float(re.search(r"Validation: log_loss ([0-9.]+)", done.stdout).group(1)), done.stdout


def test_four_virtual_devices_shard_each_batch_and_learn_as_one_device(
    tmp_path: Path, demo_archive_dir: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SHARDING], env=jax_env(4), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    layout = json.loads(done.stdout.strip().splitlines()[-1])
    assert layout == {
        "replicas": 4,
        "mesh": [4],
        "devices": 4,
        "shard": [4, 8],
    }  # a quarter of the batch each
    four, said = validation_log_loss(tmp_path, demo_archive_dir, devices=4, batch=4)  # global batch 16
    assert "on jax on cpu x4" in said
    one, _ = validation_log_loss(tmp_path, demo_archive_dir, devices=1, batch=16)
    assert four == pytest.approx(one, abs=0.01)


MOVE = """
import sys, keras, numpy as np
from pipeline.model import classifier  # registers the project's layers
model = keras.saving.load_model(sys.argv[1])
np.save(sys.argv[3], model.predict(np.load(sys.argv[2]), verbose=0))
"""


def test_a_model_saved_under_tensorflow_predicts_the_same_under_jax(
    tmp_path: Path, demo: Competition, demo_index: ImageIndex
) -> None:
    config = tiny_config(tmp_path, model__backbone="small-cnn", train__head_epochs=1, augment__where="model")
    run = train_holdout(config, demo, demo_index).path
    import keras

    images = np.concatenate(
        [x.numpy() for x in make_dataset(demo_index.test[["path"]], config, training=False)]
    )
    np.save(tmp_path / "images.npy", images)
    expected = keras.saving.load_model(run / "model.keras").predict(images, verbose=0)
    done = subprocess.run(
        [sys.executable, "-c", MOVE, str(run / "model.keras"), str(tmp_path / "images.npy"), str(tmp_path / "jax.npy")],
        env=jax_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    np.testing.assert_allclose(np.load(tmp_path / "jax.npy"), expected, atol=1e-5)
