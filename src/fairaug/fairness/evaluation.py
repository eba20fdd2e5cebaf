"""The evaluate_fairness stage, from the classifiers' predictions alone: no torch, so it starts fast.

evaluate_fairness@<dataset> writes beside ``fairness.json`` (outputs/<d>/metrics/) the numbers of
`fairness_metrics`, computed here from both classifiers' predictions.parquet with the
``evaluate_fairness`` params (bootstrap intervals, small-group rule): the real-only classifier's
report under the DESIGN names (``fairness/auroc``, ``fairness/auroc.fst5``,
``fairness/auroc.fst5.ci_low``, ...) with ``<metric>.worst_fst`` of WORST_FST_METRICS
(`with_worst_fst`), the ``fairness/fst<k>.small_group`` flags (so that a small group is reported as
such). With an augmented classifier also its report as ``fairness/augmented.<key>`` and
``fairness/delta.<metric>`` = augmented minus real-only for every metric value. Without one (run
with no --augmented) the numbers are the real-only values and no deltas (no placeholder keys); the
plain names mean the real-only classifier either way, so `dvc metrics diff` compares like with like.
MLflow metrics have the same names as the keys.
    fairness.json           DVC metrics: the headline numbers (`HEADLINE`) with their intervals and n
    fairness_detail.json    every other number: per-FST values, group sizes and flags, the other
                            metrics and gaps, their deltas (`fairaug.metrics_files`)
    fairness_reasons.json   why each missing value is missing (`fairness_reasons`)
    fairness_per_fst.csv    DVC plot (bars): fst, metric, value, ci_low, ci_high, n; ``metric`` is the
                            fairness_detail.json key (``fairness/auroc.fst5``,
                            ``fairness/augmented.auroc.fst5``), so that every
                            bar has its own label (DVC's templates cannot split a file by a column).
    roc_per_fst.csv         DVC plot (lines): ``fpr`` on a grid of 101 points and one TPR column per
                            FST group, ``fst<k>`` (``augmented_fst<k>``), empty where the group has no
                            curve. Dermoscopy: malignant (MALIGNANT_DX) vs the rest, scored by the
                            summed malignant probability, the score of ``auroc_malignant``, the
                            clinical question. Other domains (wound phases): the macro one-vs-rest
                            curve, the mean over the classes present of each class's TPR, the curve
                            of ``auroc``. A TPR at a grid FPR is the best TPR at that FPR or lower
                            (the step curve, sampled).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve

from fairaug.config import DatasetConfig, Params
from fairaug.fairness.files import PER_FST_PLOT, PREDICTIONS, ROC_PLOT
from fairaug.fairness.predictions import prediction_classes, read_predictions, score_column
from fairaug.fairness.report import delta_report, fairness_report
from fairaug.io import atomic_write_text, reasons_path, standard_json
from fairaug.labels import MALIGNANT_DX
from fairaug.metrics_files import WORST_FST, detail_path, worst_fst, write_metrics
from fairaug.names import bare_name, metric_key
from fairaug.skin.types import FST_VALUES
from fairaug.tracking import numeric_metrics, stage_run

ROC_GRID = np.linspace(0.0, 1.0, 101)
Report = dict[str, float | int | bool | str]  # fairness_report's output, reasons included
Metrics = dict[str, float | int | bool]  # fairness.json and fairness_detail.json

# per classifier, the worst FST group of the overall metrics a person compares first (greater is
# better for all)
WORST_FST_METRICS = ("auroc", "auroc_malignant", "balanced_accuracy")
# fairness.json's keys, the numbers compared first in `dvc exp show` (fairness_detail.json holds the
# rest): for the real-only and the augmented classifier and their delta, those overall values
# (auroc_malignant: dermoscopy's clinical question; kappa: the wound phases' ordinal one), their
# worst FST group, the AUROC gap and equalized odds
HEADLINE_METRICS = ("auroc", "auroc_malignant", "balanced_accuracy", "kappa", "auroc_gap", "eod",
                    *(metric + WORST_FST for metric in WORST_FST_METRICS))  # fmt: skip
HEADLINE = tuple(metric_key(name, variant) for variant in (None, "augmented", "delta") for name in HEADLINE_METRICS)


def report_options(config: DatasetConfig, classes: Sequence[str]) -> dict:
    """What the data set's domain means for the report: ordered phases, or malignant diagnoses."""
    if config.domain == "wound":
        return {"ordinal": True, "malignant_classes": None}
    return {"ordinal": False, "malignant_classes": [c for c in classes if c in MALIGNANT_DX]}


