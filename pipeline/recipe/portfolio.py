"""The auto recipe (`train`, recipe auto): a portfolio of members chosen on this data's
out-of-fold predictions within a time budget, as the best Kaggle practice does.

    plan = make_plan(...)          # members, estimated from this machine's measured throughput
    fit_stack(...)                 # a. stacked frozen features, the sizes the OOF score keeps
    train_kfold(...); predict_run  # b. two-phase fine-tuned folds, epochs by early stopping
    fit_stack(... pseudo-labels)   # c. the stack again with the ensemble's confident test images
    choose_members(...); blend     # d. members kept when the nested OOF estimate improves, weighted on OOF

Every member is a run folder inside the portfolio's (runs/<slug>/auto-<backbone>-<size>px/<member>/);
the portfolio's own folder holds the ensemble's predictions and its record (the plan, every
member's OOF score, time and weight). A member that does not fit the time left is not started; an
interrupted `train` starts again at the first member without predictions (the features, folds and
TTA predictions finished before are reused).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline import layout
from pipeline.acquire.index import ImageIndex
from pipeline.competitions import Competition
from pipeline.config import Config, ConfigError, apply_settings, sizes_for, stack_backbones
from pipeline.fit.cross_validation import train_kfold
from pipeline.fit.metrics import from_columns
from pipeline.fit.splits import kfold_assignment
from pipeline.fit.train import train_run
from pipeline.infer.blend import blend, load_members
from pipeline.infer.ensembles import get_method
from pipeline.infer.nested import clearly_lower, nested_predictions, nested_score, per_image_log_loss
from pipeline.infer.predict import predict_run
from pipeline.infer.stack import (
    Block,
    block_config,
    block_weights,
    check_weights,
    extractor,
    fit_stack,
    selection_metric,
)
from pipeline.infer.tta import parse_views
from pipeline.model.backbones import WeightsError
from pipeline.recipe import plan
from pipeline.recipe.throughput import TRAIN_COST, images_per_second
from pipeline.registry import get_backbone
from pipeline.run import Run

# The fine-tuned member's head trains on features computed once: cheap epochs, early stopping ends it.
AUTO_HEAD_EPOCHS = 20


def portfolio_name(config: Config) -> str:
    """auto-<backbone>-<size>px unless train.run_name names the portfolio."""
    return config.train.run_name or f"auto-{config.model.backbone}-{config.data.image_size}px"


def member_config(config: Config, portfolio: str, member: str, **values: object) -> Config:
    """The configuration of one member, its run folder inside the portfolio's."""
    settings = {"train.run_name": f"{portfolio}/{member}", "train.pseudo_label": "", **values}
    return apply_settings(config, settings, "the auto recipe")


def usable_backbones(config: Config) -> list[str]:
    """The stack's backbones whose weights load here; one left out is named in one line (the run
    goes on with the others), unless none is left."""
    names, usable = stack_backbones(config), []
    for name in names:
        try:
            check_weights(apply_settings(config, {"stack.backbones": name}, "the auto recipe"))
            usable.append(name)
        except (WeightsError, OSError, ValueError) as error:
            if len(names) == 1:
                raise
            print(f"left out of the portfolio: {name} ({str(error).splitlines()[0]})")
    if not usable:
        raise WeightsError(f"no backbone of {', '.join(names)} has weights here: see the lines above")
    return usable


@dataclass
class Record:
    """The portfolio's record (Run.write_portfolio): the plan and what each member did."""

    run: Run
    data: dict

    def member(self, name: str) -> dict | None:
        return next((m for m in self.data["members"] if m["name"] == name), None)

    def done(self, name: str, folder: Run) -> bool:
        found = self.member(name)
        return found is not None and found.get("status") == "done" and folder.has_predictions

    def save_member(self, name: str, **values: object) -> None:
        members = [m for m in self.data["members"] if m["name"] != name]
        self.data["members"] = [*members, {"name": name, **(self.member(name) or {}), **values}]
        self.data["members"].sort(key=lambda m: self.data["order"].index(m["name"]))
        self.run.path.mkdir(parents=True, exist_ok=True)
        self.run.write_portfolio(self.data)


