import math

import numpy as np
import pytest

from fairaug.stats import (
    ReportWriter,
    UndefinedMetricError,
    bootstrap_indices,
    bootstrap_interval,
    measure,
    percentile_interval,
    stratified_indices,
)


def test_bootstrap_interval_narrows_with_more_rows():
    widths = []
    for n in (100, 400, 1600):
        correct = (np.random.default_rng(10).random(n) < 0.7).astype(float)
        [rows] = bootstrap_indices([n], 300, seed=0)
        widths.append(np.subtract(*bootstrap_interval(np.mean, [correct], [rows])[::-1]))
    assert widths[0] > widths[1] > widths[2]
    assert widths[0] / widths[2] == pytest.approx(4, rel=0.35)  # width ~ 1/sqrt(n)


def test_bootstrap_interval_covers_the_mean_and_is_seeded():
    values = np.random.default_rng(0).normal(loc=2.0, size=400)
    low, high = bootstrap_interval(np.mean, [values], bootstrap_indices([400], 200, seed=0))
    assert low < values.mean() < high and high - low < 0.5
    again = bootstrap_interval(np.mean, [values], bootstrap_indices([400], 200, seed=0))
    assert again == (low, high)
    assert bootstrap_interval(np.mean, [values], bootstrap_indices([400], 200, seed=1)) != (low, high)


def test_the_two_draw_orders_are_the_reports_draws():
    # the fairness report: all resamples of a stratum at once, stratum after stratum
    rng = np.random.default_rng(3)
    expected = [rng.integers(0, size, size=(20, size)) for size in (7, 4)]
    for drawn, want in zip(bootstrap_indices([7, 4], 20, seed=3), expected, strict=True):
        np.testing.assert_array_equal(drawn, want)
    # the quality report: resample after resample, each set in turn
    rng = np.random.default_rng(3)
    draws = [[rng.integers(0, size, size) for size in (7, 4)] for _ in range(20)]
    by_resample = bootstrap_indices([7, 4], 20, seed=3, resample_by_resample=True)
    for i in range(2):
        np.testing.assert_array_equal(by_resample[i], np.array([d[i] for d in draws]))


def test_resamples_of_several_samples_and_distinct_rows():
    a, b = np.arange(10.0), np.arange(100.0, 105.0)
    resamples = bootstrap_indices([10, 5], 30, seed=0)
    seen = []

    def statistic(x, y):
        seen.append((x, y))
        return 0.0

    bootstrap_interval(statistic, [a, b], resamples, distinct=True)
    assert len(seen) == 30
    for (x, y), rows_a, rows_b in zip(seen, *resamples, strict=True):
        np.testing.assert_array_equal(x, a[np.unique(rows_a)])
        np.testing.assert_array_equal(y, b[np.unique(rows_b)])


def test_percentile_interval_leaves_out_undefined_resamples():
    values = np.random.default_rng(12).normal(size=500)
    values[::7] = np.nan  # undefined resamples
    expected = np.nanpercentile(values, [5, 95])
    assert percentile_interval(list(values), confidence=0.9) == pytest.approx(tuple(expected), rel=1e-12)
    assert np.isnan(percentile_interval([np.nan, np.nan])).all()


def test_undefined_resamples_are_left_out():
    values = np.arange(20.0)

    def mean_unless_small(x):
        if x.mean() < 9:
            raise UndefinedMetricError("small")
        return float(x.mean())

    resamples = bootstrap_indices([20], 200, seed=0)
    low, _ = bootstrap_interval(mean_unless_small, [values], resamples)
    assert low >= 9
    assert measure(mean_unless_small, np.zeros(3)) == (pytest.approx(math.nan, nan_ok=True), "small")


def test_stratified_resamples_keep_the_group_sizes():
    strata = np.array([1, 1, 1, 2, 2, 5, 5, 5, 5, 6])
    indices = stratified_indices(strata, 100, seed=0)
    assert indices.shape == (100, 10)
    assert (strata[indices] == strata).all()
    assert len(np.unique(indices[:, :3])) == 3  # rows are drawn with replacement within the stratum


def undefined(x):
    raise UndefinedMetricError("no rows")


@pytest.mark.parametrize("complete", [False, True])
def test_report_writer_keys(complete):
    values = np.arange(10.0)
    writer = ReportWriter("q/", lambda samples: bootstrap_indices([len(s) for s in samples], 20, 0), complete=complete)
    writer.set("n_real", 10)
    writer.put("mean", np.mean, [values], 10)
    writer.put("max", np.max, [values], 10, interval=False)
    writer.put("none", undefined, [values[:0]], 0)
    writer.unavailable("fid", "no weights")
    undefined_keys = ["q/none", "q/none.n", "q/none.reason", "q/none.ci_low", "q/none.ci_high"] if complete \
        else ["q/none", "q/none.reason"]  # fmt: skip
    assert list(writer.report) == ["q/n_real", "q/mean", "q/mean.n", "q/mean.ci_low", "q/mean.ci_high", "q/max",
                                   "q/max.n", *undefined_keys, "q/fid", "q/fid.reason"]  # fmt: skip
    assert writer.report["q/mean.ci_low"] < 4.5 < writer.report["q/mean.ci_high"]
    assert math.isnan(writer.report["q/none"]) and writer.report["q/none.reason"] == "no rows"
    if complete:
        assert writer.report["q/none.n"] == 0 and math.isnan(writer.report["q/none.ci_low"])
    assert not any(key.endswith(".ci_low") for key in ReportWriter("q/").report)
