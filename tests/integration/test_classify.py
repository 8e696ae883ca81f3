"""`classify`: a run's whole ensemble on image files gives the numbers `predict` gives them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import flow
from pipeline.run import Run
from tests.conftest import tiny_config


def test_classify_gives_the_probabilities_predict_gives_the_same_images(
    tmp_path: Path, demo_archive_dir: Path, capsys
) -> None:
    config = tiny_config(
        tmp_path,
        paths__input_root=str(demo_archive_dir.parent),
        paths__submissions_root=str(tmp_path / "submissions"),
        model__backbone="small-cnn",
        train__folds=2,
        train__head_epochs=1,
        train__refit=1,
        predict__tta="original,hflip",
    )
    run = flow.train(config, report_after=False)
    flow.predict(config)
    predicted = Run(run.path).read_test_predictions().set_index("id")["probability"]
    test_dir = tmp_path / "dogs-vs-cats-demo" / "test"
    photos = [test_dir / "1.jpg", test_dir / "2.jpg", test_dir / "3.jpg"]
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    found = flow.classify(config, [*photos, tmp_path / "broken.jpg"])
    assert found["path"].tolist() == [str(p) for p in photos]  # the broken file skipped, said
    p_dog = found["p(dog)"].to_numpy()
    np.testing.assert_allclose(p_dog, predicted.loc[["1", "2", "3"]].to_numpy(), atol=1e-6)
    assert ((found["class"] == "dog") == (p_dog >= 0.5)).all()
    out = capsys.readouterr().out
    assert "skipped" in out and "broken.jpg" in out and f"{photos[0]}: " in out
    assert len(flow.classify(config, [test_dir])) == len(
        pd.read_csv(tmp_path / "dogs-vs-cats-demo" / "index" / "test.csv")
    )