def measured_rates(config: Config, backbones: list[str], index: ImageIndex) -> dict[tuple[str, int], float]:
    """Images per second of every stack block and of the fine-tuned backbone at data.image_size."""
    wanted = [Block(b, s) for b in backbones for s in sizes_for(config, get_backbone(b))]
    wanted.append(Block(config.model.backbone, config.data.image_size))
    rates = {}
    for block in dict.fromkeys(wanted):
        settings = block_config(config, block)
        weights = block_weights(config, block.backbone)
        rates[(block.backbone, block.size)] = images_per_second(
            settings, block.backbone, weights, index.train, extractor
        )
    return rates


def make_plan(config: Config, index: ImageIndex, backbones: list[str], rates: dict) -> list[plan.Step]:
    """The members with their estimated seconds, in the order they run."""
    train, test = len(index.train), len(index.test)
    views = len(parse_views(config.stack.views))
    stack_rates = [rates[(b, size)] for b in backbones for size in sizes_for(config, get_backbone(b))]
    blocks = sum(len(sizes_for(config, get_backbone(b))) for b in backbones)
    sizes = ",".join(str(s) for s in sizes_for(config, get_backbone(backbones[0])))
    rate = rates[(config.model.backbone, config.data.image_size)]
    kept = "chosen on OOF" if config.stack.sizes.strip() == "auto" else "as given"
    return [
        plan.Step(
            plan.STACK,
            f"frozen {'+'.join(backbones)} features at {sizes} px ({views} view(s)), sizes {kept}, "
            f"a logistic regression per fold",
            plan.stack_estimate(train + test, train, views, stack_rates, blocks),
        ),
        plan.Step(
            plan.FINETUNE,
            f"two-phase {config.model.backbone} at {config.data.image_size} px, {config.train.folds} folds "
            f"(head on features up to {max(config.train.head_epochs, AUTO_HEAD_EPOCHS)} epochs, "
            f"{config.train.fine_epochs} fine epochs; early stopping; stopped after fold 1 unless it clearly "
            "improves the stack), test by the fold models with TTA",
            plan.finetune_estimate(config, train, test, rate, rate / TRAIN_COST),
        ),
        plan.Step(
            plan.PSEUDO,
            f"the stack with the ensemble's test images of confidence >= {config.train.pseudo_threshold} "
            "as pseudo-labels; kept when the OOF says they help",
            plan.pseudo_estimate(train, test),
        ),
    ]


def choose_members(
    config: Config, competition: Competition, index: ImageIndex, runs: list[Run]
) -> tuple[list[int], list[float], list[float]]:
    """Forward selection of members on the nested estimate (`selection_metric`): the best member
    alone, then each other (best first) when the ensemble's nested OOF score improves with it.
    Returns the kept positions, each member's OOF score alone, and the nested score of the
    ensemble with each member as it was tried (the first: its score alone)."""
    metric = selection_metric(competition)
    if len(runs) == 1:
        oof = runs[0].read_final_oof()
        alone = metric.of_probabilities(oof["label"].to_numpy(), from_columns(oof))
        return [0], [alone], [alone]
    members = load_members(config, runs)
    labels = members[0].oof["label"].to_numpy()
    oof = np.stack([from_columns(m.oof) for m in members])
    ids = index.train["id"].astype(str)
    assignment = dict(zip(ids, kfold_assignment(config, index).to_numpy(), strict=True))
    folds = np.array([assignment[str(i)] for i in members[0].oof["id"]])
    method = get_method(ensemble_method(config, competition))
    alone = [metric.of_probabilities(labels, p) for p in oof]
    order = sorted(range(len(runs)), key=lambda m: -alone[m] if metric.higher_is_better else alone[m])
    kept, best, tried = [order[0]], alone[order[0]], [float("nan")] * len(runs)
    tried[order[0]] = best
    for m in order[1:]:
        tried[m] = nested_score(method, oof[[*kept, m]], labels, folds, metric)
        if metric.better(tried[m], best):
            kept.append(m)
            best = tried[m]
    return sorted(kept), alone, tried


