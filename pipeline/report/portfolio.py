"""The report of an auto-recipe portfolio: its plan and members (OOF alone, the nested estimate
with each, time against the estimate, weight), the ensemble's out-of-fold errors per class; the
fine-tuned member's own full report beside it, linked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.acquire.index import with_indexed_classes
from pipeline.competitions import get_competition
from pipeline.config import Config
from pipeline.report import plots
from pipeline.report.classes import per_class_table, predictions_table, top_confusions
from pipeline.run import Run


def members_table(record: dict) -> pd.DataFrame:
    """One row per member: status, seconds estimated and taken, OOF alone, the nested estimate of
    the ensemble with it, weight."""
    rows = [
        {
            "member": m["name"],
            "status": m.get("status", ""),
            "estimated seconds": m.get("estimate", np.nan),
            "seconds": m.get("seconds", np.nan),
            f"OOF {record.get('selected_on', '')} alone": m.get("oof_alone", np.nan),
            "nested, ensemble with it": m.get("nested_with_it", np.nan),
            "kept": bool(m.get("kept", False)),
            "weight": m.get("weight", 0.0),
        }
        for m in record.get("members", [])
    ]
    return pd.DataFrame(rows)


def build_portfolio_report(config: Config, run: Run, member_report: Path | None) -> Path:
    """Write the portfolio's report.html (and its pictures); return its path."""
    from pipeline.report.build import Page, not_applying

    competition = with_indexed_classes(config, get_competition(config.competition))
    record = run.read_portfolio() or {}
    page = Page(hidden=not_applying(competition))
    out = run.report_draft_dir()
    metric = record.get("metric", competition.metric)
    page.rows(
        "summary",
        {
            "competition": config.competition,
            "recipe": "auto: a portfolio chosen on out-of-fold predictions",
            "time budget": f"{record.get('budget_seconds', 0):.0f} s; used {record.get('seconds', 0):.0f} s",
            f"OOF {metric} of the ensemble": f"{record.get('oof', float('nan')):.4f} (weights fit on it: optimistic)",
            f"nested OOF {record.get('selected_on', metric)}": f"{record.get('nested_oof', float('nan')):.4f} "
            "(weights fit on the other folds)",
        },
    )
    page.heading("portfolio", "Members")
    page.table("portfolio", members_table(record))
    plan = "\n".join(
        f"{step['name']}: {step['what']} (~{step['estimate']:.0f} s)" for step in record.get("plan", [])
    )
    page.pre("portfolio", plan, summary="the plan printed before any work")
    if member_report is not None:
        page.text(
            "portfolio", f"The fine-tuned member's own report (learning curves, Grad-CAM): {member_report}"
        )
    oof, chosen = run.read_final_oof(), run.read_postprocessing()
    if oof is not None and competition.classes:
        threshold = chosen.threshold if chosen is not None and chosen.threshold is not None else 0.5
        table = predictions_table(oof, threshold)
        labels, predicted = table["label"].to_numpy(dtype=int), table["predicted"].to_numpy(dtype=int)
        page.heading("errors", "Per class, out of fold (the class weights' effect shows in recall)")
        page.table("errors", per_class_table(labels, predicted, competition.classes))
        page.image(
            "errors",
            plots.confusion(labels, predicted, competition.classes, out / "confusion.png"),
            "confusion matrix of the ensemble's out-of-fold predictions",
        )
        if competition.num_classes > 2:
            page.table("errors", top_confusions(labels, predicted, competition.classes))
    page.pre("summary", config.to_json(), summary="resolved configuration")
    return run.publish_report(page.render(f"{competition.title}: portfolio {run.name}"))
