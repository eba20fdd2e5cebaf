"""Names of the fairness and quality reports' entries in metrics files and MLflow (DESIGN.md, "Metric
naming"), shared by the stages that write them and the tracking tables, dashboards and results that
read them."""

from __future__ import annotations

FAIRNESS_NAMESPACE = "fairness/"
QUALITY_NAMESPACE = "quality/"


def metric_key(name: str, variant: str | None = None) -> str:
    """The metrics-file and MLflow name of a report entry: ``fairness/[<variant>.]<name>``, e.g.
    ``metric_key("auroc.fst5")`` -> ``fairness/auroc.fst5``, with variant "augmented" ->
    ``fairness/augmented.auroc.fst5``, ``metric_key("delta.auroc")`` -> ``fairness/delta.auroc``."""
    return f"{FAIRNESS_NAMESPACE}{variant}.{name}" if variant else f"{FAIRNESS_NAMESPACE}{name}"


def bare_name(key: str) -> str:
    """``fairness/auroc.fst5`` -> ``auroc.fst5``: a report key without the namespace."""
    return key.removeprefix(FAIRNESS_NAMESPACE)