def finetune_helps(
    config: Config, competition: Competition, index: ImageIndex, stack: Run, folder: Run
) -> tuple[bool, float, float]:
    """Successive halving's first rung: train the fine-tuned member's first fold only and ask
    whether its validation predictions improve the stack's OOF predictions of the same images
    (a nested estimate over two random halves of them; on log loss, by more than one standard
    error of the per-image difference). Returns (helps, the stack's score there, the nested score
    of both)."""
    folds = kfold_assignment(config, index).to_numpy()
    first = train_run(config, competition, index.train[folds != 0], index.train[folds == 0], folder.fold(0))
    validation = first.read_validation()
    ids = validation["id"].astype(str)
    stack_oof = stack.read_final_oof()
    stacked = from_columns(stack_oof.set_index(stack_oof["id"].astype(str)).loc[ids])
    labels = validation["label"].to_numpy(dtype=int)
    oof = np.stack([stacked, from_columns(validation)])
    halves = np.random.default_rng(config.data.seed).permutation(len(labels)) % 2
    metric = selection_metric(competition)
    method = get_method(ensemble_method(config, competition))
    combined = nested_predictions(method, oof, labels, halves, metric)
    alone, both = metric.of_probabilities(labels, stacked), metric.of_probabilities(labels, combined)
    if metric.name == "log_loss":  # a gain above the noise of one fold's images, not any gain
        helps = clearly_lower(per_image_log_loss(labels, stacked), per_image_log_loss(labels, combined))
    else:
        helps = metric.better(both, alone)
    return helps, alone, both


def changed_settings(saved: dict, config: Config) -> list[str]:
    """The settings that make a portfolio another one (paths, budget and run name aside), as
    'key: saved -> now'."""
    ignored = {"paths", "kernel", "tune", "predict"}
    loose = {"train.time_budget", "train.run_name", "data.cache", "data.validation_workers"}
    now, changes = config.to_dict(), []
    for section, values in now.items():
        if section in ignored or not isinstance(values, dict):
            continue
        for key, value in values.items():
            name = f"{section}.{key}"
            before = saved.get(section, {}).get(key, value)
            if name not in loose and before != value:
                changes.append(f"{name}: {before!r} -> {value!r}")
    return changes


def ensemble_method(config: Config, competition: Competition) -> str:
    """blend.method, or for auto the metric's own; a metric of labels (accuracy, F1) weighs the
    members on log loss (a proper score: weights that calibrate), its threshold chosen after."""
    if config.blend.method != "auto":
        return config.blend.method
    metric = competition.metric_entry
    return metric.ensemble if metric.scores == "probabilities" else "weighted"


def _copy_predictions(source: Run, target: Run) -> None:
    """A portfolio of one member: its predictions are the portfolio's."""
    target.write_final_oof(source.read_final_oof())
    target.write_test_predictions(source.read_test_predictions())
    target.write_postprocessing(source.read_postprocessing())


