import numpy as np
import pytest
from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    roc_auc_score,
)

from fairaug.fairness.functional import (
    accuracy,
    auroc,
    auroc_gap,
    auroc_malignant,
    balanced_accuracy,
    by_group,
    dpd,
    dpm,
    eod,
    eom,
    kappa,
    pqd,
    sensitivity,
    specificity,
)
from prediction_tables import (
    HAND_AUROC_GAP,
    HAND_DPD,
    HAND_DPM,
    HAND_EOD,
    HAND_EOM,
    HAND_PQD,
    hand_arrays,
    random_predictions,
)


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
