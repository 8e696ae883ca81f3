"""Measure: single fold model vs k-fold ensemble vs ensemble with TTA and clipping, OOF and test.

    python -m benchmarks.mini_report RUN_DIR SOLUTION_CSV INDEX_DIR

RUN_DIR is runs/<competition>/<run> after `train` and `predict`; SOLUTION_CSV holds the true test
labels (never used for training); INDEX_DIR is data/<competition>/index.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.fit.metrics import binary_scores
from pipeline.infer.postprocess import average, clip
from pipeline.run import Run


def main() -> None:
    run_dir, solution_path, index_dir = (Path(a) for a in sys.argv[1:4])
    run = Run(run_dir)
    chosen = run.read_postprocessing()
    if chosen is None:
        raise SystemExit(f"{run_dir} has no post-processing choices: run `make predict` on it first.")
    members = [np.load(m.tta_cache(chosen.views)) for m in run.members()]
    test_ids = pd.read_csv(index_dir / "test.csv", dtype={"id": str})["id"]
    truth = pd.read_csv(solution_path, dtype={"id": str}).set_index("id").loc[test_ids, "label"].to_numpy()
    labels_by_fold = [m.read_validation()["label"].to_numpy() for m in run.members()]
    oof_labels = np.concatenate(labels_by_fold)
    oof_single_view = np.concatenate([m["validation"][0] for m in members])
    space, c = chosen.average, max(chosen.clip or 0.0, 1e-7)
    oof_tta = np.concatenate([average(m["validation"], space) for m in members])
    views = "+".join(chosen.views)
    rows = {
        "single fold model (fold 0, one view)": (
            binary_scores(labels_by_fold[0], members[0]["validation"][0]),
            binary_scores(truth, members[0]["test"][0]),
        ),
        f"{len(members)}-fold ensemble (one view, {space} average)": (
            binary_scores(oof_labels, oof_single_view),
            binary_scores(truth, average(np.stack([m["test"][0] for m in members]), space)),
        ),
        f"{len(members)}-fold ensemble + TTA ({views}) + clip c={chosen.clip}": (
            binary_scores(oof_labels, clip(oof_tta, c)),
            binary_scores(truth, clip(average(np.concatenate([m["test"] for m in members]), space), c)),
        ),
    }
    print("| model | OOF log loss | OOF accuracy | test log loss | test accuracy |\n|---|---|---|---|---|")
    for name, (o, t) in rows.items():
        print(
            f"| {name} | {o['log_loss']:.4f} | {o['accuracy']:.4f} | {t['log_loss']:.4f} | {t['accuracy']:.4f} |"
        )
    print(
        f"(OOF rows: {len(oof_labels)} training images; test: {len(truth)} images scored with {solution_path.name})"
    )


if __name__ == "__main__":
    main()
