"""Blending finished runs (k-fold with predict, stack, other blends): an ensemble method
(pipeline.infer.ensembles) fits the members' weights on their out-of-fold predictions for the
competition's metric, then the post-processing is chosen on the blended out-of-fold predictions,
as `predict` does.

No model is loaded: a blend reads each run's saved out-of-fold and test predictions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import layout
from pipeline.competitions import Competition
from pipeline.config import Config, ConfigError
from pipeline.fit.metrics import as_columns, from_columns
from pipeline.infer.ensembles import get_method
from pipeline.infer.postprocess import post_process
from pipeline.run import PostProcessing, Run


class BlendError(ConfigError):
    """Runs that cannot be blended (`--runs`); the message says which and what to run first."""


@dataclass(frozen=True)
class Member:
    """One blended run's out-of-fold and test predictions, aligned by id."""

    run: Run
    oof: pd.DataFrame  # id, label, probability (p0, p1, ... for many classes)
    test: pd.DataFrame  # id, probability (p0, p1, ...)


def find_runs(config: Config, names: list[str]) -> list[Run]:
    """Runs by name under runs/<slug>/ (or by path), each checked to exist."""
    runs = []
    for name in names:
        path = Path(name) if Path(name).is_dir() else layout.competition_runs(config) / name
        if not path.is_dir():
            known = ", ".join(sorted(p.name for p in layout.competition_runs(config).glob("*") if p.is_dir()))
            raise BlendError(
                f"no run {name!r} in {layout.competition_runs(config)} (runs there: {known or 'none'})"
            )
        same = next((run for run in runs if run.path.resolve() == path.resolve()), None)
        if same is not None:
            raise BlendError(f"--runs names {same.name} twice ({name!r}): blend different runs")
        runs.append(Run(path))
    return runs


BLEND_PREFIX = "blend-"  # the default name of a blend's run


def predicted_runs(config: Config) -> list[str]:
    """The competition's runs with out-of-fold and test predictions (predicted k-fold runs,
    stacks), blends left out, oldest first."""
    folder = layout.competition_runs(config)
    found = [
        Run(d)
        for d in (sorted(folder.iterdir()) if folder.is_dir() else [])
        if d.is_dir() and not d.name.startswith(BLEND_PREFIX)
    ]
    return [
        r.name for r in sorted((r for r in found if r.has_predictions), key=lambda r: r.path.stat().st_mtime)
    ]


def load_members(config: Config, runs: list[Run]) -> list[Member]:
    """Each run's predictions; refused in one sentence when a run is of another competition, has
    not been predicted, or its out-of-fold or test ids differ from the first run's."""
    if len(runs) < 2:
        raise BlendError("blend needs two runs at least: --runs A,B")
    members = []
    for run in runs:
        saved = run.read_config().get("competition") if run.config_path.is_file() else None
        if saved not in (None, config.competition):
            raise BlendError(
                f"run {run.name} is of {saved}, not {config.competition}: blend runs of one competition"
            )
        oof, test = run.read_final_oof(), run.read_test_predictions()
        if oof is None or test is None:
            raise BlendError(
                f"run {run.name} has no out-of-fold and test predictions to blend: run "
                f"`predict --run {run.name}` (or `stack`) first"
            )
        members.append(
            Member(run, oof.sort_values("id", ignore_index=True), test.sort_values("id", ignore_index=True))
        )
    first = members[0]
    for member in members[1:]:
        for part in ("oof", "test"):
            mine, theirs = getattr(member, part)["id"], getattr(first, part)["id"]
            if len(mine) != len(theirs) or (mine.to_numpy() != theirs.to_numpy()).any():
                kind = "out-of-fold" if part == "oof" else "test"
                raise BlendError(
                    f"run {member.run.name} has {kind} predictions of other images than {first.run.name} "
                    f"({len(mine):,} against {len(theirs):,}): blend k-fold runs of the same index"
                )
    return members


def _better(first: PostProcessing, second: PostProcessing, competition: Competition) -> bool:
    """True when `first` scores strictly better than `second` on the competition's metric (OOF)."""
    a, b = first.cv_score(competition.metric), second.cv_score(competition.metric)
    return a > b if competition.higher_is_better else a < b


def _best_alone(
    members: list[Member], combined: Callable, competition: Competition
) -> tuple[int, PostProcessing, dict[str, np.ndarray]] | None:
    """The member that scores best alone on OOF (post-processed as the blend is), with its result."""
    best = None
    for k in range(len(members)):
        chosen, columns = combined(np.eye(len(members))[k])
        if best is None or _better(chosen, best[1], competition):
            best = (k, chosen, columns)
    return best


@dataclass(frozen=True)
class BlendResult:
    """A finished blend: its run folder, weights and test predictions."""

    run: Run
    weights: dict[str, float]
    test: pd.DataFrame
    postprocessing: PostProcessing


def blend(config: Config, competition: Competition, runs: list[Run]) -> BlendResult:
    """Blend `runs` with the configured ensemble method (`blend.method`; auto: the competition
    metric's own), its weights fit on their out-of-fold predictions; save the blend as a run."""
    members = load_members(config, runs)
    labels = members[0].oof["label"].to_numpy()
    oof = np.stack([from_columns(m.oof) for m in members])
    test = np.stack([from_columns(m.test) for m in members])
    metric = competition.metric_entry
    method = get_method(metric.ensemble if config.blend.method == "auto" else config.blend.method)
    fitted = method.fit(oof, labels, metric)

    def combined(weights: np.ndarray) -> tuple[PostProcessing, dict[str, np.ndarray]]:
        return post_process(
            competition.submission_kind,
            method.combine(oof, weights),
            labels,
            method.combine(test, weights),
            views=[],
            average="probability",
            folds=0,
            metric=competition.metric,
            models=[f"{m.run.name} x {w:.3f}" for m, w in zip(members, weights, strict=True)],
        )

    chosen, columns = combined(fitted)
    weights, best = fitted, _best_alone(members, combined, competition)
    if best is not None and not _better(chosen, best[1], competition):
        name, (alone, alone_columns) = members[best[0]].run.name, best[1:]
        print(
            f"The blend (CV {competition.metric} {chosen.cv_score(competition.metric):.4f}) is no better than "
            f"{name} alone ({alone.cv_score(competition.metric):.4f}): keeping {name} (weight 1)."
        )
        weights, chosen, columns = np.eye(len(members))[best[0]], alone, alone_columns
    blended_oof = method.combine(oof, weights)
    name = config.train.run_name or BLEND_PREFIX + "+".join(m.run.name for m in members)
    run = Run(layout.competition_runs(config) / name)
    ids = members[0].oof["id"].to_numpy()
    run.save_config(config)
    run.write_final_oof(pd.DataFrame({"id": ids, "label": labels, **as_columns(blended_oof)}))
    frame = pd.DataFrame({"id": members[0].test["id"].to_numpy(), **columns})
    run.write_test_predictions(frame)
    run.write_postprocessing(chosen)
    shares = {m.run.name: float(w) for m, w in zip(members, weights, strict=True)}
    singles = ", ".join(
        f"{m.run.name} {m.run.cv_score(competition.metric) or float('nan'):.4f}" for m in members
    )
    print(
        f"Blend weights ({method.name}, fit on out-of-fold {competition.metric}): "
        + ", ".join(f"{k} {v:.3f}" for k, v in shares.items())
    )
    print(f"CV {competition.metric}: blend {chosen.cv_score(competition.metric):.4f}; runs alone: {singles}")
    return BlendResult(run, shares, frame, chosen)
