"""Tables of pipeline runs for reading and plotting: per-FST values with interval, n and small-group
flag; metrics side by side with deltas; the params that differ.

Metric names are DESIGN.md's: a per-FST value ``<name>.fst<k>`` has ``.ci_low``, ``.ci_high`` and
``.n`` beside it. A value a run lacks, or logged as NaN, is NaN here and the pages say so; nothing
is dropped silently.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd

from fairaug.config.fairness import FairnessConfig
from fairaug.config.quality import EvaluateQualityConfig
from fairaug.names import QUALITY_NAMESPACE, metric_key
from fairaug.skin.types import FST_VALUES
from fairaug.tracking.pipelines import Pipeline

NAN = float("nan")
FAIRNESS_STAGE, QUALITY_STAGE = "evaluate_fairness", "evaluate_quality"
VARIANTS = ("real", "augmented")
FST_COLUMNS = ["fst", "value", "ci_low", "ci_high", "n", "group_size", "small_group"]
GAPS = ("auroc_gap", "eod", "pqd", "dpm", "eom", "dpd")


def fst_key(name: str, k: int) -> str:
    return f"{name}.fst{k}"


def fst_table(metrics: Mapping[str, float], name: str, group_sizes: Mapping[int, float], min_group_size: int) -> pd.DataFrame:
    """The per-FST values of metric ``name`` (``fairness/auroc``, ``quality/kid.evaluator``).

    Args:
        metrics: a run's metrics.
        name: the metric without its ``.fst<k>`` suffix.
        group_sizes: images per FST group that decide the small-group flag (NaN: unknown).
        min_group_size: groups below this size are small.

    Returns:
        One row per FST 1-6: value, ci_low, ci_high, n (NaN where not logged), group_size and
        small_group (True also when the size is unknown: an unknown size is no reason to trust a value).
    """
    rows = []
    for k in FST_VALUES:
        key = fst_key(name, k)
        size = group_sizes.get(k, NAN)
        rows.append({"fst": k, "value": metrics.get(key, NAN), "ci_low": metrics.get(f"{key}.ci_low", NAN),
                     "ci_high": metrics.get(f"{key}.ci_high", NAN), "n": metrics.get(f"{key}.n", NAN),
                     "group_size": size, "small_group": math.isnan(size) or size < min_group_size})  # fmt: skip
    return pd.DataFrame(rows, columns=FST_COLUMNS)


def per_fst_names(metrics: Mapping[str, float], prefix: str) -> list[str]:
    """The metrics under ``prefix`` that have per-FST values (those with a ``.fst<k>.n``), sorted;
    the deltas are left out (they have no interval of their own)."""
    suffixes = tuple(f".fst{k}.n" for k in FST_VALUES)
    names = {key[: -len(".fstK.n")] for key in metrics if key.startswith(prefix) and key.endswith(suffixes)}
    return sorted(name for name in names if not name.startswith(metric_key("delta.")))


def _int_param(pipeline: Pipeline, roles: Sequence[str], name: str, default: int) -> int:
    for run_role in roles:
        run = pipeline.run(run_role)
        if run is not None and name in run.data.params:
            return int(run.data.params[name])
    return default


def fairness_source(pipeline: Pipeline, variant: str) -> tuple[Mapping[str, float], str | None]:
    """(metrics, variant prefix) that hold a classifier variant's fairness report: evaluate_fairness
    names the augmented one ``fairness/augmented.<name>``; without that run, the classifier's own run
    holds its report under the plain names. Empty metrics when neither ran."""
    evaluation = pipeline.run(FAIRNESS_STAGE)
    if evaluation is not None:
        return evaluation.data.metrics, None if variant == "real" else variant
    classifier = pipeline.run(f"train_classifier.{variant}")
    return (classifier.data.metrics if classifier is not None else {}), None


def fairness_fst_table(pipeline: Pipeline, variant: str, name: str) -> pd.DataFrame:
    """Per-FST table of fairness metric ``name`` (``auroc``) for a classifier variant; the
    small-group flag uses the test rows per FST and the evaluate_fairness.min_group_size the
    pipeline ran with (logged by evaluate_fairness; by the classifiers in runs made before it was)."""
    metrics, prefix = fairness_source(pipeline, variant)
    sizes = {k: metrics.get(metric_key(f"fst{k}.n", prefix), NAN) for k in FST_VALUES}
    min_size = _int_param(pipeline, [FAIRNESS_STAGE, f"train_classifier.{variant}", "train_classifier.real"],
                          "evaluate_fairness.min_group_size", FairnessConfig().min_group_size)  # fmt: skip
    return fst_table(metrics, metric_key(name, prefix), sizes, min_size)


def quality_fst_table(pipeline: Pipeline, name: str) -> pd.DataFrame:
    """Per-FST table of quality metric ``name`` (``quality/kid.evaluator``); a group is small when the
    real or the synthetic side has fewer images than evaluate_quality.min_group_size."""
    run = pipeline.run(QUALITY_STAGE)
    metrics = run.data.metrics if run is not None else {}
    sizes = {k: min(metrics.get(f"{QUALITY_NAMESPACE}n_real.fst{k}", NAN),
                    metrics.get(f"{QUALITY_NAMESPACE}n_synthetic.fst{k}", NAN)) for k in FST_VALUES}  # fmt: skip
    min_size = _int_param(pipeline, [QUALITY_STAGE], "evaluate_quality.min_group_size",
                          EvaluateQualityConfig().min_group_size)
    return fst_table(metrics, name, sizes, min_size)


def compare_fst(pipelines: Sequence[Pipeline], name: str, kind: str) -> pd.DataFrame:
    """Long table for a per-FST bar chart across pipeline runs: ``pipeline``, ``variant`` (real-only /
    augmented for fairness; synthetic for quality), ``series`` and the `fst_table` columns.

    Args:
        pipelines: the pipeline runs compared.
        name: a fairness metric (``auroc``) when ``kind`` is "fairness", else a quality metric name.
        kind: "fairness" or "quality".
    """
    frames = []
    for pipeline in pipelines:
        if kind == "fairness":
            tables = {variant: fairness_fst_table(pipeline, variant, name) for variant in VARIANTS}
        else:
            tables = {"synthetic": quality_fst_table(pipeline, name)}
        for variant, table in tables.items():
            if table["value"].notna().any():
                frames.append(table.assign(pipeline=pipeline.label, variant=variant,
                                           series=f"{pipeline.label} · {variant}"))  # fmt: skip
    columns = ["pipeline", "variant", "series", *FST_COLUMNS]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def gap_table(pipeline: Pipeline) -> pd.DataFrame:
    """The gaps across FST groups, real-only and augmented with intervals, and the delta."""
    rows = []
    for gap in GAPS:
        row = {"gap": gap}
        for variant in VARIANTS:
            metrics, prefix = fairness_source(pipeline, variant)
            key = metric_key(gap, prefix)
            row |= {variant: metrics.get(key, NAN), f"{variant}.ci_low": metrics.get(f"{key}.ci_low", NAN),
                    f"{variant}.ci_high": metrics.get(f"{key}.ci_high", NAN), f"{variant}.n": metrics.get(f"{key}.n", NAN)}
        row["delta"] = row["augmented"] - row["real"]
        rows.append(row)
    return pd.DataFrame(rows)


def metrics_frame(pipelines: Sequence[Pipeline], roles: Sequence[str]) -> pd.DataFrame:
    """The metrics of the runs of ``roles``, one column per pipeline run (its label), one row per
    (role, metric); NaN where a pipeline run lacks the stage or the metric."""
    columns = {}
    for pipeline in pipelines:
        values = {(run_role, key): value for run_role in roles if (run := pipeline.run(run_role)) is not None
                  for key, value in run.data.metrics.items()}  # fmt: skip
        columns[pipeline.label] = pd.Series(values, dtype=float)
    frame = pd.DataFrame(columns)
    if frame.empty:
        return pd.DataFrame(columns=[p.label for p in pipelines])
    frame.index.names = ["stage", "metric"]
    return frame.sort_index()


def with_deltas(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a ``Δ <column>`` column for each column after the first: its value minus the
    first column's (the baseline)."""
    baseline = frame.columns[0] if len(frame.columns) else None
    deltas = {f"Δ {column}": frame[column] - frame[baseline] for column in frame.columns[1:]}
    return frame.assign(**deltas) if deltas else frame


def headline(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of a `metrics_frame` that are headline numbers: no per-FST/per-label values, no
    interval bounds or counts (the per-FST charts show those)."""
    metric = frame.index.get_level_values("metric")
    detail = metric.str.contains(r"\.(?:fst\d|label_)") | metric.str.endswith((".ci_low", ".ci_high", ".n"))
    return frame[~detail]


def params_frame(pipelines: Sequence[Pipeline]) -> pd.DataFrame:
    """Every param of each pipeline run's stage runs, one column per pipeline run. A param logged by
    several of its stage runs takes the value of the one started last (the newest view of params.yaml)."""
    columns = {}
    for pipeline in pipelines:
        values: dict[str, str] = {}
        for run in sorted(pipeline.runs.values(), key=lambda run: run.info.start_time):
            values |= run.data.params
        columns[pipeline.label] = pd.Series(values, dtype=object)
    return pd.DataFrame(columns).sort_index()


def differences_only(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows whose values are not all the same (a param missing in one run counts as a difference)."""
    return frame[frame.astype(str).nunique(axis=1) > 1]
