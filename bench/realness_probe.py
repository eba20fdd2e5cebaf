"""The realness probe (`realness_auc`: a cross-validated logistic regression telling real from
synthetic features) as evaluate_quality runs it, with BLAS limited to one thread, vs the same
scikit-learn call at BLAS's default threads, side by side in one process on the quality benches'
features (1000 real, 150 synthetic images; the evaluator's and the pixels' features). Value: ours
over plain time, summed over both extractors (below 1: the thread limit saves that share)."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _quality import real_synthetic_extractors  # noqa: E402
from _report import report  # noqa: E402
from _smoke import sizes  # noqa: E402

from fairaug.metrics.features import extract  # noqa: E402
from fairaug.metrics.functional import realness_auc  # noqa: E402

N_REAL, REAL_SIZE, N_SYNTHETIC, SIZE, REPEATS = sizes((1000, 128, 150, 64, 3), (40, 64, 30, 64, 1))
FOLDS = 5


def plain_probe(real: np.ndarray, fake: np.ndarray) -> float:
    """`realness_auc`'s probe without the thread limit."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features, is_fake = np.concatenate([real, fake]), np.r_[np.zeros(len(real)), np.ones(len(fake))]
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    scores = cross_val_predict(probe, features, is_fake, method="decision_function",
                               cv=StratifiedKFold(FOLDS, shuffle=True, random_state=0))  # fmt: skip
    return float(roc_auc_score(is_fake, scores))


def timed(function, *args) -> tuple[float, float]:
    start = time.perf_counter()
    value = function(*args)
    return time.perf_counter() - start, value


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        real, synthetic, extractors = real_synthetic_extractors(Path(tmp), N_REAL, REAL_SIZE, N_SYNTHETIC, SIZE)
        _, real_features = extract(real, extractors, 64)
        _, synthetic_features = extract(synthetic, extractors, 64)
    ours_total = plain_total = 0.0
    for name in real_features:
        pair = real_features[name].features, synthetic_features[name].features
        ours, plain = [], []
        for _ in range(REPEATS):
            seconds, ours_auc = timed(lambda r, f: realness_auc(r, f, FOLDS, 0), *pair)
            ours.append(seconds)
            seconds, plain_auc = timed(plain_probe, *pair)
            plain.append(seconds)
            assert abs(ours_auc - plain_auc) < 1e-6, f"{name}: the thread limit changed the AUROC"
        print(f"{name} ({pair[0].shape[1]} features): ours {min(ours):.2f} s, plain {min(plain):.2f} s")
        ours_total, plain_total = ours_total + min(ours), plain_total + min(plain)
    ratio = ours_total / plain_total
    report("realness_probe", ratio, "ours/plain time", "<= 0.50")


if __name__ == "__main__":
    main()
