"""Prediction tables for the fairness tests: a 12-row table whose gaps are worked out by hand, and
random predictions skewed like dermatology data."""

import numpy as np
import pandas as pd

from fairaug.fairness.predictions import score_column


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
