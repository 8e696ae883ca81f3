"""`train` with the auto recipe (the default) on the demo: the plan, every member's run, the
ensemble `predict` submits, resuming, and the budget (mechanics with random weights; quality on
real photos in `make bench-quality`)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pipeline import flow, layout
from pipeline.competitions import Competition
from pipeline.config import ConfigError
from pipeline.model.backbones import WeightsError
from pipeline.recipe import plan, portfolio
from pipeline.run import Run
from tests.conftest import tiny_config

AUTO = {
    "train__recipe": "auto",
    "model__backbone": "mobilenet-0.25",
    "model__weights": "none",  # random weights: the mechanics, not the quality
    "stack__sizes": "32,40",
    "train__folds": 3,
    "train__head_epochs": 2,
    "train__fine_epochs": 1,
}


def auto_config(tmp_path: Path, archive: Path, **values: object):
    return tiny_config(
        tmp_path,
        paths__input_root=str(archive.parent),
        paths__submissions_root=str(tmp_path / "submissions"),
        **{**AUTO, **values},
    )


def test_auto_recipe_trains_its_members_and_predict_submits_their_ensemble(
    tmp_path: Path,
    demo: Competition,
    demo_archive_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = auto_config(tmp_path, demo_archive_dir)
    helps = portfolio.finetune_helps
    monkeypatch.setattr(portfolio, "finetune_helps", lambda *args: (True, *helps(*args)[1:]))
    run = flow.train(config)
    out = capsys.readouterr().out
    assert "Plan of the auto recipe" in out and "1. stack" in out and "2. finetune" in out
    assert run.name == "auto-mobilenet-0.25-32px" and run.is_portfolio
    record = run.read_portfolio()
    members = {m["name"]: m for m in record["members"]}
    assert list(members) == ["stack", "finetune", "stack-pseudo"]
    assert all(m["status"] == "done" and m["seconds"] > 0 for m in members.values())
    kept = [m for m in members.values() if m["kept"]]
    assert kept and sum(m["weight"] for m in kept) == pytest.approx(1.0, abs=1e-3)
    assert all(m["weight"] == 0 for m in members.values() if not m["kept"])
    for name in members:  # every member is a run of its own inside the portfolio, with OOF over every image
        oof = Run(run.path / name).read_final_oof()
        assert oof is not None and oof["id"].is_unique and len(oof) == len(run.read_final_oof())

    assert layout.find_run(config) == run  # the newest finished run: predict takes the portfolio
    submission = pd.read_csv(flow.predict(config), dtype=str)
    solution = pd.read_csv(demo_archive_dir / "solution.csv", dtype=str)
    assert sorted(submission["id"]) == sorted(solution["id"])

    page = flow.report(config).read_text()  # the members, and the fine-tuned member's own report linked
    assert all(name in page for name in members) and (run.path / "finetune" / "report.html").is_file()
    assert (
        run.portfolio_line().startswith("portfolio: ") and " x " in run.portfolio_line()
    )  # the ledger's note

    photo = next(p for p in sorted(tmp_path.rglob("*.jpg")) if p.parent.name == demo.test_dir)
    assert len(flow.classify(config, [photo])) == 1  # by the portfolio's fine-tuned member, which has models

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("a finished member was trained again")

    monkeypatch.setattr(portfolio, "fit_stack", no_training)
    monkeypatch.setattr(portfolio, "train_kfold", no_training)
    again = flow.train(config)  # an interrupted or repeated train resumes at the next unfinished member
    assert again.read_portfolio()["oof"] == pytest.approx(record["oof"])
    assert capsys.readouterr().out.count("finished before") == 3


def test_a_member_past_the_budget_is_not_started_and_a_budget_too_short_is_refused(
    tmp_path: Path, demo: Competition, demo_archive_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    short = auto_config(tmp_path / "short", demo_archive_dir, train__time_budget=0.5)
    with pytest.raises(ConfigError, match="time_budget"):
        flow.train(short)
    assert Run(layout.competition_runs(short) / "auto-mobilenet-0.25-32px").read_portfolio() is None

    helps = portfolio.finetune_helps  # successive halving: a member whose first fold adds nothing stops there
    monkeypatch.setattr(portfolio, "finetune_helps", lambda *args: (False, *helps(*args)[1:]))
    config = auto_config(tmp_path / "probe", demo_archive_dir)
    run = flow.train(config)
    status = {m["name"]: m["status"] for m in run.read_portfolio()["members"]}
    assert status == {"stack": "done", "finetune": "stopped after fold 1", "stack-pseudo": "done"}
    assert [m.name for m in Run(run.path / "finetune").members()] == ["fold-0"]
    with pytest.raises(ConfigError, match="other settings"):  # another seed is another portfolio
        flow.train(auto_config(tmp_path / "probe", demo_archive_dir, data__seed=7))

    monkeypatch.setattr(plan, "finetune_estimate", lambda *args: 1e6)
    config = auto_config(tmp_path / "budget", demo_archive_dir, train__time_budget=600)
    record = flow.train(config).read_portfolio()
    status = {m["name"]: m["status"] for m in record["members"]}
    assert status == {"stack": "done", "finetune": "not started", "stack-pseudo": "done"}
    assert not (layout.competition_runs(config) / "auto-mobilenet-0.25-32px" / "finetune").exists()


def test_a_stack_backbone_without_weights_is_left_out_unless_it_is_the_only_one(
    tmp_path: Path,
    demo_archive_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    real_check = portfolio.check_weights

    def missing_for_mobilenet_half(config) -> None:
        if config.stack.backbones == "mobilenet-0.5":
            raise WeightsError("mobilenet-0.5: no weights file here")
        real_check(config)

    monkeypatch.setattr(portfolio, "check_weights", missing_for_mobilenet_half)
    both = auto_config(tmp_path, demo_archive_dir, stack__backbones="mobilenet-0.25,mobilenet-0.5")
    assert portfolio.usable_backbones(both) == ["mobilenet-0.25"]
    assert "left out of the portfolio: mobilenet-0.5" in capsys.readouterr().out
    alone = auto_config(tmp_path, demo_archive_dir, stack__backbones="mobilenet-0.5")
    with pytest.raises(WeightsError):
        portfolio.usable_backbones(alone)