def run_portfolio(config: Config, competition: Competition, index: ImageIndex) -> Run:
    """Plan, train every member that fits the budget, ensemble what the nested OOF estimate keeps;
    return the portfolio's run (`predict` submits its ensemble)."""
    started = time.monotonic()
    name = portfolio_name(config)
    run = Run(portfolio_dir(config))
    seconds = plan.budget(config)
    backbones = usable_backbones(config)
    rates = measured_rates(config, backbones, index)
    steps = make_plan(config, index, backbones, rates)
    shown = {f"{b} {s}px": r for (b, s), r in rates.items()}
    print(plan.describe(steps, seconds, shown), flush=True)
    if steps[0].estimate > seconds:
        raise ConfigError(
            f"train.time_budget = {seconds:.0f} s is shorter than the plan's shortest member (stack, "
            f"~{steps[0].estimate:.0f} s): give --time-budget {int(steps[0].estimate * 1.5) + 1} or more"
        )
    if run.config_path.is_file() and (changes := changed_settings(run.read_config(), config)):
        raise ConfigError(
            f"{run.path} holds a portfolio trained with other settings ({'; '.join(changes[:4])}): name "
            "another with --run-name, or delete that folder to train this one there"
        )
    run.path.mkdir(parents=True, exist_ok=True)
    run.save_config(config)
    record = Record(run, run.read_portfolio() or {})
    record.data = {
        "recipe": "auto",
        "budget_seconds": seconds,
        "plan": [vars(step) for step in steps],
        "order": [step.name for step in steps],
        "members": [m for m in record.data.get("members", []) if m.get("status") == "done"],
        "stack_blocks": record.data.get("stack_blocks", []),
    }
    configs = {
        plan.STACK: member_config(config, name, plan.STACK, **{"stack.backbones": ",".join(backbones)}),
        plan.FINETUNE: member_config(
            config,
            name,
            plan.FINETUNE,
            **{
                "train.refit": 0,
                "train.head_cache_features": True,
                "train.head_epochs": max(config.train.head_epochs, AUTO_HEAD_EPOCHS),
                "predict.ensemble": "folds",
            },
        ),
    }
    folders = {
        key: Run(layout.competition_runs(config) / f"{name}/{key}")
        for key in (plan.STACK, plan.FINETUNE, plan.PSEUDO)
    }
    finished: list[str] = []

    def left() -> float:
        return seconds - (time.monotonic() - started)

    for step in steps:
        folder = folders[step.name]
        if record.done(step.name, folder):
            print(f"member {step.name}: finished before ({folder.path}); reused")
            finished.append(step.name)
            continue
        if step.name != plan.STACK and step.estimate > left():
            print(
                f"member {step.name}: not started (~{step.estimate:.0f} s, {max(left(), 0):.0f} s of the budget left)"
            )
            record.save_member(step.name, status="not started", estimate=round(step.estimate))
            continue
        print(f"=== Member {step.name} (~{step.estimate:.0f} s) ===", flush=True)
        begun = time.monotonic()
        if step.name == plan.STACK:
            kept = fit_stack(configs[plan.STACK], competition, index).blocks
            record.data["stack_blocks"] = [[block.backbone, block.size] for block in kept]
        elif step.name == plan.FINETUNE:
            settings = apply_settings(
                configs[plan.FINETUNE], {"train.time_budget": max(left(), 1.0)}, "time left"
            )
            helps, alone, both = finetune_helps(settings, competition, index, folders[plan.STACK], folder)
            shown = f"{selection_metric(competition).name} on fold 1's images: stack {alone:.4f}, with it {both:.4f} (nested)"
            if not helps:
                print(
                    f"member finetune: stopped after fold 1, it does not clearly improve the stack ({shown})"
                )
                record.save_member(
                    step.name,
                    status="stopped after fold 1",
                    seconds=round(time.monotonic() - begun, 1),
                    estimate=round(step.estimate),
                )
                continue
            print(f"member finetune: fold 1 improves the stack ({shown}); training the other folds")
            trained = train_kfold(settings, competition, index)
            if len(trained.members()) < config.train.folds:
                print(
                    f"member finetune: {len(trained.members())} of {config.train.folds} folds in the budget; left out of the ensemble"
                )
                record.save_member(step.name, status="incomplete", seconds=round(time.monotonic() - begun))
                continue
            predict_run(settings, competition, index, trained)
        else:
            source = pseudo_source(config, competition, name, [folders[n] for n in finished])
            blocks = record.data.get("stack_blocks") or [
                [b, s] for b in backbones for s in sizes_for(config, get_backbone(b))
            ]
            settings = {  # the blocks the stack kept: no selection again
                "stack.backbones": ",".join(dict.fromkeys(b for b, _ in blocks)),
                "stack.sizes": ",".join(str(s) for s in sorted({s for _, s in blocks})),
                "train.pseudo_label": source,
            }
            fit_stack(member_config(config, name, plan.PSEUDO, **settings), competition, index)
        took = time.monotonic() - begun
        score = folder.cv_score(competition.metric)
        print(
            f"member {step.name}: OOF {competition.metric} {score:.4f} in {took:.0f} s (estimated {step.estimate:.0f} s)"
        )
        record.save_member(
            step.name, status="done", seconds=round(took, 1), estimate=round(step.estimate), oof=score
        )
        finished.append(step.name)
    return ensemble(config, competition, index, run, record, [folders[n] for n in finished], started)


