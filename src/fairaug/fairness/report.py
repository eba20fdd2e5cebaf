"""The fairness report of a prediction table (metrics.json, fairness.json, ``fairaug
fairness-report``, MLflow metrics of the same names).

`fairness_report` returns a flat dict keyed by DESIGN.md's metric names, all under the
``fairness/`` namespace (`fairaug.names.metric_key`); below, ``<key>`` stands for ``fairness/<key>``:
- ``<metric>`` and ``<metric>.fst<k>`` (k = 1..6) for accuracy, balanced_accuracy, auroc,
  auroc_malignant (only when malignant classes are given), sensitivity, specificity, kappa
  (`fairaug.fairness.functional`);
- the gaps ``auroc_gap``, ``eod``, ``dpd``, ``pqd``, ``dpm``, ``eom`` across FST groups;
- beside each value: ``.n`` (rows it was computed on) and, with bootstrapping, ``.ci_low`` and
  ``.ci_high`` (eod and dpd, computed by fairlearn, have no interval: ~50 ms a call);
- ``<key>.reason`` (a string) beside every NaN value, saying why it is undefined;
- ``fst<k>.n`` and ``fst<k>.small_group`` (fewer than ``min_group_size`` rows) for all six types,
  and ``fst_unknown.n``: rows of unknown FST count in the overall values and in no group or gap.
Every value, n and interval key is always present, so that reports of different runs line up.
Small groups keep their own per-FST values but are left out of the gaps, where a handful of
images would decide max-min.
`delta_report` gives ``fairness/delta.<key>`` = augmented - real-only for every shared metric
value. Another classifier's values beside the real-only ones are ``fairness/<variant>.<key>``
(``fairness/augmented.auroc.fst5``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence

import numpy as np
import pandas as pd

from fairaug.skin.types import FST_UNKNOWN, FST_VALUES
from fairaug.fairness.functional import (
    Metric,
    accuracy,
    auroc,
    auroc_gap,
    auroc_malignant,
    balanced_accuracy,
    dpd,
    dpm,
    eod,
    eom,
    kappa,
    pqd,
    sensitivity,
    specificity,
)
from fairaug.fairness.predictions import check_predictions, score_column
from fairaug.names import FAIRNESS_NAMESPACE, bare_name, metric_key
from fairaug.stats import ReportWriter, Rows, UndefinedMetricError, stratified_indices

NOT_DELTA_SUFFIXES = (".ci_low", ".ci_high", ".n", ".reason", ".small_group")


def fairness_report(
    frame: pd.DataFrame,
    classes: Sequence[str],
    *,
    ordinal: bool = False,
    malignant_classes: Collection[str] | None = None,
    min_group_size: int = 5,
    n_bootstrap: int = 200,
    seed: int = 0,
    confidence: float = 0.95,
    stratify_by_fst: bool = True,
) -> dict[str, float | int | bool | str]:
    """Overall and per-FST metrics, gaps across FST groups and their bootstrap intervals, as the
    flat dict described in this module's docstring. ``frame`` is in the prediction-file format."""
    check_predictions(frame, classes, source="predictions")
    y = frame["label"].map({label: i for i, label in enumerate(classes)}).to_numpy(np.int64)
    scores = frame[[score_column(c) for c in classes]].to_numpy(np.float64)
    fst = frame["fst"].to_numpy(np.int64)
    # every statistic is a function of one sample, the row positions, resampled within FST groups:
    # the same resamples for all
    all_rows = np.arange(len(frame))
    resampler = None
    if n_bootstrap:
        strata = fst if stratify_by_fst else np.zeros(len(frame), dtype=np.int64)
        resamples = [stratified_indices(strata, n_bootstrap, seed)]
        resampler = lambda samples: resamples  # noqa: E731
    writer = ReportWriter(FAIRNESS_NAMESPACE, resampler, confidence, complete=True)

    def on_rows(metric: Callable[..., float], keep: Callable[[Rows], Rows], grouped: bool) -> Callable[[Rows], float]:
        """The statistic a bootstrap resample (row indices) gives: the metric on the rows ``keep`` keeps."""

        def statistic(rows: Rows) -> float:
            kept = keep(rows)
            return metric(y[kept], scores[kept], fst[kept]) if grouped else metric(y[kept], scores[kept])

        return statistic

    sizes = {k: int(np.sum(fst == k)) for k in FST_VALUES}
    for k in FST_VALUES:
        writer.set(f"fst{k}.n", sizes[k])
        writer.set(f"fst{k}.small_group", sizes[k] < min_group_size)
    writer.set("fst_unknown.n", int(np.sum(fst == FST_UNKNOWN)))  # in the overall values, in no gap

    for name, metric in _sample_metrics(classes, ordinal, malignant_classes).items():
        writer.put(name, on_rows(metric, lambda rows: rows, grouped=False), [all_rows], len(frame))
        for k in FST_VALUES:
            in_group = on_rows(metric, lambda rows, k=k: rows[fst[rows] == k], grouped=False)
            writer.put(f"{name}.fst{k}", in_group, [all_rows], sizes[k])

    compared = [k for k in FST_VALUES if sizes[k] >= min_group_size]

    def compared_groups(rows: Rows) -> Rows:
        if len(compared) < 2:
            raise UndefinedMetricError(f"fewer than two FST groups have at least {min_group_size} rows")
        return rows[np.isin(fst[rows], compared)]

    gaps = {"auroc_gap": auroc_gap, "eod": eod, "dpd": dpd, "pqd": pqd, "dpm": dpm, "eom": eom}
    for name, gap in gaps.items():
        # fairlearn's eod/dpd cost ~50 ms a call: too slow to bootstrap
        interval = name not in ("eod", "dpd")
        n_compared = int(np.isin(fst, compared).sum())
        writer.put(name, on_rows(gap, compared_groups, grouped=True), [all_rows], n_compared, interval)
    return writer.report


def _sample_metrics(
    classes: Sequence[str], ordinal: bool, malignant_classes: Collection[str] | None
) -> dict[str, Metric]:
    metrics: dict[str, Metric] = {
        "accuracy": accuracy,
        "balanced_accuracy": balanced_accuracy,
        "auroc": auroc,
    }
    if malignant_classes is not None:
        malignant = [i for i, label in enumerate(classes) if label in malignant_classes]
        metrics["auroc_malignant"] = lambda y, s: auroc_malignant(y, s, malignant)
    metrics["sensitivity"] = sensitivity
    metrics["specificity"] = specificity
    metrics["kappa"] = lambda y, s: kappa(y, s, ordinal=ordinal)
    return metrics


def delta_report(augmented: Mapping[str, object], real: Mapping[str, object]) -> dict[str, float]:
    """``fairness/delta.<metric>`` = augmented - real for every metric value both reports (keyed
    ``fairness/<metric>``) have, not for the ci/n/reason/small_group entries beside them."""

    def is_metric(key: str, value: object) -> bool:
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        return is_number and not key.endswith(NOT_DELTA_SUFFIXES)

    return {
        metric_key(f"delta.{bare_name(key)}"): float(value) - float(real[key])  # type: ignore[arg-type]
        for key, value in augmented.items()
        if key in real and is_metric(key, value) and is_metric(key, real[key])
    }


