"""A model in use: `classify` on image files, and `export`'s one model loaded without this
package, each giving the numbers `predict` gives the same images."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import flow
from pipeline.config import Config
from pipeline.run import Run
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def predicted(tmp_path_factory: pytest.TempPathFactory, demo_archive_dir: Path) -> tuple[Config, Run]:
    """A small-CNN run of 2 folds and a refit model, predicted with two TTA views."""
    root = tmp_path_factory.mktemp("use")
    config = tiny_config(
        root,
        paths__input_root=str(demo_archive_dir.parent),
        paths__submissions_root=str(root / "submissions"),
        model__backbone="small-cnn",
        train__folds=2,
        train__head_epochs=1,
        train__refit=1,
        predict__tta="original,hflip",
    )
    run = flow.train(config, report_after=False)
    flow.predict(config)
    return config, Run(run.path)


def test_classify_gives_the_probabilities_predict_gives_the_same_images(
    predicted: tuple[Config, Run], tmp_path: Path, capsys
) -> None:
    config, run = predicted
    probability = run.read_test_predictions().set_index("id")["probability"]
    test_dir = Path(config.paths.data_root) / "dogs-vs-cats-demo" / "test"
    photos = [test_dir / "1.jpg", test_dir / "2.jpg", test_dir / "3.jpg"]
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    found = flow.classify(config, [*photos, tmp_path / "broken.jpg"])
    assert found["path"].tolist() == [str(p) for p in photos]  # the broken file skipped, said
    p_dog = found["p(dog)"].to_numpy()
    np.testing.assert_allclose(p_dog, probability.loc[["1", "2", "3"]].to_numpy(), atol=1e-6)
    assert ((found["class"] == "dog") == (p_dog >= 0.5)).all()
    out = capsys.readouterr().out
    assert "skipped" in out and "broken.jpg" in out and f"{photos[0]}: " in out
    index = pd.read_csv(Path(config.paths.data_root) / "dogs-vs-cats-demo" / "index" / "test.csv")
    assert len(flow.classify(config, [test_dir])) == len(index)


LOAD_WITHOUT_THE_PACKAGE = """
import sys
sys.modules["pipeline"] = None  # not importable: the model must stand alone
import numpy as np
import tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
np.save(sys.argv[3], model.serve(np.load(sys.argv[2])).numpy())
"""


def test_the_exported_model_gives_predicts_numbers_without_this_package(
    predicted: tuple[Config, Run], tmp_path: Path
) -> None:
    from pipeline.data.input_pipeline import make_dataset

    config, run = predicted
    folder = flow.export(config, tmp_path / "export")
    assert json.loads((folder / "classes.json").read_text()) == ["cat", "dog"]
    test = pd.read_csv(
        Path(config.paths.data_root) / "dogs-vs-cats-demo" / "index" / "test.csv", dtype={"id": str}
    )
    images = np.concatenate(
        [np.asarray(batch) for batch in make_dataset(test[["path"]], config, training=False)]
    )
    np.save(tmp_path / "images.npy", images.astype("float32"))
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            LOAD_WITHOUT_THE_PACKAGE,
            str(folder / "saved_model"),
            str(tmp_path / "images.npy"),
            str(tmp_path / "out.npy"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    exported = np.load(tmp_path / "out.npy")
    expected = run.read_test_predictions().set_index("id").loc[test["id"], "probability"].to_numpy()
    np.testing.assert_allclose(exported[:, 1], expected, atol=1e-5)
    np.testing.assert_allclose(exported.sum(axis=1), 1.0, atol=1e-6)
