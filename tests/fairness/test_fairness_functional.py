import math

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import MetricFrame, demographic_parity_difference, equalized_odds_difference
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    roc_auc_score,
)

from fairaug.errors import DataError
from fairaug.fairness.metrics import (
    accuracy,
    auroc,
    auroc_gap,
    auroc_malignant,
    balanced_accuracy,
    bootstrap_ci,
    bootstrap_indices,
    by_group,
    delta_report,
    dpd,
    dpm,
    eod,
    eom,
    fairness_report,
    kappa,
    percentile_interval,
    pqd,
    read_predictions,
    score_column,
    sensitivity,
    specificity,
    write_predictions,
)

CLASSES = ["a", "b", "c"]
# 12 rows, 3 classes, FST 1 and 2 (6 rows each); columns: label, fst, scores (argmax = prediction).
# FST 1 predicts a a b c c c (one b called c); FST 2 predicts a b b a c b (three errors).
HAND_TABLE = [
    ("a", 1, (0.8, 0.1, 0.1)),
    ("a", 1, (0.7, 0.2, 0.1)),
    ("b", 1, (0.1, 0.8, 0.1)),
    ("b", 1, (0.1, 0.4, 0.5)),
    ("c", 1, (0.1, 0.2, 0.7)),
    ("c", 1, (0.2, 0.2, 0.6)),
    ("a", 2, (0.6, 0.3, 0.1)),
    ("a", 2, (0.3, 0.6, 0.1)),
    ("b", 2, (0.1, 0.7, 0.2)),
    ("b", 2, (0.5, 0.4, 0.1)),
    ("c", 2, (0.1, 0.1, 0.8)),
    ("c", 2, (0.2, 0.5, 0.3)),
]
# By hand from the table:
#   accuracy: FST 1 5/6, FST 2 3/6                                   -> PQD = 0.5 / (5/6) = 0.6
#   predicted-class rates a, b, c: FST 1 2/6 1/6 3/6, FST 2 2/6 3/6 1/6 -> DPM = (1 + 1/3 + 1/3) / 3
#   recall a, b, c: FST 1 1, 1/2, 1; FST 2 1/2, 1/2, 1/2                 -> EOM = (1/2 + 1 + 1/2) / 3
#   one-vs-rest AUROC (pairs positive > negative of 4 each): FST 1 all 1;
#     FST 2 a 7/8, b 6/8, c 8/8 -> 0.875                               -> AUROC gap = 0.125
#   one-vs-rest TPR/FPR gaps: a 1/2, 1/4; b 0, 1/2; c 1/2, 1/4            -> EOD = 1/2
#   predicted-class rate gaps: a 0, b 1/3, c 1/3                        -> DPD = 1/3
HAND_PQD, HAND_DPM, HAND_EOM, HAND_AUROC_GAP, HAND_EOD, HAND_DPD = 0.6, 5 / 9, 2 / 3, 0.125, 0.5, 1 / 3


def hand_arrays():
    y = np.array([CLASSES.index(label) for label, _, _ in HAND_TABLE])
    fst = np.array([fst for _, fst, _ in HAND_TABLE])
    scores = np.array([s for _, _, s in HAND_TABLE])
    return y, scores, fst


def predictions_frame(labels, fst, scores, classes) -> pd.DataFrame:
    frame = pd.DataFrame({"label": labels, "fst": fst})
    for i, label in enumerate(classes):
        frame[score_column(label)] = np.asarray(scores)[:, i]
    return frame


def hand_frame(extra_rows=()) -> pd.DataFrame:
    rows = [*HAND_TABLE, *extra_rows]
    return predictions_frame([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], CLASSES)