def pseudo_source(config: Config, competition: Competition, name: str, runs: list[Run]) -> str:
    """The run whose test predictions pseudo-label: the ensemble of the members so far (saved in
    the portfolio as ensemble-so-far), or the one member."""
    if len(runs) == 1:
        return f"{name}/{runs[0].name}"
    settings = apply_settings(
        config,
        {"train.run_name": f"{name}/ensemble-so-far", "blend.method": ensemble_method(config, competition)},
        "the auto recipe",
    )
    blend(settings, competition, runs)
    return f"{name}/ensemble-so-far"


def ensemble(
    config: Config,
    competition: Competition,
    index: ImageIndex,
    run: Run,
    record: Record,
    runs: list[Run],
    started: float,
) -> Run:
    """The members the nested estimate keeps, weighted on OOF, as the portfolio's predictions."""
    selection = selection_metric(competition)
    chooser = selection.name
    kept, alone, tried = choose_members(config, competition, index, runs)
    for position, member in enumerate(runs):
        state = "kept" if position in kept else "dropped (the nested estimate did not improve)"
        print(
            f"member {member.name}: OOF {chooser} alone {alone[position]:.4f}, the ensemble with it "
            f"{tried[position]:.4f} (nested): {state}"
        )
    chosen = [runs[k] for k in kept]
    run.save_config(config)
    if len(chosen) == 1:
        _copy_predictions(chosen[0], run)
        weights = {chosen[0].name: 1.0}
    else:
        folder = run.path.relative_to(layout.competition_runs(config)).as_posix()
        settings = {"train.run_name": folder, "blend.method": ensemble_method(config, competition)}
        weights = blend(apply_settings(config, settings, "the auto recipe"), competition, chosen).weights
    metric = competition.metric
    final = run.read_postprocessing().cv_score(metric)
    scored = [tried[k] for k in kept]  # each kept member improved it: the best is the whole ensemble's
    nested = max(scored) if selection.higher_is_better else min(scored)
    for position, member in enumerate(runs):
        record.save_member(
            member.name,
            weight=round(weights.get(member.name, 0.0), 4),
            oof_alone=alone[position],
            nested_with_it=tried[position],
            kept=position in kept,
        )
    record.data.update({
        "metric": metric, "oof": final, "selected_on": chooser, "nested_oof": nested,
        "seconds": round(time.monotonic() - started, 1),
    })  # fmt: skip
    run.write_portfolio(record.data)
    print(
        f"Portfolio {run.name}: {' + '.join(f'{k} x {v:.2f}' for k, v in weights.items() if v)}; OOF {metric} "
        f"{final:.4f} (post-processed, weights fit on it: optimistic); nested {chooser} {nested:.4f}; "
        f"{time.monotonic() - started:.0f} s of the {plan.budget(config):.0f} s budget"
    )
    return run


def portfolio_dir(config: Config) -> Path:
    """runs/<slug>/auto-<backbone>-<size>px/ (or train.run_name)."""
    return layout.competition_runs(config) / portfolio_name(config)
