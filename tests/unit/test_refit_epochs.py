"""Refit models train for the epochs the folds chose: the median of each phase's best epoch."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.fit.refit import best_epochs, chosen_epochs
from pipeline.run import Run


def member(root: Path, name: str, head: list[float], fine: list[float]) -> Run:
    run = Run(root / name)
    run.path.mkdir(parents=True)
    for phase, losses, first in (("head", head, 0), ("fine", fine, len(head))):
        if losses:
            epochs = range(first, first + len(losses))
            pd.DataFrame({"epoch": list(epochs), "val_loss": losses}).to_csv(run.phase_history_path(phase))
    return run


def test_each_phase_counts_the_epochs_to_its_best_validation_loss(tmp_path: Path) -> None:
    assert best_epochs(member(tmp_path, "a", [0.5, 0.3, 0.4], [0.35, 0.2, 0.25])) == {"head": 2, "fine": 2}
    # fine-tuning never beat the head phase: its weights were not kept, so it counts 0 epochs
    assert best_epochs(member(tmp_path, "b", [0.5, 0.2], [0.3, 0.25])) == {"head": 2, "fine": 0}
    assert best_epochs(member(tmp_path, "c", [0.4], [])) == {"head": 1, "fine": 0}


def test_the_median_over_folds_rounds_up_and_keeps_one_head_epoch(tmp_path: Path) -> None:
    folds = [
        member(tmp_path, "f0", [0.5, 0.3, 0.4], [0.2, 0.1, 0.15, 0.3]),  # head 2, fine 2
        member(tmp_path, "f1", [0.5, 0.4, 0.3], [0.2, 0.19, 0.18, 0.1]),  # head 3, fine 4
    ]
    assert chosen_epochs(folds) == {"head": 3, "fine": 3}
    assert chosen_epochs([member(tmp_path, "g", [0.1, 0.2], [])])["head"] == 1
