"""The auto recipe's plan: its members in order of expected value per second, each with a time
estimated from this machine's measured throughput, against the time budget.

Members, cheapest and strongest first (on real photos the stack reached 0.48-0.61x the
hand-written script's log loss in a fraction of fine-tuning's time, README "Measured quality"):
    stack         frozen features at the candidate sizes, blocks kept on OOF, a linear head per fold
    finetune      two-phase folds of the backbone at data.image_size (head on features computed once)
    stack-pseudo  the stack again, with the confident test images of the ensemble so far
and last the ensemble of what was kept (seconds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pipeline.config import Config

STACK, FINETUNE, PSEUDO = "stack", "finetune", "stack-pseudo"  # the members, each a run folder of that name
LOCAL_BUDGET = 20 * 60.0  # seconds, when train.time_budget is 0 outside a kernel
FURTHER_VIEW = 0.5  # a view after the first reuses the decoded, resized images (the cache): about half a pass
HEAD_SECONDS_PER_IMAGE = 0.002  # the stack's logistic regressions per training image and block set (2 cores)


@dataclass(frozen=True)
class Step:
    """One planned member of the portfolio."""

    name: str  # stack, finetune, stack-pseudo
    what: str  # one line for the plan
    estimate: float  # seconds


def budget(config: Config) -> float:
    """Seconds the auto recipe may work: train.time_budget (a kernel sets its session's), else LOCAL_BUDGET."""
    return config.train.time_budget or LOCAL_BUDGET


def stack_estimate(images: int, train: int, views: int, rates: list[float], candidates: int) -> float:
    """Features of every block (`rates`: images per second of each) for every image and view, then
    the heads (forward selection fits about candidates^2 / 2 sets of heads)."""
    features = sum(images * (1 + FURTHER_VIEW * (views - 1)) / rate for rate in rates)
    heads = HEAD_SECONDS_PER_IMAGE * train * max(1, candidates * (candidates + 1) // 2)
    return features + heads


def finetune_estimate(config: Config, train: int, test: int, rate: float, train_rate: float) -> float:
    """k folds: the head's features once, fine-tuning epochs (forward and backward), validation
    each epoch; then every fold model predicts its validation side and the test set per TTA view."""
    k = config.train.folds
    views = len(config.predict.tta.split(","))
    per_fold_train = train * (k - 1) / k
    per_fold_val = train / k
    fold = (
        train / rate
        + config.train.fine_epochs * per_fold_train / train_rate
        + config.train.fine_epochs * per_fold_val / rate
    )
    predict = views * (train + k * test) / rate
    return k * fold + predict


def pseudo_estimate(train: int, test: int) -> float:
    """The stack's heads once more (the blocks it kept, no selection) on cached features, with the
    pseudo-labelled test images: 2-6 s measured on the real sets here."""
    return HEAD_SECONDS_PER_IMAGE * (train + test)


def describe(steps: list[Step], seconds: float, rates: dict[str, float]) -> str:
    """The plan as printed before any work."""
    shown = ", ".join(f"{k} {v:.0f}/s" for k, v in rates.items())
    lines = [f"Plan of the auto recipe (time budget {seconds:.0f} s; images per second here: {shown}):"]
    total = 0.0
    for number, step in enumerate(steps, 1):
        total += step.estimate
        fits = "" if total <= seconds else "  (past the budget: not started unless time is left)"
        lines.append(f"  {number}. {step.name}: {step.what}; ~{math.ceil(step.estimate)} s{fits}")
    lines.append(
        f"  {len(steps) + 1}. ensemble: the members weighted on OOF, each kept when the nested estimate improves"
    )
    lines.append(f"  ~{math.ceil(total)} s in all")
    return "\n".join(lines)
