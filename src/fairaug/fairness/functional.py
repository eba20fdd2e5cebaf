"""Classification and per-FST fairness metrics as pure functions, numpy in and floats out.

A per-sample metric is ``metric(y_true, scores) -> float``: ``y_true`` holds class positions (ints
0..C-1) and ``scores`` is an (n, C) array with one column per class in the same order
(probabilities; a row's argmax is the prediction). A gap metric also takes ``groups`` (n,) and
compares every group present. A metric that has no value on the rows given (AUROC with a single
class, ...) raises `fairaug.stats.UndefinedMetricError` saying why; reports turn that into NaN plus
the reason (`fairaug.fairness.report`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Collection, Hashable

import numpy as np
from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference
from numpy.typing import ArrayLike, NDArray
from scipy.stats import rankdata

from fairaug.stats import UndefinedMetricError, measure

Metric = Callable[[ArrayLike, ArrayLike], float]


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
