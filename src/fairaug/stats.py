"""Statistics shared by the quality metrics (`fairaug.metrics`) and the fairness metrics
(`fairaug.fairness`): the undefined-metric error, the percentile bootstrap and the report writer.

Undefined values
    A metric that has no value on the data given (AUROC with a single class, KID of one image, ...)
    raises `UndefinedMetricError` saying why; `measure` and the reports turn that into NaN plus the
    reason.

Bootstrap
    `bootstrap_indices` draws the resamples: row positions drawn with replacement, independently
    within each sample (the real and the synthetic set of a quality metric) or stratum (the FST
    groups of a fairness report, `stratified_indices`). `bootstrap_interval` is the percentile
    interval of a statistic over them; resamples where it is undefined are left out.

Reports
    `ReportWriter` writes a flat report keyed ``<namespace><name>`` (DESIGN.md, "Metric naming"):
    each value with ``.n`` beside it, ``.ci_low`` / ``.ci_high`` when bootstrapped, and
    ``.reason`` (a string) beside a NaN value, saying why it is undefined.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

Rows = NDArray[np.intp]
Resampler = Callable[[Sequence[np.ndarray]], Sequence[Rows]]
NAN = float("nan")


class UndefinedMetricError(ValueError):
    """The metric has no value on these rows; the message says why."""


def measure(metric: Callable[..., float], *args: object) -> tuple[float, str | None]:
    """The metric's value and None, or NaN and the reason it is undefined."""
    try:
        return metric(*args), None
    except UndefinedMetricError as err:
        return NAN, str(err)


def percentile_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """The central ``confidence`` interval of bootstrap ``values`` (percentile method), NaNs (undefined
    resamples) left out; NaNs if nothing is left."""
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    if not values.size:
        return NAN, NAN
    low, high = np.quantile(values, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high)


def bootstrap_indices(
    sizes: Sequence[int], n_bootstrap: int, seed: int, *, resample_by_resample: bool = False
) -> list[Rows]:
    """For each of the samples of sizes ``sizes``: an (n_bootstrap, size) array whose row b holds
    the sample's rows in resample b, drawn with replacement independently of the other samples.

    Args:
        sizes: rows of each sample (or stratum).
        n_bootstrap: resamples.
        seed: of the one generator every draw comes from.
        resample_by_resample: the order of the draws, which fixes the numbers a seed gives: all
            resamples of a sample at once, sample after sample (default: the fairness report's
            strata), or resample after resample, each sample in turn (the quality report's sets).
    """
    rng = np.random.default_rng(seed)
    if not resample_by_resample:
        return [rng.integers(0, size, size=(n_bootstrap, size)) for size in sizes]
    draws = [[rng.integers(0, size, size) for size in sizes] for _ in range(n_bootstrap)]
    return [np.array([resample[i] for resample in draws], dtype=np.int64).reshape(n_bootstrap, size)
            for i, size in enumerate(sizes)]  # fmt: skip


def stratified_indices(strata: ArrayLike, n_bootstrap: int, seed: int) -> Rows:
    """(n_bootstrap, n_rows) row indices of one sample with ``strata`` (n_rows,), drawn with
    replacement within each stratum (sorted), so that every resample keeps the strata sizes."""
    strata = np.asarray(strata)
    members = [np.flatnonzero(strata == stratum) for stratum in np.unique(strata)]
    draws = bootstrap_indices([len(rows) for rows in members], n_bootstrap, seed)
    indices = np.empty((n_bootstrap, len(strata)), dtype=np.intp)
    for rows, drawn in zip(members, draws, strict=True):
        indices[:, rows] = rows[drawn]
    return indices


def bootstrap_interval(
    statistic: Callable[..., float],
    samples: Sequence[np.ndarray],
    resamples: Sequence[Rows],
    confidence: float = 0.95,
    distinct: bool = False,
) -> tuple[float, float]:
    """Percentile interval of ``statistic(*samples)`` over the resamples: resample b gives the
    statistic ``samples[i][resamples[i][b]]`` for each sample i (`bootstrap_indices`). Resamples
    where the statistic is undefined are left out; NaNs if it is undefined in all.
    ``distinct``: keep each drawn row once (set metrics: a repeated image shrinks FID's covariance
    and adds k(x, x) terms to KID's off-diagonal sums, biasing both upwards); the interval is then
    that of ~63% of the rows, slightly wide."""
    values = []
    for rows in zip(*resamples, strict=True):
        resampled = [sample[np.unique(r) if distinct else r] for sample, r in zip(samples, rows, strict=True)]
        values.append(measure(statistic, *resampled)[0])
    return percentile_interval(values, confidence)


class ReportWriter:
    """Writes values with their ``.n``, bootstrap interval or reason into a flat report (`report`).

    Args:
        namespace: the prefix of every key (``quality/``, ``fairness/``).
        resamples: given a statistic's samples, its resamples (`bootstrap_indices`); None: no intervals.
        confidence: of the intervals.
        complete: an undefined value keeps its ``.n`` and (NaN) interval keys beside the reason, so
            that reports of different runs have the same keys; otherwise it has only its reason.
    """

    def __init__(
        self, namespace: str, resamples: Resampler | None = None, confidence: float = 0.95, complete: bool = False
    ):
        self.namespace, self.resamples, self.confidence, self.complete = namespace, resamples, confidence, complete
        self.report: dict[str, float | int | bool | str] = {}

    def set(self, name: str, value: float | int | bool | str) -> None:
        """A key of its own (group sizes, flags): ``<namespace><name>`` = value."""
        self.report[self.namespace + name] = value

    def put(
        self,
        name: str,
        statistic: Callable[..., float],
        samples: Sequence[np.ndarray],
        n: int,
        interval: bool = True,
        resample: Callable[..., float] | None = None,
        distinct: bool = False,
    ) -> None:
        """``statistic(*samples)`` as ``name``, computed on ``n`` rows, with its bootstrap interval
        unless ``interval`` is False, or NaN and the reason it is undefined.
        ``resample``: the statistic to use on resamples (default ``statistic``); ``distinct``: see
        `bootstrap_interval`."""
        value, reason = measure(statistic, *samples)
        self.set(name, value)
        if reason is None or self.complete:
            self.set(f"{name}.n", n)
        if reason is not None:
            self.set(f"{name}.reason", reason)
        if interval and self.resamples is not None and (reason is None or self.complete):
            low, high = NAN, NAN
            if reason is None:
                low, high = bootstrap_interval(resample or statistic, samples, self.resamples(samples),
                                               self.confidence, distinct)  # fmt: skip
            self.set(f"{name}.ci_low", low)
            self.set(f"{name}.ci_high", high)

    def unavailable(self, name: str, reason: str) -> None:
        """``name`` is NaN because of ``reason`` (missing weights, no such column)."""
        self.set(name, NAN)
        self.set(f"{name}.reason", reason)
