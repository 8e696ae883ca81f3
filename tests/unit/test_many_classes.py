"""More than two classes: scores, averaging, temperature, submission formats, classes read from the
data, the sandbox's scoring and the report's tables. Pure functions, small arrays and files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score, log_loss

from pipeline.acquire.classes import resolve_classes
from pipeline.acquire.index import build_index
from pipeline.acquire.unpack import CompetitionFiles, MissingDataError, unpack_competition
from pipeline.competitions import get_competition
from pipeline.demo.generate import generate_competition
from pipeline.demo.sandbox import score_submission
from pipeline.fit.metrics import as_columns, from_columns, multiclass_scores, scores
from pipeline.infer.ensembles.weighted import METHOD as WEIGHTED
from pipeline.infer.postprocess import (
    average,
    choose_space,
    choose_temperature,
    post_process,
    with_temperature,
)
from pipeline.metrics import METRICS
from pipeline.report.classes import per_class_table, predictions_table, top_confusions
from pipeline.submit.submission_file import SubmissionError, build_submission, prior, validate_submission

SHAPES = get_competition("shapes-demo")  # triangle, disc, square, cross; one probability column each
RNG = np.random.default_rng(0)


def _softmax_rows(n: int, k: int, labels: np.ndarray, strength: float) -> np.ndarray:
    logits = RNG.normal(size=(n, k))
    logits[np.arange(n), labels] += strength
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def test_multiclass_scores_agree_with_scikit_learn() -> None:
    labels = np.arange(200) % 4
    p = _softmax_rows(200, 4, labels, 2.0)
    found = multiclass_scores(labels, p)
    assert found["log_loss"] == pytest.approx(log_loss(labels, p))
    assert found["accuracy"] == pytest.approx(accuracy_score(labels, p.argmax(1)))
    assert found["f1_macro"] == pytest.approx(f1_score(labels, p.argmax(1), average="macro"))
    assert 0.5 < found["roc_auc"] <= 1 and -1 <= found["qwk"] <= 1
    binary = {name for name, metric in METRICS.items() if metric.binary}
    assert set(scores(labels % 2, p[:, 1])) == binary and {"log_loss", "accuracy", "roc_auc"} <= binary


def test_prediction_tables_round_trip_for_two_and_many_classes() -> None:
    p = _softmax_rows(5, 3, np.zeros(5, int), 1.0)
    np.testing.assert_allclose(from_columns(pd.DataFrame(as_columns(p))), p)
    assert list(as_columns(p[:, 0])) == ["probability"]


def test_logit_averaging_of_many_classes_is_a_normalised_geometric_mean() -> None:
    members = np.array([[[0.7, 0.2, 0.1]], [[0.1, 0.6, 0.3]]])
    geometric = np.sqrt(members[0] * members[1])
    np.testing.assert_allclose(average(members, "logit"), geometric / geometric.sum(), rtol=1e-6)
    labels = np.arange(300) % 3
    views = np.stack([_softmax_rows(300, 3, labels, 2.0) for _ in range(2)])
    assert choose_space(views, labels)[0] in ("probability", "logit")


def test_temperature_softens_an_overconfident_model_and_keeps_its_choices() -> None:
    labels = np.arange(400) % 5
    overconfident = _softmax_rows(400, 5, labels, 1.0) ** 4
    overconfident /= overconfident.sum(axis=1, keepdims=True)
    t, loss = choose_temperature(overconfident, labels)
    assert t > 1.5 and loss < log_loss(labels, overconfident) - 0.05
    np.testing.assert_array_equal(with_temperature(overconfident, t).argmax(1), overconfident.argmax(1))
    chosen, columns = post_process(
        "class_probabilities",
        overconfident,
        labels,
        overconfident[:7],
        views=["original"],
        average="probability",
        folds=5,
        metric="log_loss",
    )
    assert chosen.temperature == t and chosen.cv_score("log_loss") == pytest.approx(loss)
    assert list(columns) == ["p0", "p1", "p2", "p3", "p4", "label"]
    np.testing.assert_allclose(sum(columns[f"p{k}"] for k in range(5)), 1.0)


def _predictions(ids: list[str], p: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"id": ids, **as_columns(p), "label": p.argmax(1)})


def test_one_probability_column_per_class_in_the_sample_order() -> None:
    sample = pd.DataFrame(
        {"id": ["a", "b", "c"], "cross": 0.25, "disc": 0.25, "triangle": 0.25, "square": 0.25}
    )
    p = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.7]])  # triangle, cross
    table, missing = build_submission(
        SHAPES, _predictions(["a", "b"], p), sample, prior(np.array([0, 0, 1, 2]), 4)
    )
    assert list(table.columns) == list(sample.columns) and missing == ["c"]
    assert table.loc[0, "triangle"] == 0.7 and table.loc[1, "cross"] == 0.7
    assert table.loc[2, "triangle"] == 0.5 and table.loc[2, "cross"] == 0.0  # the prior of the classes
    validate_submission(table, sample, SHAPES)
    off = table.assign(disc=table["disc"] + 0.2)
    with pytest.raises(SubmissionError, match="do not sum to 1"):
        validate_submission(off, sample, SHAPES)
    with pytest.raises(SubmissionError, match="outside"):
        validate_submission(
            table.assign(disc=-0.1, triangle=table["triangle"] + 0.1 + table["disc"]), sample, SHAPES
        )
    with pytest.raises(SubmissionError, match="header"):
        validate_submission(table.drop(columns="cross"), sample, SHAPES)


def test_hard_labels_as_class_names_or_indices() -> None:
    names = dataclasses.replace(SHAPES, submission_kind="class_name", label_column="shape", metric="accuracy")
    sample = pd.DataFrame({"id": ["a", "b"], "shape": "triangle"})
    p = np.array([[0.1, 0.1, 0.7, 0.1], [0.1, 0.6, 0.2, 0.1]])
    table, _ = build_submission(names, _predictions(["a", "b"], p), sample, prior(np.array([1]), 4))
    assert table["shape"].tolist() == ["square", "disc"]
    validate_submission(table, sample, names)
    with pytest.raises(SubmissionError, match="no class"):
        validate_submission(table.assign(shape=["square", "hexagon"]), sample, names)
    digits = get_competition("digits-demo").with_classes(tuple(str(d) for d in range(10)))
    sample = pd.DataFrame({"id": ["a", "b"], "label": 0})
    table, _ = build_submission(
        digits, _predictions(["a", "b"], _softmax_rows(2, 10, np.array([7, 3]), 9.0)), sample, 0.1
    )
    assert table["label"].tolist() == [7, 3]
    with pytest.raises(SubmissionError, match="allowed"):
        validate_submission(table.assign(label=[7, 10]), sample, digits)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"submission_kind": "probability"}, "probability is for two"),
        ({"classes": ("a", "b"), "metric": "f1_macro"}, "more than two classes"),
        ({"classes": ("a", "a", "b")}, "each once"),
        ({"submission_kind": "csv"}, "submission_kind is 'csv'"),
    ],
)
def test_tables_that_cannot_score_their_classes_are_refused(change: dict, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        dataclasses.replace(SHAPES, **change)


def _files(tmp_path: Path, labels: str, sample_header: str) -> CompetitionFiles:
    (tmp_path / "train").mkdir(exist_ok=True)
    (tmp_path / "labels.csv").write_text(labels)
    (tmp_path / "sample.csv").write_text(sample_header + "\n")
    return CompetitionFiles(
        tmp_path / "train", tmp_path / "test", tmp_path / "sample.csv", tmp_path / "labels.csv"
    )


def test_classes_are_read_from_the_labels_in_numeric_order(tmp_path: Path) -> None:
    digits = get_competition("digits-demo")
    assert digits.classes == ()
    files = _files(tmp_path, "id,digit\na,10\nb,2\nc,0\nd,2\n", "id,label")
    assert resolve_classes(digits, files).classes == ("0", "2", "10")
    twice = _files(tmp_path, "id,digit\na,1\na,2\nb,3\nb,3\nc,4\n", "id,label")  # a: two labels
    assert resolve_classes(digits, twice).classes == ("3", "4")
    with pytest.raises(MissingDataError, match="two or more"):
        resolve_classes(digits, _files(tmp_path, "id,digit\na,1\nb,1\n", "id,label"))


def test_per_class_columns_must_match_the_training_classes(tmp_path: Path) -> None:
    inferred = dataclasses.replace(SHAPES, classes=())
    files = _files(tmp_path, "id,shape\na,disc\nb,cross\n", "id,cross,disc")
    assert resolve_classes(inferred, files).classes == ("cross", "disc")  # the sample's order
    with pytest.raises(MissingDataError, match="have no column"):
        resolve_classes(inferred, _files(tmp_path, "id,shape\na,disc\nb,cross\nc,star\n", "id,cross,disc"))
    with pytest.raises(MissingDataError, match="match none"):
        resolve_classes(inferred, _files(tmp_path, "id,shape\na,disc\nb,cross\n", "id,Disc,Cross"))
    with pytest.raises(MissingDataError, match="no training image"):
        resolve_classes(inferred, _files(tmp_path, "id,shape\na,disc\nb,cross\n", "id,cross,disc,star"))


def test_an_empty_class_folder_is_named_and_is_no_class(tmp_path: Path, capsys) -> None:
    folders = dataclasses.replace(
        SHAPES, labels="folders", classes=(), labels_csv="", submission_kind="class_name", metric="accuracy"
    )
    for name, count in (("disc", 2), ("square", 0), ("cross", 1)):
        (tmp_path / "train" / name).mkdir(parents=True)
        for i in range(count):
            (tmp_path / "train" / name / f"{i}.png").write_bytes(b"x")
    files = CompetitionFiles(tmp_path / "train", tmp_path / "test", tmp_path / "sample.csv")
    assert resolve_classes(folders, files).classes == ("cross", "disc")
    assert "1 empty class folder(s) (square)" in capsys.readouterr().out


def test_an_id_with_two_labels_is_set_aside_and_the_rest_indexed(tmp_path: Path, capsys) -> None:
    served = tmp_path / "served"
    generate_competition(SHAPES, served, train_per_class=2, test_size=2, broken=False)
    files = unpack_competition(SHAPES, served, tmp_path / "data")
    labels = pd.read_csv(files.labels, dtype=str)
    clash = labels.iloc[0]["id"]
    doubled = pd.concat([labels, labels.iloc[[0]].assign(shape="cross"), labels.iloc[[1]]])
    doubled.to_csv(files.labels, index=False)
    index = build_index(SHAPES, files, tmp_path / "converted", workers=1)
    assert len(index.train) == 7 and clash not in set(index.train["id"])
    assert index.rejects["reason"].tolist() == [
        f"train.csv gives it 2 labels: cross, {labels.iloc[0]['shape']}"
    ]
    out = capsys.readouterr().out
    assert "gives 1 id(s) different labels" in out and "repeats 1 row(s)" in out


def test_the_sandbox_scores_many_classes_in_each_format(tmp_path: Path) -> None:
    solution = tmp_path / "solution.csv"
    pd.DataFrame({"id": ["a", "b", "c", "d"], "label": [0, 1, 2, 3]}).to_csv(solution, index=False)
    perfect = pd.DataFrame({"id": ["d", "c", "b", "a"], **{c: 0.0 for c in SHAPES.classes}})
    for row, name in zip(range(4), ("cross", "square", "disc", "triangle"), strict=True):
        perfect.loc[row, name] = 1.0
    public, private = score_submission("shapes-demo", perfect.to_csv(index=False).encode(), solution)
    assert public < 1e-6 and private < 1e-6
    with pytest.raises(ValueError, match="expected columns"):
        score_submission("shapes-demo", perfect.drop(columns="disc").to_csv(index=False).encode(), solution)
    digits = pd.DataFrame({"id": ["a", "b", "c", "d"], "label": [0, 1, 2, 0]}).to_csv(index=False).encode()
    assert sorted(score_submission("digits-demo", digits, solution)) == [0.5, 1.0]


def test_blend_weights_prefer_the_better_run_of_many_classes() -> None:
    labels = np.arange(300) % 3
    good, noise = _softmax_rows(300, 3, labels, 3.0), _softmax_rows(300, 3, labels, 0.0)
    weights = WEIGHTED.fit(np.stack([noise, good]), labels, METRICS["log_loss"])
    assert weights[1] > 0.8 and weights.sum() == pytest.approx(1)


def test_report_tables_name_the_worst_classes_and_confusions() -> None:
    labels = np.array([0] * 10 + [1] * 10 + [2] * 10)
    predicted = labels.copy()
    predicted[10:16] = 2  # six discs taken for squares
    predicted[0] = 1
    confusions = top_confusions(labels, predicted, ("triangle", "disc", "square"))
    assert confusions.iloc[0][["true", "predicted", "images"]].tolist() == ["disc", "square", 6]
    assert confusions.iloc[0]["share of the true class"] == pytest.approx(0.6) and len(confusions) == 2
    table = per_class_table(labels, predicted, ("triangle", "disc", "square"))
    assert table.iloc[0]["class"] == "disc" and table.iloc[0]["recall"] == pytest.approx(0.4)
    p = np.eye(3)[predicted] * 0.8 + 0.2 / 3
    rows = predictions_table(pd.DataFrame({"id": range(30), "label": labels, **as_columns(p)}))
    assert rows["wrong"].sum() == 7 and rows["p_predicted"].max() == pytest.approx(0.8 + 0.2 / 3)


def test_two_classes_in_two_probability_columns() -> None:
    pair = dataclasses.replace(SHAPES, classes=("no", "yes"))
    sample = pd.DataFrame({"id": ["a", "b"], "yes": 0.5, "no": 0.5})
    predictions = pd.DataFrame({"id": ["a", "b"], "probability": [0.9, 0.2], "label": [1, 0]})
    table, _ = build_submission(pair, predictions, sample, 0.5)
    assert table["yes"].tolist() == [0.9, 0.2] and table["no"].tolist() == pytest.approx([0.1, 0.8])
    validate_submission(table, sample, pair)
    labels = np.array([1, 0] * 50)
    chosen, columns = post_process(
        "class_probabilities",
        np.where(labels == 1, 0.8, 0.3),
        labels,
        np.array([0.7]),
        views=[],
        average="probability",
        folds=2,
        metric="log_loss",
    )
    assert chosen.clip is not None and list(columns) == ["probability"]
