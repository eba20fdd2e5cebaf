import math

import numpy as np
import pytest
from fairlearn.metrics import MetricFrame
from sklearn.metrics import accuracy_score, balanced_accuracy_score, cohen_kappa_score, roc_auc_score

from fairaug.errors import DataError
from fairaug.fairness.report import delta_report, fairness_report
from prediction_tables import (
    CLASSES,
    HAND_AUROC_GAP,
    HAND_DPD,
    HAND_DPM,
    HAND_EOD,
    HAND_EOM,
    HAND_PQD,
    hand_frame,
    predictions_frame,
    random_predictions,
)


# --------------------------------------------------------------------------------------------------
# The report


def test_report_per_fst_values_match_metricframe():
    y, scores, fst = random_predictions(900, 4, seed=7, signal=1.5)
    classes = ["w", "x", "y", "z"]
    frame = predictions_frame([classes[i] for i in y], fst, scores, classes)
    report = fairness_report(frame, classes, ordinal=True, malignant_classes={"x", "z"}, n_bootstrap=0)
    predicted = scores.argmax(axis=1)
    by_label = MetricFrame(
        metrics={
            "accuracy": accuracy_score,
            "balanced_accuracy": balanced_accuracy_score,
            "kappa": lambda t, p: cohen_kappa_score(t, p, weights="quadratic"),
        },
        y_true=y,
        y_pred=predicted,
        sensitive_features=fst,
    )
    by_score = MetricFrame(
        metrics={
            "auroc": lambda t, s: roc_auc_score(t, s, multi_class="ovr", labels=[0, 1, 2, 3]),
            "auroc_malignant": lambda t, s: roc_auc_score(np.isin(t, [1, 3]), s[:, 1] + s[:, 3]),
        },
        y_true=y,
        y_pred=scores,
        sensitive_features=fst,
    )
    assert all(len(np.unique(y[fst == k])) == 4 for k in range(1, 7))  # sklearn's OvR needs every class
    for frame_ in (by_label, by_score):
        for name, overall in frame_.overall.items():
            assert report[f"fairness/{name}"] == pytest.approx(overall)
            for k, value in frame_.by_group[name].items():
                assert report[f"fairness/{name}.fst{k}"] == pytest.approx(value)
                assert report[f"fairness/{name}.fst{k}.n"] == int(np.sum(fst == k))


def test_report_has_every_design_key():
    y, scores, fst = random_predictions(300, 3, seed=8)
    frame = predictions_frame([CLASSES[i] for i in y], fst, scores, CLASSES)
    report = fairness_report(frame, CLASSES, malignant_classes={"a"}, n_bootstrap=20)
    sample = ["accuracy", "balanced_accuracy", "auroc", "auroc_malignant", "sensitivity", "specificity", "kappa"]
    for name in sample + [f"{m}.fst{k}" for m in sample for k in range(1, 7)] + ["auroc_gap", "pqd", "dpm", "eom"]:
        key = f"fairness/{name}"  # DESIGN.md's metric names
        assert {key, f"{key}.n", f"{key}.ci_low", f"{key}.ci_high"} <= report.keys(), name
    for name in ("eod", "dpd"):
        assert {f"fairness/{name}", f"fairness/{name}.n"} <= report.keys()
        assert f"fairness/{name}.ci_low" not in report
    assert all(key.startswith("fairness/") for key in report)
    for k in range(1, 7):
        assert isinstance(report[f"fairness/fst{k}.small_group"], bool)
    without_malignant = fairness_report(frame, CLASSES, n_bootstrap=0)
    assert not any(key.startswith("fairness/auroc_malignant") for key in without_malignant)
    assert not any(key.endswith(".ci_low") for key in without_malignant)


def test_small_and_absent_groups_are_flagged_and_left_out_of_the_gaps():
    frame = hand_frame(extra_rows=[("a", 6, (0.1, 0.1, 0.8))])  # one FST VI image, misclassified
    report = fairness_report(frame, CLASSES, min_group_size=3, n_bootstrap=50)
    assert report["fairness/fst6.n"] == 1 and report["fairness/fst6.small_group"] is True
    assert report["fairness/fst1.n"] == 6 and report["fairness/fst1.small_group"] is False
    assert report["fairness/fst3.n"] == 0 and report["fairness/fst3.small_group"] is True
    # a small group keeps its own values...
    assert report["fairness/accuracy.fst6"] == 0.0
    assert report["fairness/accuracy.fst6.n"] == 1
    # ...undefined ones are NaN with the reason, for every FST...
    assert math.isnan(report["fairness/auroc.fst6"])
    assert "only class 0" in report["fairness/auroc.fst6.reason"]
    assert math.isnan(report["fairness/accuracy.fst3"]) and report["fairness/accuracy.fst3.reason"] == "no rows"
    assert math.isnan(report["fairness/accuracy.fst3.ci_low"])
    # ...and the gaps compare FST I and II only
    assert report["fairness/pqd"] == pytest.approx(HAND_PQD)
    assert report["fairness/dpm"] == pytest.approx(HAND_DPM)
    assert report["fairness/eom"] == pytest.approx(HAND_EOM)
    assert report["fairness/auroc_gap"] == pytest.approx(HAND_AUROC_GAP)
    assert report["fairness/eod"] == pytest.approx(HAND_EOD)
    assert report["fairness/dpd"] == pytest.approx(HAND_DPD)
    assert report["fairness/pqd.n"] == 12
    assert report["fairness/accuracy"] == pytest.approx(8 / 13)  # overall metrics use every row