def classifier_report(params: Params, dataset: str, predictions: pd.DataFrame, classes: Sequence[str]) -> Report:
    """The report fairness.json is made of: with the ``evaluate_fairness`` params."""
    settings = params.evaluate_fairness
    return fairness_report(
        predictions,
        classes,
        **report_options(params.dataset(dataset), classes),
        min_group_size=settings.min_group_size,
        n_bootstrap=settings.n_bootstrap,
        seed=settings.seed,
        confidence=settings.confidence,
        stratify_by_fst=settings.stratify_by_fst,
    )


def variant_prefix(variant: str) -> str:
    """How the ROC plot's columns name a classifier's curves: the real-only one's plainly (``fst5``),
    others with an underscore (``augmented_fst5``: a dot in a field name means nesting to Vega-Lite)."""
    return "" if variant == "real" else f"{variant}_"


def with_worst_fst(report: Report) -> Report:
    """A classifier's report with ``fairness/<metric>.worst_fst`` for each of WORST_FST_METRICS it
    has: its worst FST group not flagged small (`worst_fst`, as the gates read it), else NaN and
    the reason."""
    worst: Report = {}
    for name in WORST_FST_METRICS:
        if (base := metric_key(name)) in report:
            read = worst_fst(report, base, greater_is_better=True)
            worst[base + WORST_FST] = math.nan if read.value is None else read.value
            if read.value is None:
                worst[f"{base}{WORST_FST}.reason"] = read.reason
    return report | worst


def fairness_metrics(reports: Mapping[str, Report]) -> Metrics:
    """The numbers of fairness.json and fairness_detail.json from the reports of the classifiers by
    variant ("real", "augmented"): their numbers and flags (reasons are strings: they go to
    `fairness_reasons`) and, with an augmented classifier, the deltas."""
    metrics = {
        key if variant == "real" else metric_key(bare_name(key), variant): value
        for variant, report in reports.items()
        for key, value in report.items()
        if not isinstance(value, str)
    }
    if "augmented" in reports:
        metrics |= delta_report(reports["augmented"], reports["real"])
    return metrics


def fairness_reasons(reports: Mapping[str, Report]) -> dict[str, str]:
    """Why values of the fairness numbers are missing (fairness_reasons.json): each classifier's
    reasons, keyed as the numbers, and for a delta the reason of the side that lacks its value."""
    reasons = {key if variant == "real" else metric_key(bare_name(key), variant): value
               for variant, report in reports.items() for key, value in report.items() if isinstance(value, str)}
    if "augmented" in reports:
        for variant, report in reports.items():
            for key, value in report.items():
                if isinstance(value, str) and key.endswith(".reason"):
                    reasons.setdefault(metric_key(f"delta.{bare_name(key)}"), f"{variant}: {value}")
    return reasons


def per_fst_table(metrics: Mapping[str, object]) -> pd.DataFrame:
    """One row per per-FST value of the fairness numbers (``fairness/<metric>.fst<k>``, also
    ``fairness/augmented.<metric>.fst<k>``; not the deltas)."""
    rows = []
    for k in FST_VALUES:
        suffix = f".fst{k}.n"  # every per-FST value has its n, also one that is undefined (left out)
        for n_key, n in metrics.items():
            key = n_key.removesuffix(".n")
            is_group_size = f"{key}.small_group" in metrics  # fairness/augmented.fst1.n: a group, no metric
            if n_key.endswith(suffix) and not key.startswith(metric_key("delta.")) and not is_group_size:
                rows.append({"fst": k, "metric": key, "value": metrics.get(key, math.nan),
                             "ci_low": metrics.get(f"{key}.ci_low"), "ci_high": metrics.get(f"{key}.ci_high"),
                             "n": n})  # fmt: skip
    return pd.DataFrame(rows, columns=["fst", "metric", "value", "ci_low", "ci_high", "n"])


