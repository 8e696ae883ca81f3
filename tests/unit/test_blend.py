"""Blending runs on their out-of-fold predictions: weights, post-processing, refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.competitions import get_competition
from pipeline.config import load_config
from pipeline.fit.metrics import binary_scores
from pipeline.infer.blend import BlendError, blend, find_runs
from pipeline.infer.ensembles.weighted import METHOD as WEIGHTED
from pipeline.metrics import METRICS
from pipeline.run import Run

SLUG = "dogs-vs-cats-redux-kernels-edition"


def predicted_run(
    folder: Path, oof: np.ndarray, labels: np.ndarray, test: np.ndarray, competition=SLUG
) -> Run:
    """A run folder as `predict` leaves it: out-of-fold and test predictions and the configuration."""
    run = Run(folder)
    run.save_config(load_config(overrides={"competition": competition}, environ={}))
    ids = [str(i) for i in range(len(labels))]
    run.write_final_oof(pd.DataFrame({"id": ids, "label": labels, "probability": oof}))
    run.write_test_predictions(pd.DataFrame({"id": [str(i) for i in range(len(test))], "probability": test}))
    return run


def two_runs(tmp_path: Path) -> tuple[list[Run], np.ndarray]:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    good = np.clip(0.5 + (labels - 0.5) * 0.8 + rng.normal(0, 0.1, 400), 0.01, 0.99)  # informative
    noise = rng.uniform(0.01, 0.99, 400)  # no information
    runs_root = tmp_path / "runs" / SLUG
    runs = [
        predicted_run(runs_root / "good", good, labels, rng.uniform(size=50)),
        predicted_run(runs_root / "noise", noise, labels, rng.uniform(size=50)),
    ]
    return runs, labels


def test_weights_are_non_negative_sum_to_one_and_favour_the_better_run(tmp_path: Path) -> None:
    runs, labels = two_runs(tmp_path)
    oof = np.stack([r.read_final_oof()["probability"].to_numpy() for r in runs])
    weights = WEIGHTED.fit(oof, labels, METRICS["log_loss"])
    assert weights.sum() == pytest.approx(1.0) and (weights >= 0).all()
    assert weights[0] > 0.9  # the run without information gets (almost) nothing


def test_a_blend_is_a_run_with_its_cv_and_test_predictions(tmp_path: Path, capsys) -> None:
    runs, _ = two_runs(tmp_path)
    config = load_config(
        overrides={"competition": SLUG, "paths.runs_root": str(tmp_path / "runs")}, environ={}
    )
    result = blend(config, get_competition(SLUG), find_runs(config, ["good", "noise"]))
    assert result.run.name == "blend-good+noise" and len(result.test) == 50
    good = runs[0].read_final_oof()
    alone = binary_scores(good["label"].to_numpy(), good["probability"].to_numpy())["log_loss"]
    assert result.run.cv_score("log_loss") <= alone + 1e-6  # no worse than the better run alone
    assert result.run.read_final_oof() is not None  # a blend can be blended again
    assert "Blend weights" in capsys.readouterr().out


def test_runs_that_cannot_be_blended_are_refused_in_one_sentence(tmp_path: Path) -> None:
    runs, labels = two_runs(tmp_path)
    config = load_config(
        overrides={"competition": SLUG, "paths.runs_root": str(tmp_path / "runs")}, environ={}
    )
    competition = get_competition(SLUG)
    root = tmp_path / "runs" / SLUG
    with pytest.raises(BlendError, match="no run 'missing'"):
        find_runs(config, ["good", "missing"])
    with pytest.raises(BlendError, match="two runs"):
        blend(config, competition, runs[:1])
    Run(root / "trained-only").save_config(config)
    with pytest.raises(BlendError, match="predict --run trained-only"):
        blend(config, competition, [runs[0], Run(root / "trained-only")])
    fewer = predicted_run(root / "fewer", np.full(300, 0.5), labels[:300], np.full(50, 0.5))
    with pytest.raises(BlendError, match="other images"):
        blend(config, competition, [runs[0], fewer])
    other = predicted_run(
        root / "other", np.full(400, 0.5), labels, np.full(50, 0.5), competition="dogs-vs-cats"
    )
    with pytest.raises(BlendError, match="of dogs-vs-cats"):
        blend(config, competition, [runs[0], other])


def test_pseudo_labels_are_the_confident_test_images_of_a_predicted_run(tmp_path: Path) -> None:
    from pipeline import layout
    from pipeline.config import ConfigError
    from pipeline.fit.pseudo import pseudo_labels, with_pseudo_labels

    test = pd.DataFrame(
        {"id": ["1", "2", "3", "4"], "path": ["a", "b", "c", "d"], "width": [9] * 4, "height": [9] * 4}
    )
    values = {"competition": SLUG, "paths.runs_root": str(tmp_path / "runs"), "train.pseudo_label": "teacher"}
    config = load_config(
        overrides={**values, "train.pseudo_threshold": 0.9, "train.pseudo_weight": 0.5}, environ={}
    )
    with pytest.raises(ConfigError, match="predict --run teacher"):
        pseudo_labels(config, test, 2)
    Run(tmp_path / "runs" / SLUG / "teacher").write_test_predictions(
        pd.DataFrame({"id": ["1", "2", "3", "4"], "probability": [0.97, 0.5, 0.02, 0.89]})
    )
    chosen = pseudo_labels(config, test, 2)
    assert chosen["id"].tolist() == ["test:1", "test:3"] and chosen["label"].tolist() == [1, 0]
    assert chosen["weight"].tolist() == [0.5, 0.5]
    train = pd.DataFrame({"id": ["cat.1"], "path": ["x"], "label": [0], "width": [9], "height": [9]})
    assert with_pseudo_labels(train, chosen)["id"].tolist() == ["cat.1", "test:1", "test:3"]
    assert layout.run_name(config).endswith("-pseudo")  # never the run trained without them


def test_pseudo_labels_of_another_competition_class_set_or_test_set_are_refused(tmp_path: Path) -> None:
    from pipeline.config import ConfigError
    from pipeline.fit.pseudo import pseudo_labels

    test = pd.DataFrame({"id": ["1", "2"], "path": ["a", "b"], "width": [9] * 2, "height": [9] * 2})
    values = {"competition": SLUG, "paths.runs_root": str(tmp_path / "runs"), "train.pseudo_label": "teacher"}
    config = load_config(overrides=values, environ={})
    teacher = Run(tmp_path / "runs" / SLUG / "teacher")
    four = pd.DataFrame({"id": ["1", "2"], "p0": [1.0, 0], "p1": [0, 1.0], "p2": [0.0, 0], "p3": [0.0, 0]})
    teacher.write_test_predictions(four)  # a 4-class run's predictions copied over
    with pytest.raises(ConfigError, match="4 classes"):
        pseudo_labels(config, test, 2)
    teacher.write_test_predictions(pd.DataFrame({"id": ["1", "3"], "probability": [0.99, 0.01]}))
    with pytest.raises(ConfigError, match="test ids"):
        pseudo_labels(config, test, 2)
    teacher.write_test_predictions(pd.DataFrame({"id": ["1", "2"], "probability": [0.99, 0.01]}))
    load_config(overrides={"competition": "shapes-demo"}, environ={}).save(teacher.path)
    with pytest.raises(ConfigError, match="shapes-demo"):
        pseudo_labels(config, test, 2)


def test_a_run_named_twice_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    two_runs(tmp_path)
    config = load_config(
        overrides={"competition": SLUG, "paths.runs_root": str(tmp_path / "runs")}, environ={}
    )
    folder = tmp_path / "runs" / SLUG / "good"
    monkeypatch.chdir(folder.parent)
    for names in (["good", "good"], ["good", "./good"], ["good", str(folder)]):
        with pytest.raises(BlendError, match="twice"):
            find_runs(config, names)


def test_a_blend_no_better_than_its_best_run_keeps_that_run(tmp_path: Path, capsys) -> None:
    runs, labels = two_runs(tmp_path)
    good = runs[0].read_final_oof()["probability"].to_numpy()
    test = runs[0].read_test_predictions()["probability"].to_numpy()
    predicted_run(tmp_path / "runs" / SLUG / "copy", good, labels, test)  # nothing to add to "good"
    config = load_config(
        overrides={"competition": SLUG, "paths.runs_root": str(tmp_path / "runs")}, environ={}
    )
    result = blend(config, get_competition(SLUG), find_runs(config, ["copy", "good"]))
    assert result.weights == {"copy": 1.0, "good": 0.0}
    clip = result.postprocessing.clip or 0.0
    by_id = result.test.set_index("id")["probability"]
    assert np.allclose(by_id.loc[[str(i) for i in range(len(test))]], np.clip(test, clip, 1 - clip))
    assert "no better than copy alone" in capsys.readouterr().out


def test_blend_without_runs_takes_every_predicted_run_but_blends(tmp_path: Path, capsys) -> None:
    from pipeline import flow
    from pipeline.infer.blend import predicted_runs

    two_runs(tmp_path)
    config = load_config(
        overrides={"competition": SLUG, "paths.runs_root": str(tmp_path / "runs")}, environ={}
    )
    (tmp_path / "runs" / SLUG / "trained-only").mkdir()
    assert predicted_runs(config) == ["good", "noise"]
    result = blend(config, get_competition(SLUG), find_runs(config, predicted_runs(config)))
    assert predicted_runs(config) == ["good", "noise"]  # the blend itself is no member of the next one
    assert result.run.name == "blend-good+noise"
    empty = load_config(
        overrides={"competition": SLUG, "paths.runs_root": str(tmp_path / "none")}, environ={}
    )
    with pytest.raises(BlendError, match="two predicted runs"):
        flow.blend(empty, [])