def test_gaps_undefined_without_two_large_groups():
    report = fairness_report(hand_frame(), CLASSES, min_group_size=7, n_bootstrap=10)
    for name in ("auroc_gap", "eod", "dpd", "pqd", "dpm", "eom"):
        assert math.isnan(report[f"fairness/{name}"])
        assert report[f"fairness/{name}.reason"] == "fewer than two FST groups have at least 7 rows"
    assert math.isnan(report["fairness/pqd.ci_high"])


def test_unknown_fst_counts_overall_and_in_no_group_or_gap():
    y, scores, fst = random_predictions(400, 3, seed=2)
    unknown = np.random.default_rng(3).random(400) < 0.2
    classes = ["a", "b", "c"]
    frame = predictions_frame([classes[i] for i in y], np.where(unknown, 0, fst), scores, classes)
    report = fairness_report(frame, classes, n_bootstrap=0)
    known = fairness_report(frame[~unknown], classes, n_bootstrap=0)
    assert report["fairness/fst_unknown.n"] == unknown.sum() and known["fairness/fst_unknown.n"] == 0
    assert report["fairness/accuracy.n"] == 400
    assert report["fairness/accuracy"] == pytest.approx(accuracy_score(y, scores.argmax(axis=1)))
    for k in range(1, 7):
        assert report[f"fairness/auroc.fst{k}"] == known[f"fairness/auroc.fst{k}"]
    for gap in ("auroc_gap", "eod", "dpd", "pqd", "dpm", "eom"):
        assert report[f"fairness/{gap}"] == known[f"fairness/{gap}"]


def test_kappa_undefined_is_nan_with_reason():
    frame = hand_frame()
    frame = frame[frame["label"] == "a"].assign(score_a=1.0)  # every label and prediction is a
    report = fairness_report(frame, CLASSES, n_bootstrap=0)
    assert math.isnan(report["fairness/kappa"])
    assert "chance agreement" in report["fairness/kappa.reason"]


def test_report_rejects_bad_rows():
    frame = hand_frame()
    frame.loc[4, "fst"] = 9
    with pytest.raises(DataError, match=r"row 5, column 'fst': FST must be an integer from 1 to 6 \(0: unknown\), got 9"):
        fairness_report(frame, CLASSES)


def test_delta_report():
    real = {"auroc": 0.8, "auroc.n": 10, "auroc.ci_low": 0.7, "auroc.fst5": 0.6, "fst5.small_group": True,
            "kappa": float("nan"), "kappa.reason": "x", "eod": 0.3}  # fmt: skip
    augmented = {"auroc": 0.85, "auroc.n": 12, "auroc.ci_low": 0.75, "auroc.fst5": 0.7, "fst5.small_group": False,
                 "kappa": 0.5, "kappa.reason": "y", "pqd": 0.9}  # fmt: skip
    real, augmented = ({f"fairness/{k}": v for k, v in r.items()} for r in (real, augmented))
    delta = delta_report(augmented, real)
    assert delta.keys() == {"fairness/delta.auroc", "fairness/delta.auroc.fst5", "fairness/delta.kappa"}
    assert delta["fairness/delta.auroc"] == pytest.approx(0.05)
    assert delta["fairness/delta.auroc.fst5"] == pytest.approx(0.1)
    assert math.isnan(delta["fairness/delta.kappa"])




def test_bootstrap_ci_contains_the_estimate_and_has_binomial_width():
    y, scores, fst = random_predictions(2000, 3, seed=9)
    frame = predictions_frame([CLASSES[i] for i in y], fst, scores, CLASSES)
    report = fairness_report(frame, CLASSES, n_bootstrap=300, stratify_by_fst=False)
    for name in ("accuracy", "auroc", "kappa", "sensitivity", "specificity", "accuracy.fst2", "auroc.fst1"):
        assert report[f"fairness/{name}.ci_low"] < report[f"fairness/{name}"] < report[f"fairness/{name}.ci_high"], name
    p = report["fairness/accuracy"]
    binomial_width = 2 * 1.96 * math.sqrt(p * (1 - p) / len(frame))
    width = report["fairness/accuracy.ci_high"] - report["fairness/accuracy.ci_low"]
    assert width == pytest.approx(binomial_width, rel=0.25)


def test_bootstrap_is_seeded():
    y, scores, fst = random_predictions(200, 3, seed=11)
    frame = predictions_frame([CLASSES[i] for i in y], fst, scores, CLASSES)
    first = fairness_report(frame, CLASSES, n_bootstrap=50, seed=1)
    assert fairness_report(frame, CLASSES, n_bootstrap=50, seed=1) == pytest.approx(first, nan_ok=True)
    other = fairness_report(frame, CLASSES, n_bootstrap=50, seed=2)
    assert other["fairness/auroc"] == first["fairness/auroc"]
    assert other["fairness/auroc.ci_low"] != first["fairness/auroc.ci_low"]