def _step_tpr(positive: np.ndarray, score: np.ndarray) -> np.ndarray | None:
    """TPR on ROC_GRID of one binary problem (the best TPR at each FPR or lower); None without
    positives or negatives."""
    if positive.all() or not positive.any():
        return None
    fpr, tpr, _ = roc_curve(positive, score)
    return tpr[np.searchsorted(fpr, ROC_GRID, side="right") - 1]


def roc_tpr(predictions: pd.DataFrame, classes: Sequence[str], malignant: Sequence[str] | None) -> np.ndarray | None:
    """TPR on ROC_GRID: malignant vs rest when ``malignant`` classes are given (with benign ones
    beside them), else the macro one-vs-rest curve; None where no curve is defined."""
    labels = predictions["label"].to_numpy()
    if malignant and len(malignant) < len(classes):
        score = predictions[[score_column(c) for c in malignant]].sum(axis=1).to_numpy()
        return _step_tpr(np.isin(labels, malignant), score)
    curves = [_step_tpr(labels == c, predictions[score_column(c)].to_numpy()) for c in classes]
    curves = [curve for curve in curves if curve is not None]
    return np.mean(curves, axis=0) if curves else None


def roc_table(
    predictions: Mapping[str, pd.DataFrame], classes: Sequence[str], malignant: Sequence[str] | None
) -> pd.DataFrame:
    """``fpr`` and a TPR column per classifier (by variant) and FST group: ``fst<k>``, ``augmented_fst<k>``."""
    table = pd.DataFrame({"fpr": ROC_GRID})
    for variant, frame in predictions.items():
        for k in FST_VALUES:
            curve = roc_tpr(frame[frame["fst"] == k], classes, malignant)
            table[f"{variant_prefix(variant)}fst{k}"] = np.nan if curve is None else curve
    return table


def evaluate_fairness(
    params: Params, dataset: str, real_dir: Path, augmented_dir: Path | None, out_path: Path
) -> Metrics:
    """Write fairness.json, its detail and reasons files and the two plot CSVs beside it from the
    classifiers' predictions (see the module docstring); returns all the numbers."""
    out_path = Path(out_path)
    classifier_dirs = {"real": Path(real_dir)} | ({"augmented": Path(augmented_dir)} if augmented_dir else {})
    upstream = {f"train_classifier.{variant}": d for variant, d in classifier_dirs.items()}
    stage_params = {"evaluate_fairness": params.evaluate_fairness.model_dump(),
                    "dataset": params.dataset(dataset).model_dump()}
    plots = [out_path.parent / PER_FST_PLOT, out_path.parent / ROC_PLOT]
    with stage_run("evaluate_fairness", dataset, params, stage_params, upstream=upstream,
                   outs=[out_path, detail_path(out_path), reasons_path(out_path), *plots]):  # fmt: skip
        predictions = {variant: read_predictions(d / PREDICTIONS) for variant, d in classifier_dirs.items()}
        classes = prediction_classes(predictions["real"])
        # without NaN values, as written: an undefined metric is a reason, not a NaN in MLflow or a delta
        reports = {variant: with_worst_fst(standard_json(classifier_report(params, dataset, frame, classes)))
                   for variant, frame in predictions.items()}  # fmt: skip
        malignant = report_options(params.dataset(dataset), classes)["malignant_classes"]
        metrics = fairness_metrics(reports)
        per_fst = per_fst_table(metrics).to_csv(index=False, lineterminator="\n")
        roc = roc_table(predictions, classes, malignant).to_csv(index=False, lineterminator="\n", float_format="%.6g")
        written = write_metrics(out_path, metrics, fairness_reasons(reports), HEADLINE)
        written += [atomic_write_text(out_path.parent / PER_FST_PLOT, per_fst),
                    atomic_write_text(out_path.parent / ROC_PLOT, roc)]  # fmt: skip
        mlflow.log_metrics(numeric_metrics(metrics))
        for path in written:
            mlflow.log_artifact(str(path), artifact_path="fairness")
    return metrics