def random_predictions(n: int, n_classes: int, seed: int, signal: float = 1.0):
    """Labels, softmax scores that favour the true class, and FSTs skewed like dermatology data."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    logits = rng.normal(size=(n, n_classes))
    logits[np.arange(n), y] += signal
    scores = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    fst = rng.choice([1, 2, 3, 4, 5, 6], p=[0.22, 0.30, 0.24, 0.12, 0.08, 0.04], size=n)
    return y, scores, fst


# --------------------------------------------------------------------------------------------------
# Per-sample metrics against scikit-learn


@pytest.mark.parametrize("n_classes", [3, 5])
def test_sample_metrics_match_sklearn(n_classes):
    y, scores, _ = random_predictions(300, n_classes, seed=n_classes)
    predicted = scores.argmax(axis=1)
    labels = list(range(n_classes))
    assert accuracy(y, scores) == pytest.approx(accuracy_score(y, predicted))
    assert balanced_accuracy(y, scores) == pytest.approx(balanced_accuracy_score(y, predicted))
    assert auroc(y, scores) == pytest.approx(roc_auc_score(y, scores, multi_class="ovr", average="macro"))
    assert kappa(y, scores) == pytest.approx(cohen_kappa_score(y, predicted))
    assert kappa(y, scores, ordinal=True) == pytest.approx(cohen_kappa_score(y, predicted, weights="quadratic"))

    cm = confusion_matrix(y, predicted, labels=labels)
    tp = np.diag(cm)
    fn = cm.sum(axis=1) - tp
    fp = cm.sum(axis=0) - tp
    tn = cm.sum() - tp - fn - fp
    assert sensitivity(y, scores) == pytest.approx(np.mean(tp / (tp + fn)))
    assert specificity(y, scores) == pytest.approx(np.mean(tn / (tn + fp)))


def test_binary_auroc_uses_the_second_class():
    y, scores, _ = random_predictions(200, 2, seed=3)
    assert auroc(y, scores) == pytest.approx(roc_auc_score(y, scores[:, 1]))


def test_auroc_with_ties_matches_sklearn():
    y = np.array([0, 1, 2, 0, 1, 2, 1, 0])
    scores = np.array([[0.5, 0.25, 0.25]] * 4 + [[0.25, 0.5, 0.25]] * 4)  # many tied scores
    assert auroc(y, scores) == pytest.approx(roc_auc_score(y, scores, multi_class="ovr"))


def test_auroc_malignant_sums_malignant_probabilities():
    y, scores, _ = random_predictions(300, 5, seed=4)
    malignant = [0, 3]
    expected = roc_auc_score(np.isin(y, malignant), scores[:, 0] + scores[:, 3])
    assert auroc_malignant(y, scores, malignant) == pytest.approx(expected)


def test_auroc_over_the_classes_present():
    y, scores, _ = hand_arrays()
    rows = y != 2  # class c absent: macro over a and b only
    expected = np.mean([roc_auc_score(y[rows] == c, scores[rows, c]) for c in (0, 1)])
    assert auroc(y[rows], scores[rows]) == pytest.approx(expected)


# --------------------------------------------------------------------------------------------------
# Gaps: by hand and against fairlearn


def test_gaps_by_hand():
    y, scores, fst = hand_arrays()
    assert by_group(accuracy, y, scores, fst) == {1: pytest.approx(5 / 6), 2: pytest.approx(0.5)}
    assert by_group(auroc, y, scores, fst) == {1: pytest.approx(1.0), 2: pytest.approx(0.875)}
    assert pqd(y, scores, fst) == pytest.approx(HAND_PQD)
    assert dpm(y, scores, fst) == pytest.approx(HAND_DPM)
    assert eom(y, scores, fst) == pytest.approx(HAND_EOM)
    assert auroc_gap(y, scores, fst) == pytest.approx(HAND_AUROC_GAP)
    assert eod(y, scores, fst) == pytest.approx(HAND_EOD)
    assert dpd(y, scores, fst) == pytest.approx(HAND_DPD)


def test_multiclass_eod_and_dpd_are_the_worst_one_vs_rest_fairlearn_values():
    y, scores, fst = random_predictions(1200, 4, seed=5)
    predicted = scores.argmax(axis=1)
    per_class_eod = [equalized_odds_difference(y == c, predicted == c, sensitive_features=fst) for c in range(4)]
    per_class_dpd = [demographic_parity_difference(y == c, predicted == c, sensitive_features=fst) for c in range(4)]
    assert eod(y, scores, fst) == pytest.approx(max(per_class_eod))
    assert dpd(y, scores, fst) == pytest.approx(max(per_class_dpd))


def test_binary_eod_and_dpd_are_fairlearn():
    y, scores, fst = random_predictions(600, 2, seed=6)
    predicted = scores.argmax(axis=1)
    assert eod(y, scores, fst) == pytest.approx(equalized_odds_difference(y, predicted, sensitive_features=fst))
    assert dpd(y, scores, fst) == pytest.approx(demographic_parity_difference(y, predicted, sensitive_features=fst))


def test_eod_leaves_out_groups_without_positives_of_a_class():
    y, scores, fst = hand_arrays()
    no_c_in_fst2 = ~((fst == 2) & (y == 2))
    y, scores, fst = y[no_c_in_fst2], scores[no_c_in_fst2], fst[no_c_in_fst2]
    predicted = scores.argmax(axis=1)
    comparable = [equalized_odds_difference(y == c, predicted == c, sensitive_features=fst) for c in (0, 1)]
    assert eod(y, scores, fst) == pytest.approx(max(comparable))


def test_gaps_need_two_groups():
    y, scores, fst = hand_arrays()
    one_group = fst == 1
    for gap in (auroc_gap, pqd, dpm, eom, eod, dpd):
        with pytest.raises(ValueError, match="two groups"):
            gap(y[one_group], scores[one_group], fst[one_group])


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


# --------------------------------------------------------------------------------------------------
# Bootstrap


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


def test_bootstrap_ci_narrows_with_more_rows():
    widths = []
    for n in (100, 400, 1600):
        y, scores, _ = random_predictions(n, 3, seed=10)
        low, high = bootstrap_ci(lambda rows: accuracy(y[rows], scores[rows]), bootstrap_indices(n, 300, seed=0))
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2]
    assert widths[0] / widths[2] == pytest.approx(4, rel=0.35)  # width ~ 1/sqrt(n)


def test_bootstrap_is_seeded():
    y, scores, fst = random_predictions(200, 3, seed=11)
    frame = predictions_frame([CLASSES[i] for i in y], fst, scores, CLASSES)
    first = fairness_report(frame, CLASSES, n_bootstrap=50, seed=1)
    assert fairness_report(frame, CLASSES, n_bootstrap=50, seed=1) == pytest.approx(first, nan_ok=True)
    other = fairness_report(frame, CLASSES, n_bootstrap=50, seed=2)
    assert other["fairness/auroc"] == first["fairness/auroc"]
    assert other["fairness/auroc.ci_low"] != first["fairness/auroc.ci_low"]


def test_percentile_interval_leaves_out_undefined_resamples():
    values = np.random.default_rng(12).normal(size=500)
    values[::7] = np.nan  # undefined resamples
    expected = np.nanpercentile(values, [5, 95])
    assert percentile_interval(list(values), confidence=0.9) == pytest.approx(tuple(expected), rel=1e-12)
    assert np.isnan(percentile_interval([np.nan, np.nan])).all()


def test_stratified_resamples_keep_the_group_sizes():
    strata = np.array([1, 1, 1, 2, 2, 5, 5, 5, 5, 6])
    indices = bootstrap_indices(len(strata), 100, seed=0, strata=strata)
    assert indices.shape == (100, 10)
    assert (strata[indices] == strata).all()
    assert len(np.unique(indices[:, :3])) == 3  # rows are drawn with replacement within the stratum


# --------------------------------------------------------------------------------------------------
# Prediction files


def test_read_predictions_round_trip(tmp_path):
    frame = hand_frame().assign(path=[f"img{i}.jpg" for i in range(12)])
    write_predictions(frame, tmp_path / "predictions.parquet")
    frame.to_csv(tmp_path / "predictions.csv", index=False)
    for name in ("predictions.parquet", "predictions.csv"):
        read = read_predictions(tmp_path / name)
        pd.testing.assert_frame_equal(read, frame, check_dtype=False)
        assert read["fst"].dtype == np.int64


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda f: f.drop(columns="fst"), r"predictions.csv, column 'fst': missing column"),
        (lambda f: f.drop(columns="label"), r"predictions.csv, column 'label': missing column"),
        (lambda f: f.drop(columns=["score_b", "score_c"]), r"predictions.csv: needs a score_<label> column"),
        (lambda f: f.drop(columns="score_c"), r"row 6, column 'label': label must be one of a, b, got 'c'"),
        (lambda f: f.assign(fst=f["fst"].where(f.index != 3, 7)), r"row 5, column 'fst': FST .* got 7"),
        (lambda f: f.assign(fst=f["fst"].astype(str).where(f.index != 0, "V")), r"row 2, column 'fst': .* got 'V'"),
        (lambda f: f.assign(fst=f["fst"].where(f.index != 1, 2.5)), r"row 3, column 'fst': .* got 2.5"),
        (lambda f: f.assign(score_b=f["score_b"].where(f.index != 2)), r"row 4, column 'score_b': .* finite"),
    ],
)
def test_read_predictions_errors_name_file_row_and_column(tmp_path, edit, message):
    path = tmp_path / "predictions.csv"
    edit(hand_frame()).to_csv(path, index=False)
    with pytest.raises(DataError, match=message):
        read_predictions(path)


def test_read_predictions_parquet_rows_count_from_one(tmp_path):
    frame = hand_frame()
    frame.loc[0, "fst"] = -1
    frame.to_parquet(tmp_path / "p.parquet")
    with pytest.raises(DataError, match=r"p.parquet, row 1, column 'fst'"):
        read_predictions(tmp_path / "p.parquet")


def test_read_predictions_file_errors(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_predictions(tmp_path / "missing.parquet")
    (tmp_path / "p.json").write_text("{}")
    with pytest.raises(DataError, match=r"\.parquet or \.csv"):
        read_predictions(tmp_path / "p.json")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="not a readable parquet file"):
        read_predictions(tmp_path / "broken.parquet")
