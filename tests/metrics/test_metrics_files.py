"""The metrics files of the evaluate stages: the headline/detail split, reading their union, and the
gates finding per-FST and worst-FST values that live in the detail files only."""

import json

from fairaug.fairness.evaluation import HEADLINE as FAIRNESS_HEADLINE
from fairaug.skin.types import FST_VALUES
from fairaug.io import reasons_path, write_json
from fairaug.metrics.stage import HEADLINE as QUALITY_HEADLINE
from fairaug.metrics_files import detail_path, read_metrics, split_headline, write_metrics
from fairaug.registry.gates import metric_value
from fairaug.registry.promote import read_evidence


def fairness_numbers() -> dict:
    """fairness.json-shaped numbers of a real-only and an augmented classifier, ~480 keys."""
    numbers = {}
    for variant in ("", "augmented.", "delta."):
        for metric in ("accuracy", "balanced_accuracy", "auroc", "auroc_malignant", "sensitivity", "specificity",
                       "kappa"):  # fmt: skip
            for group in ["", *(f".fst{k}" for k in FST_VALUES)]:
                key = f"fairness/{variant}{metric}{group}"
                numbers[key] = 0.9 - 0.01 * len(group)
                if variant != "delta.":
                    numbers |= {f"{key}.n": 30, f"{key}.ci_low": 0.8, f"{key}.ci_high": 0.95}
        for gap in ("auroc_gap", "eod", "dpd", "pqd", "dpm", "eom"):
            numbers[f"fairness/{variant}{gap}"] = 0.1
            if variant != "delta.":
                numbers |= {f"fairness/{variant}{gap}.n": 180, f"fairness/{variant}{gap}.ci_low": 0.05}
        if variant != "delta.":
            for k in FST_VALUES:
                numbers |= {f"fairness/{variant}fst{k}.n": 30, f"fairness/{variant}fst{k}.small_group": k == 6}
        for metric in ("auroc", "auroc_malignant", "balanced_accuracy"):
            numbers[f"fairness/{variant}{metric}.worst_fst"] = 0.8
    return numbers


def test_split_headline_keeps_a_value_with_its_interval_and_n_and_leaves_groups_out():
    numbers = {"quality/kid.pixels": 0.1, "quality/kid.pixels.ci_low": 0.05, "quality/kid.pixels.n": 10,
               "quality/kid.pixels.fst1": 0.2, "quality/kid.pixels.fst1.n": 3, "quality/fst1.small_group": True,
               "quality/diversity.pixels": 1.0, "quality/diversity.pixels_ratio": 0.9,
               "quality/memorization.near_copy.pixels": 0.0}  # fmt: skip
    headline, detail = split_headline(numbers, QUALITY_HEADLINE)
    assert headline == {"quality/kid.pixels": 0.1, "quality/kid.pixels.ci_low": 0.05, "quality/kid.pixels.n": 10,
                        "quality/diversity.pixels_ratio": 0.9}  # fmt: skip
    assert headline | detail == numbers and not headline.keys() & detail.keys()


def test_fairness_headline_is_a_few_dozen_of_some_500_keys():
    numbers = fairness_numbers()
    headline, detail = split_headline(numbers, FAIRNESS_HEADLINE)
    assert len(headline) <= 60 < len(numbers) == len(headline) + len(detail)
    assert not any(".fst" in key.removesuffix(".worst_fst") for key in headline)
    assert {"fairness/auroc.worst_fst", "fairness/delta.auroc_gap", "fairness/augmented.kappa.ci_high",
            "fairness/delta.balanced_accuracy.worst_fst", "fairness/augmented.eod.n"} <= headline.keys()  # fmt: skip


def test_written_files_read_back_as_the_whole_report_and_the_gates_find_per_fst_values(tmp_path):
    fairness = fairness_numbers() | {"fairness/augmented.auroc.fst2": 0.7, "fairness/augmented.auroc.fst6": 0.1}
    quality = {"quality/kid.pixels": 0.1, "quality/kid.pixels.fst1": 0.2, "quality/kid.pixels.fst3": 0.4}
    reasons = {"quality/fid.inception.reason": "unavailable: Inception-v3 FID weights not found"}
    paths = {name: tmp_path / f"{name}.json" for name in ("quality", "fairness")}
    written = write_metrics(paths["quality"], quality, reasons, QUALITY_HEADLINE)
    assert written == [paths["quality"], tmp_path / "quality_detail.json", tmp_path / "quality_reasons.json"]
    write_metrics(paths["fairness"], fairness, {}, FAIRNESS_HEADLINE)
    assert json.loads(paths["quality"].read_text()) == {"quality/kid.pixels": 0.1}
    assert json.loads(reasons_path(paths["quality"]).read_text()) == reasons
    assert read_metrics(paths["fairness"]) == fairness and read_metrics(paths["quality"]) == quality

    evidence = read_evidence(paths["quality"], paths["fairness"])
    assert evidence.reasons == reasons
    # fst6 is a small group: the worst augmented AUROC is fst2's, from fairness_detail.json
    assert metric_value(evidence.metrics, "fairness/augmented.auroc.worst_fst", True).value == 0.7
    assert metric_value(evidence.metrics, "quality/kid.pixels.worst_fst", False).value == 0.4
    assert metric_value(evidence.metrics, "fairness/auroc.fst3.ci_high", True).value == 0.95
    missing = metric_value(evidence.metrics, "quality/fid.inception", False, evidence.reasons)
    assert missing.value is None and "Inception-v3" in missing.reason


def test_a_metrics_file_without_a_detail_file_reads_as_it_is(tmp_path):
    # written before the split: every key in the one file
    path = write_json(tmp_path / "quality.json", {"quality/kid.pixels": 0.1, "quality/kid.pixels.fst1": 0.2})
    assert not detail_path(path).exists()
    assert read_metrics(path) == {"quality/kid.pixels": 0.1, "quality/kid.pixels.fst1": 0.2}
