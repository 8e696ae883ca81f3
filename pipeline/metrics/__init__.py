"""Competition metrics as plug-ins: each is one file in this package and one line in METRICS.

Every score the pipeline reports, every post-processing choice, blend and the sandbox's scoring
reads a metric here: one implementation of each metric in the project.
"""

from __future__ import annotations

from pipeline.metrics import accuracy, balanced_accuracy, f1, log_loss, mcc, qwk, roc_auc
from pipeline.metrics.base import EPSILON, Metric

METRICS: dict[str, Metric] = {
    metric.name: metric
    for metric in (
        log_loss.METRIC,
        accuracy.METRIC,
        balanced_accuracy.METRIC,
        roc_auc.METRIC,
        f1.BINARY,
        f1.MICRO,
        f1.MACRO,
        mcc.METRIC,
        qwk.METRIC,
    )
}

__all__ = ["EPSILON", "METRICS", "Metric", "get_metric"]


def get_metric(name: str) -> Metric:
    """The metric called `name`, or a KeyError listing the known ones."""
    if name not in METRICS:
        raise KeyError(f"unknown metric {name!r}; choose one of {', '.join(METRICS)}")
    return METRICS[name]
