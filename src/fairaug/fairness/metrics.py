"""Classification and per-FST fairness metrics, with percentile-bootstrap confidence intervals.

Functional core
    A per-sample metric is ``metric(y_true, scores) -> float``: ``y_true`` holds class positions
    (ints 0..C-1) and ``scores`` is an (n, C) array with one column per class in the same order
    (probabilities; a row's argmax is the prediction). A gap metric also takes ``groups`` (n,) and
    compares every group present. A metric that has no value on the rows given (AUROC with a single
    class, ...) raises `UndefinedMetricError` saying why; reports turn that into NaN plus the reason.

Prediction files (predictions.parquet, ``fairaug fairness-report``)
    Columns ``label`` (class name), ``fst`` (int 1..6, or 0: unknown) and one ``score_<label>`` column per class;
    the classes are the score columns in file order. Other columns (path, group_id, ...) are kept.

Report (metrics.json, fairness.json, ``fairaug fairness-report``, MLflow metrics of the same names):
    `fairness_report` returns a flat dict keyed by DESIGN.md's metric names, all under the
    ``fairness/`` namespace (`metric_key`); below, ``<key>`` stands for ``fairness/<key>``:
    - ``<metric>`` and ``<metric>.fst<k>`` (k = 1..6) for accuracy, balanced_accuracy, auroc,
      auroc_malignant (only when malignant classes are given), sensitivity, specificity, kappa;
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

import io
import warnings
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference
from numpy.typing import ArrayLike, NDArray
from scipy.stats import rankdata

from fairaug.errors import DataError
from fairaug.io import atomic_write_bytes
from fairaug.skin.types import FST_UNKNOWN, FST_VALUES

SCORE_PREFIX = "score_"
NAMESPACE = "fairness/"
NOT_DELTA_SUFFIXES = (".ci_low", ".ci_high", ".n", ".reason", ".small_group")

Metric = Callable[[ArrayLike, ArrayLike], float]
Rows = NDArray[np.intp]


class UndefinedMetricError(ValueError):
    """The metric has no value on these rows; the message says why."""


def score_column(label: str) -> str:
    return f"{SCORE_PREFIX}{label}"


def metric_key(name: str, variant: str | None = None) -> str:
    """The metrics-file and MLflow name of a report entry: ``fairness/[<variant>.]<name>``, e.g.
    ``metric_key("auroc.fst5")`` -> ``fairness/auroc.fst5``, with variant "augmented" ->
    ``fairness/augmented.auroc.fst5``, ``metric_key("delta.auroc")`` -> ``fairness/delta.auroc``."""
    return f"{NAMESPACE}{variant}.{name}" if variant else f"{NAMESPACE}{name}"


def bare_name(key: str) -> str:
    """``fairness/auroc.fst5`` -> ``auroc.fst5``: a report key without the namespace."""
    return key.removeprefix(NAMESPACE)


# --------------------------------------------------------------------------------------------------
# Per-sample metrics


def _inputs(y_true: ArrayLike, scores: ArrayLike) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    y = np.asarray(y_true, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] < 2 or y.shape != (len(s),):
        raise ValueError(f"need y_true (n,) and scores (n, C >= 2), got {y.shape} and {s.shape}")
    if not len(y):
        raise UndefinedMetricError("no rows")
    if y.min() < 0 or y.max() >= s.shape[1]:
        raise ValueError(f"y_true must hold class positions 0..{s.shape[1] - 1}")
    return y, s


def _confusion(y: NDArray[np.int64], scores: NDArray[np.float64]) -> NDArray[np.int64]:
    """Rows: true class, columns: predicted class (the argmax)."""
    n_classes = scores.shape[1]
    cells = y * n_classes + scores.argmax(axis=1)
    return np.bincount(cells, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def accuracy(y_true: ArrayLike, scores: ArrayLike) -> float:
    """Share of rows whose highest-scoring class is the true class."""
    y, s = _inputs(y_true, scores)
    return float(np.mean(s.argmax(axis=1) == y))


def sensitivity(y_true: ArrayLike, scores: ArrayLike) -> float:
    """Macro one-vs-rest sensitivity: mean of TP / (TP + FN) over the classes present in y_true."""
    confusion = _confusion(*_inputs(y_true, scores))
    positives = confusion.sum(axis=1)
    present = positives > 0
    return float(np.mean(np.diag(confusion)[present] / positives[present]))


def balanced_accuracy(y_true: ArrayLike, scores: ArrayLike) -> float:
    """Mean recall over the classes present (scikit-learn's definition): the same number as macro
    `sensitivity`, reported under both names because readers look for either."""
    return sensitivity(y_true, scores)


def specificity(y_true: ArrayLike, scores: ArrayLike) -> float:
    """Macro one-vs-rest specificity: mean of TN / (TN + FP) over the classes that have negatives."""
    confusion = _confusion(*_inputs(y_true, scores))
    total = confusion.sum()
    true_positive = np.diag(confusion)
    false_positive = confusion.sum(axis=0) - true_positive
    negatives = total - confusion.sum(axis=1)  # never all zero: with n > 0 some class is absent or partial
    has_negatives = negatives > 0
    true_negative = negatives - false_positive
    return float(np.mean(true_negative[has_negatives] / negatives[has_negatives]))


def _binary_auroc(positive: NDArray[np.bool_], score: NDArray[np.float64]) -> float:
    """Mann-Whitney form of the ROC area (ties count one half), as scikit-learn's roc_auc_score."""
    n_positive = int(positive.sum())
    n_negative = len(positive) - n_positive
    if n_positive == 0 or n_negative == 0:
        raise UndefinedMetricError(f"needs positive and negative rows, has {n_positive} and {n_negative}")
    ranks = rankdata(score)
    return float((ranks[positive].sum() - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative))


def auroc(y_true: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve. Two classes: of the second class's score. More: the macro
    one-vs-rest mean over the classes present in y_true (scikit-learn's
    ``roc_auc_score(multi_class="ovr")`` when all are present; a group rarely has every class)."""
    y, s = _inputs(y_true, scores)
    if s.shape[1] == 2:
        return _binary_auroc(y == 1, s[:, 1])
    present = np.unique(y)
    if len(present) < 2:
        raise UndefinedMetricError(f"needs two classes present, has only class {present[0]}")
    return float(np.mean([_binary_auroc(y == c, s[:, c]) for c in present]))


def auroc_malignant(y_true: ArrayLike, scores: ArrayLike, malignant: Collection[int]) -> float:
    """AUROC of malignant (class positions ``malignant``) vs the rest, scored by the summed
    probability of the malignant classes."""
    y, s = _inputs(y_true, scores)
    columns = np.asarray(sorted(malignant), dtype=np.intp)
    if columns.size in (0, s.shape[1]):
        raise UndefinedMetricError("needs malignant and benign classes among the classes")
    return _binary_auroc(np.isin(y, columns), s[:, columns].sum(axis=1))


def kappa(y_true: ArrayLike, scores: ArrayLike, ordinal: bool = False) -> float:
    """Cohen's kappa between labels and predictions; quadratic weights when the classes are ordinal
    (in class order, e.g. wound phases I < P < R), unweighted otherwise."""
    confusion = _confusion(*_inputs(y_true, scores)).astype(np.float64)
    true_class, predicted_class = np.indices(confusion.shape)
    if ordinal:
        weights = (true_class - predicted_class).astype(np.float64) ** 2
    else:
        weights = (true_class != predicted_class).astype(np.float64)
    expected = np.outer(confusion.sum(axis=1), confusion.sum(axis=0)) / confusion.sum()
    chance_disagreement = float((weights * expected).sum())
    if chance_disagreement == 0:
        raise UndefinedMetricError("labels and predictions are all one class: chance agreement is perfect")
    return float(1 - (weights * confusion).sum() / chance_disagreement)


# --------------------------------------------------------------------------------------------------
# Per-group values and gaps


def measure(metric: Callable[..., float], *args: object) -> tuple[float, str | None]:
    """The metric's value and None, or NaN and the reason it is undefined."""
    try:
        return metric(*args), None
    except UndefinedMetricError as err:
        return float("nan"), str(err)


def by_group(metric: Metric, y_true: ArrayLike, scores: ArrayLike, groups: ArrayLike) -> dict[Hashable, float]:
    """The metric on the rows of each group present (sorted), NaN where it is undefined."""
    y, s = np.asarray(y_true), np.asarray(scores)
    g = np.asarray(groups)
    return {key.item(): measure(metric, y[g == key], s[g == key])[0] for key in np.unique(g)}


def _defined_by_group(metric: Metric, y_true: ArrayLike, scores: ArrayLike, groups: ArrayLike) -> NDArray:
    values = np.array(list(by_group(metric, y_true, scores, groups).values()), dtype=np.float64)
    values = values[~np.isnan(values)]
    if len(values) < 2:
        raise UndefinedMetricError(f"needs the metric in at least two groups, has {len(values)}")
    return values


def auroc_gap(y_true: ArrayLike, scores: ArrayLike, groups: ArrayLike) -> float:
    """Max minus min over groups of the per-group `auroc` (groups where it is undefined left out)."""
    values = _defined_by_group(auroc, y_true, scores, groups)
    return float(values.max() - values.min())


def pqd(y_true: ArrayLike, scores: ArrayLike, groups: ArrayLike) -> float:
    """Predictive quality disparity: min over groups / max over groups of accuracy (1 is parity)."""
    values = _defined_by_group(accuracy, y_true, scores, groups)
    if values.max() == 0:
        raise UndefinedMetricError("accuracy is 0 in every group")
    return float(values.min() / values.max())


def _rates_by_group(
    y_true: ArrayLike, scores: ArrayLike, groups: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per group (rows, sorted) and class (columns): the share of the group's rows predicted as the
    class, and the class's recall (NaN where the group has no row of the class)."""
    y, s = _inputs(y_true, scores)
    g = np.asarray(groups)
    keys = np.unique(g)
    if len(keys) < 2:
        raise UndefinedMetricError(f"needs at least two groups, has {len(keys)}")
    predicted_rate, recall = [], []
    for key in keys:
        confusion = _confusion(y[g == key], s[g == key])
        predicted_rate.append(confusion.sum(axis=0) / confusion.sum())
        with np.errstate(invalid="ignore", divide="ignore"):
            recall.append(np.diag(confusion) / confusion.sum(axis=1))
    return np.array(predicted_rate), np.array(recall)


def _mean_min_over_max(table: NDArray[np.float64], what: str) -> float:
    """Mean over columns (classes) of min / max over rows (groups), over the columns where the ratio
    is defined: at least two groups with a value and a non-zero max."""
    ratios = []
    for column in table.T:
        values = column[~np.isnan(column)]
        if len(values) >= 2 and values.max() > 0:
            ratios.append(values.min() / values.max())
    if not ratios:
        raise UndefinedMetricError(f"no class has a non-zero {what} in two groups")
    return float(np.mean(ratios))


def dpm(y_true: ArrayLike, scores: ArrayLike, groups: ArrayLike) -> float:
    """Demographic parity metric (FairDisCo): mean over classes of min / max across groups of the
    share of a group's rows predicted as the class; classes no group predicts are left out."""
    predicted_rate, _ = _rates_by_group(y_true, scores, groups)
    return _mean_min_over_max(predicted_rate, "predicted-class rate")


def eom(y_true: ArrayLike, scores: ArrayLike, groups: ArrayLike) -> float:
    """Equal opportunity metric (FairDisCo): mean over classes of min / max across groups of the
    class's recall, over the groups that have the class; classes with zero recall everywhere are left out."""
    _, recall = _rates_by_group(y_true, scores, groups)
    return _mean_min_over_max(recall, "recall")


def _one_vs_rest_gap(
    fairlearn_metric: Callable[..., float],
    y_true: ArrayLike,
    scores: ArrayLike,
    groups: ArrayLike,
    needs_both_outcomes: bool,
) -> float:
    y, s = _inputs(y_true, scores)
    predicted = s.argmax(axis=1)
    g = np.asarray(groups)
    # two classes: class 0's one-vs-rest gap equals class 1's (rates are complements)
    classes = [1] if s.shape[1] == 2 else range(s.shape[1])
    gaps = []
    for c in classes:
        positive = y == c
        comparable = [
            key for key in np.unique(g)
            if not needs_both_outcomes or 0 < positive[g == key].sum() < (g == key).sum()
        ]  # fmt: skip
        if len(comparable) < 2:
            continue
        rows = np.isin(g, comparable)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # fairlearn warns on groups without predicted positives
            gaps.append(fairlearn_metric(positive[rows], predicted[rows] == c, sensitive_features=g[rows]))
    if not gaps:
        what = "positives and negatives of a class" if needs_both_outcomes else "rows"
        raise UndefinedMetricError(f"needs {what} in at least two groups")
    return float(max(gaps))


def eod(y_true: ArrayLike, scores: ArrayLike, groups: ArrayLike) -> float:
    """Equalized-odds difference: fairlearn's ``equalized_odds_difference`` (the larger of the
    max-min TPR and FPR differences across groups). Two classes: of the second class. More: the
    max over classes of the one-vs-rest EOD. Per class, only groups with positives and negatives of
    the class are compared (fairlearn would count an undefined TPR or FPR as 0)."""
    return _one_vs_rest_gap(equalized_odds_difference, y_true, scores, groups, needs_both_outcomes=True)


def dpd(y_true: ArrayLike, scores: ArrayLike, groups: ArrayLike) -> float:
    """Demographic-parity difference: fairlearn's ``demographic_parity_difference`` (max-min
    predicted-positive rate across groups); for more than two classes, the max over classes of the
    one-vs-rest difference."""
    return _one_vs_rest_gap(demographic_parity_difference, y_true, scores, groups, needs_both_outcomes=False)


# --------------------------------------------------------------------------------------------------
# Bootstrap


def bootstrap_indices(n_rows: int, n_bootstrap: int, seed: int, strata: ArrayLike | None = None) -> Rows:
    """(n_bootstrap, n_rows) row indices drawn with replacement; within each stratum when ``strata``
    (n_rows,) is given, so that every resample keeps the strata sizes."""
    rng = np.random.default_rng(seed)
    if strata is None:
        return rng.integers(0, n_rows, size=(n_bootstrap, n_rows))
    strata = np.asarray(strata)
    indices = np.empty((n_bootstrap, n_rows), dtype=np.intp)
    for stratum in np.unique(strata):
        rows = np.flatnonzero(strata == stratum)
        indices[:, rows] = rows[rng.integers(0, len(rows), size=(n_bootstrap, len(rows)))]
    return indices


def bootstrap_ci(
    statistic: Callable[[Rows], float], indices: Rows, confidence: float = 0.95
) -> tuple[float, float]:
    """Percentile interval of ``statistic(rows)`` over the resamples (rows of ``indices``).
    Resamples where the statistic is undefined are skipped; NaNs if it is undefined in all."""
    return percentile_interval([measure(statistic, rows)[0] for rows in indices], confidence)


def percentile_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """The central ``confidence`` interval of bootstrap ``values`` (percentile method), NaNs (undefined
    resamples) left out; NaNs if nothing is left."""
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    if not values.size:
        return float("nan"), float("nan")
    low, high = np.quantile(values, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high)


# --------------------------------------------------------------------------------------------------
# Reports


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
    all_rows = np.arange(len(frame))
    resamples = None
    if n_bootstrap:
        resamples = bootstrap_indices(len(frame), n_bootstrap, seed, strata=fst if stratify_by_fst else None)
    report: dict[str, float | int | bool | str] = {}

    def record(name: str, statistic: Callable[[Rows], float], n: int, interval: bool = True) -> None:
        value, reason = measure(statistic, all_rows)
        report[name] = value
        report[f"{name}.n"] = n
        if reason is not None:
            report[f"{name}.reason"] = reason
        if interval and resamples is not None:
            nan = float("nan")
            low, high = bootstrap_ci(statistic, resamples, confidence) if reason is None else (nan, nan)
            report[f"{name}.ci_low"], report[f"{name}.ci_high"] = low, high

    def on_rows(metric: Callable[..., float], keep: Callable[[Rows], Rows], grouped: bool) -> Callable[[Rows], float]:
        """The statistic a bootstrap resample (row indices) gives: the metric on the rows ``keep`` keeps."""

        def statistic(rows: Rows) -> float:
            kept = keep(rows)
            return metric(y[kept], scores[kept], fst[kept]) if grouped else metric(y[kept], scores[kept])

        return statistic

    sizes = {k: int(np.sum(fst == k)) for k in FST_VALUES}
    for k in FST_VALUES:
        report[f"fst{k}.n"] = sizes[k]
        report[f"fst{k}.small_group"] = sizes[k] < min_group_size
    report["fst_unknown.n"] = int(np.sum(fst == FST_UNKNOWN))  # in the overall values, in no gap

    for name, metric in _sample_metrics(classes, ordinal, malignant_classes).items():
        record(name, on_rows(metric, lambda rows: rows, grouped=False), len(frame))
        for k in FST_VALUES:
            in_group = on_rows(metric, lambda rows, k=k: rows[fst[rows] == k], grouped=False)
            record(f"{name}.fst{k}", in_group, sizes[k])

    compared = [k for k in FST_VALUES if sizes[k] >= min_group_size]

    def compared_groups(rows: Rows) -> Rows:
        if len(compared) < 2:
            raise UndefinedMetricError(f"fewer than two FST groups have at least {min_group_size} rows")
        return rows[np.isin(fst[rows], compared)]

    gaps = {"auroc_gap": auroc_gap, "eod": eod, "dpd": dpd, "pqd": pqd, "dpm": dpm, "eom": eom}
    for name, gap in gaps.items():
        # fairlearn's eod/dpd cost ~50 ms a call: too slow to bootstrap
        interval = name not in ("eod", "dpd")
        record(name, on_rows(gap, compared_groups, grouped=True), int(np.isin(fst, compared).sum()), interval)
    return {metric_key(name): value for name, value in report.items()}


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


# --------------------------------------------------------------------------------------------------
# Prediction files


def prediction_classes(frame: pd.DataFrame, source: object = "predictions") -> list[str]:
    """The classes of a prediction table: its ``score_<label>`` columns, in column order."""
    classes = [str(c)[len(SCORE_PREFIX):] for c in frame.columns if str(c).startswith(SCORE_PREFIX)]
    if len(classes) < 2:
        raise DataError(
            f"needs a {SCORE_PREFIX}<label> column per class (at least two), found {len(classes)}", file=source
        )
    return classes


def check_predictions(
    frame: pd.DataFrame, classes: Sequence[str], source: object = "predictions", first_row: int = 1
) -> None:
    """Raise a DataError naming the column (and row: ``first_row`` is the number of the first data
    row) of the first problem: a missing column, a label without a score column, an FST outside
    1..6 or a score that is not a finite number."""
    for column in ["label", "fst", *(score_column(c) for c in classes)]:
        if column not in frame.columns:
            found = ", ".join(map(str, frame.columns))
            raise DataError(f"missing column (found: {found})", file=source, column=column)

    def first_bad(column: str, bad: ArrayLike, message: str) -> None:
        bad = np.asarray(bad, dtype=bool)
        if bad.any():
            position = int(np.argmax(bad))
            value = frame[column].iloc[position]
            value = value.item() if isinstance(value, np.generic) else value  # 9, not np.int64(9)
            raise DataError(f"{message}, got {value!r}", file=source, row=position + first_row, column=column)

    first_bad("label", ~frame["label"].isin(classes), f"label must be one of {', '.join(classes)}")
    fst = pd.to_numeric(frame["fst"], errors="coerce")
    first_bad("fst", ~fst.isin([*FST_VALUES, FST_UNKNOWN]),
              f"FST must be an integer from 1 to 6 ({FST_UNKNOWN}: unknown)")
    for c in classes:
        column = score_column(c)
        score = pd.to_numeric(frame[column], errors="coerce")
        first_bad(column, ~np.isfinite(score.to_numpy(np.float64)), "score must be a finite number")


def read_predictions(path: str | Path) -> pd.DataFrame:
    """A prediction table from .parquet or .csv, checked (DataError naming file, row and column).
    Rows count data rows from 1 in a parquet file, and are line numbers in a CSV (header: line 1)."""
    path = Path(path)
    if path.suffix not in (".parquet", ".csv"):
        raise DataError("predictions must be a .parquet or .csv file", file=path)
    if not path.is_file():
        raise DataError("file not found", file=path)
    try:
        if path.suffix == ".parquet":
            frame, first_row = pd.read_parquet(path), 1
        else:
            frame, first_row = pd.read_csv(path, dtype={"label": str}), 2
    except (ValueError, OSError, pd.errors.ParserError) as err:
        raise DataError(f"not a readable {path.suffix[1:]} file: {str(err).strip()}", file=path) from None
    classes = prediction_classes(frame, source=path)
    frame = frame.assign(label=frame["label"].astype(str)) if "label" in frame.columns else frame
    check_predictions(frame, classes, source=path, first_row=first_row)
    return frame.assign(fst=frame["fst"].astype(np.int64))


def write_predictions(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a prediction table as parquet, atomically."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return atomic_write_bytes(path, buffer.getvalue())
