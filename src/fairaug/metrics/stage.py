"""The evaluate_quality stage: the quality report of outputs/<d>/synthetic against the real
reference split, written beside fairness.json (outputs/<d>/metrics/):

    quality.json            DVC metrics: the headline numbers (`HEADLINE`) with their intervals and n
    quality_detail.json     every other number of the report: per-FST and per-label values, group
                            sizes, ``small_group`` flags, secondary metrics (`fairaug.metrics_files`)
    quality_reasons.json    ``<name>.reason`` of every unavailable metric, e.g. why Inception-v3's are
                            missing (no weights offline)

An unavailable metric is left out of the numbers (standard JSON, numbers only for DVC).

Besides `quality_report`'s keys, the generate filter's own statistics from the synthetic manifest:
``quality/filter.acceptance[.fst<k>]`` (share of sampled images that passed the filter) and
``quality/filter.below_bar[.fst<k>]`` (share of kept images kept below the confidence bar to fill
their cell). Classifier-based metrics use the evaluator (train_evaluator@<d>), never the
real-only classifier that the filter used; label_confidence_real and label_confidence_ratio read
it on the prepared test split, which it never trained on (train split; val for early stopping).
Logs every number as an MLflow metric under the same name, the three files as artifacts.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd

from fairaug.config import Params
from fairaug.config.generation import FilterConfig
from fairaug.data.files import MANIFEST
from fairaug.fairness.files import WEIGHTS
from fairaug.io import reasons_path
from fairaug.metrics.extractors import build_extractors
from fairaug.metrics.features import FeatureCache, manifest_set, synthetic_set
from fairaug.metrics.perceptual import load_lpips
from fairaug.metrics.report import Report, quality_report
from fairaug.metrics_files import detail_path, write_metrics
from fairaug.names import QUALITY_NAMESPACE
from fairaug.tracking import numeric_metrics, stage_run

# quality.json's keys, the numbers compared first in `dvc exp show` (quality_detail.json holds the
# rest): per extractor its distances, IS and realness probe; the per-image and label numbers
# overall; the filter's rates. '*' is one part of a name, an extractor or the LPIPS net, never a
# group (kid.pixels, not kid.pixels.fst1). Memorization is the SSIM one, extractor-free; the gated
# near_copy.<e> value is in promotion.json.
HEADLINE = tuple(QUALITY_NAMESPACE + name for name in (
    "fid.*", "kid.*", "is.*", "realness_auc.*", "diversity.*_ratio", "ssim", "lpips.*",
    "memorization.ssim_near_copy", "fst_fidelity", "fst_fidelity.abstention", "label_confidence.*", "label_accuracy.*",
    "label_confidence_ratio.*", "filter.acceptance", "filter.below_bar",
))  # fmt: skip
HELD_OUT_SPLIT = "test"  # the evaluator's unseen images


def split_report(report: Report) -> tuple[dict[str, float | int | bool], dict[str, str]]:
    """(numbers and flags, reasons): DVC metrics must be numeric."""
    numbers = {key: value for key, value in report.items() if not isinstance(value, str)}
    return numbers, {key: value for key, value in report.items() if isinstance(value, str)}


def filter_statistics(manifest: pd.DataFrame, config: FilterConfig) -> dict[str, float]:
    """How the generate filter decided, from the synthetic manifest (every sampled image, kept or
    not, with its confidence and SSIM to the nearest real image) and the filter params."""
    passed = (manifest["ssim_to_real"] < config.max_ssim_to_real) & ~(manifest["confidence"] < config.min_confidence)
    below = manifest["kept"] & (manifest["confidence"] < config.min_confidence)
    stats = {}
    groups = [("", manifest.index)] + [(f".fst{k}", manifest.index[manifest["fst"] == k])
                                       for k in sorted(manifest["fst"].unique())]  # fmt: skip
    for suffix, rows in groups:
        stats[f"{QUALITY_NAMESPACE}filter.acceptance{suffix}"] = float(passed[rows].mean())
        if kept := int(manifest.loc[rows, "kept"].sum()):
            stats[f"{QUALITY_NAMESPACE}filter.below_bar{suffix}"] = float(below[rows].sum() / kept)
    return stats


def evaluate_quality(
    params: Params, dataset: str, prepared_dir: Path, synthetic_dir: Path, evaluator_dir: Path, out_path: Path
) -> Report:
    """Write quality.json, quality_detail.json and quality_reasons.json (module docstring); returns
    the full report."""
    config = params.evaluate_quality
    out_path = Path(out_path)
    upstream = {"prepare": Path(prepared_dir), "generate": Path(synthetic_dir),
                "train_classifier.evaluator": Path(evaluator_dir)}
    stage_params = {"evaluate_quality": config.model_dump(), "dataset": params.dataset(dataset).model_dump()}
    synthetic = synthetic_set(synthetic_dir)  # a clean error (no manifest, nothing kept) before any run exists
    outs = [out_path, detail_path(out_path), reasons_path(out_path)]
    with stage_run("evaluate_quality", dataset, params, stage_params, upstream=upstream, outs=outs):
        manifest = pd.read_parquet(Path(prepared_dir) / MANIFEST)
        root = params.dataset(dataset).root
        real = manifest_set(manifest, root, config.reference_split)
        held_out = manifest_set(manifest, root, HELD_OUT_SPLIT) if (manifest["split"] == HELD_OUT_SPLIT).any() else None
        extractors = build_extractors(config.extractors, evaluator=Path(evaluator_dir) / WEIGHTS,
                                      inception_weights=config.inception_weights, device=config.device,
                                      required=config.require_weights)  # fmt: skip
        sampled = pd.read_parquet(Path(synthetic_dir) / MANIFEST)  # every image generate sampled, kept or not
        report = quality_report(real, synthetic, extractors, config, FeatureCache(config.cache_dir),
                                load_lpips(config.lpips_net, config.device, config.lpips_weights, config.require_weights),
                                sampled["ssim_to_real"], held_out)  # fmt: skip
        report |= filter_statistics(sampled, params.generate.filter)
        written = write_metrics(out_path, *split_report(report), HEADLINE)
        mlflow.log_metrics(numeric_metrics(report))
        for path in written:
            mlflow.log_artifact(str(path), artifact_path="quality")
    return report
