"""Gates and decisions: pure functions over metrics dicts, checked against hand computations."""

import math

import pytest

from fairaug.config.loader import merge_overlay, params_from_dict
from fairaug.config.models import Params
from fairaug.config.registry import GateConfig
from fairaug.errors import ConfigError
from fairaug.registry.gates import decide, evaluate_gate, evaluate_gates, metric_value

AT_LEAST = dict(greater_is_better=True)
AT_MOST = dict(greater_is_better=False)


def test_threshold_both_directions_and_the_reason_names_value_and_bound():
    metrics = {"quality/fst_fidelity": 0.92, "quality/kid.pixels": 0.3}
    assert evaluate_gate("f", GateConfig(metric="quality/fst_fidelity", threshold=0.9, **AT_LEAST), metrics).passed
    failed = evaluate_gate("f", GateConfig(metric="quality/fst_fidelity", threshold=0.95, **AT_LEAST), metrics)
    assert failed.failure == "threshold" and "0.92" in failed.reason and ">= 0.95" in failed.reason
    assert evaluate_gate("k", GateConfig(metric="quality/kid.pixels", threshold=0.3, **AT_MOST), metrics).passed
    assert not evaluate_gate("k", GateConfig(metric="quality/kid.pixels", threshold=0.29, **AT_MOST), metrics).passed


def test_missing_or_nan_metric_fails_with_its_recorded_reason():
    gate = GateConfig(metric="quality/fid.inception", threshold=50, **AT_MOST)
    reasons = {"quality/fid.inception.reason": "unavailable: Inception-v3 FID weights not found"}
    nan = evaluate_gate("fid", gate, {"quality/fid.inception": math.nan}, reasons)
    assert nan.failure == "missing" and "Inception-v3 FID weights not found" in nan.reason
    assert "NaN" in evaluate_gate("fid", gate, {"quality/fid.inception": math.nan}).reason
    absent = evaluate_gate("fid", gate, {})
    assert absent.failure == "missing" and "not in the metrics files" in absent.reason
    assert decide((absent,)).decision == "rejected"  # a missing metric is never a pass


def test_a_gate_may_read_an_interval_bound():
    metrics = {"fairness/augmented.auroc_gap": 0.1, "fairness/augmented.auroc_gap.ci_high": 0.3}
    gate = GateConfig(metric="fairness/augmented.auroc_gap.ci_high", threshold=0.25, **AT_MOST)
    assert evaluate_gate("gap_bound", gate, metrics).value == 0.3
    assert not evaluate_gate("gap_bound", gate, metrics).passed


def test_worst_fst_skips_small_groups_and_follows_the_direction():
    metrics = {
        "fairness/auroc.fst1": 0.99, "fairness/auroc.fst5": 0.5,  # real-only values: not the augmented ones
        "fairness/augmented.auroc.fst1": 0.95, "fairness/augmented.auroc.fst2": 0.80,
        "fairness/augmented.auroc.fst3": 0.90, "fairness/augmented.auroc.fst6": 0.40,
        "fairness/augmented.auroc.fst4": math.nan,
        "fairness/augmented.fst6.small_group": True, "fairness/augmented.fst2.small_group": False,
        "fairness/fst2.small_group": True,  # the real-only flags do not apply to the augmented values
    }
    assert metric_value(metrics, "fairness/augmented.auroc.worst_fst", True).value == 0.80  # fst6 small, fst4 NaN
    assert metric_value(metrics, "fairness/augmented.auroc.worst_fst", False).value == 0.95
    kid = {"quality/kid.pixels.fst1": 0.2, "quality/kid.pixels.fst3": 0.7, "quality/fst3.small_group": True}
    assert metric_value(kid, "quality/kid.pixels.worst_fst", False).value == 0.2
    empty = metric_value({"fairness/auroc.fst1": math.nan}, "fairness/auroc.worst_fst", True)
    assert empty.value is None and "no FST group" in empty.reason


@pytest.mark.parametrize(
    ("candidate", "champion", "options", "beats"),
    [
        (0.80, 0.80, {}, True),  # not worse than the champion is enough by default
        (0.79, 0.80, {}, False),
        (0.82, 0.80, {"min_absolute_change": 0.03}, False),  # needs 0.83
        (0.83, 0.80, {"min_absolute_change": 0.03}, True),
        (0.87, 0.80, {"min_relative_change": 0.1}, False),  # needs 0.88
        (0.88, 0.80, {"min_relative_change": 0.1}, True),
    ],
)
def test_champion_comparison_follows_metric_threshold_semantics(candidate, champion, options, beats):
    gate = GateConfig(metric="fairness/auroc", versus_champion=True, **AT_LEAST, **options)
    result = evaluate_gate("auroc", gate, {"fairness/auroc": candidate}, None, {"fairness/auroc": champion})
    assert result.passed is beats and result.champion_value == champion
    assert result.failure == (None if beats else "champion")


def test_lower_is_better_champion_comparison():
    gate = GateConfig(metric="fairness/eod", versus_champion=True, min_absolute_change=0.05, **AT_MOST)
    assert evaluate_gate("eod", gate, {"fairness/eod": 0.10}, None, {"fairness/eod": 0.15}).passed
    assert not evaluate_gate("eod", gate, {"fairness/eod": 0.11}, None, {"fairness/eod": 0.15}).passed


def test_without_another_champion_the_comparison_passes_and_says_so():
    gate = GateConfig(metric="fairness/auroc", versus_champion=True, **AT_LEAST)
    assert "no other champion" in evaluate_gate("a", gate, {"fairness/auroc": 0.5}).reason
    no_value = evaluate_gate("a", gate, {"fairness/auroc": 0.5}, None, {})
    assert no_value.passed and "champion has no value" in no_value.reason


def test_decision_rejected_challenger_promoted_and_forced():
    gates = {"fid": GateConfig(metric="q", threshold=0.5, **AT_LEAST),
             "vs": GateConfig(metric="f", versus_champion=True, **AT_LEAST)}
    promoted = decide(evaluate_gates(gates, {"q": 0.6, "f": 0.9}, None, {"f": 0.8}))
    assert promoted.decision == "promoted" and promoted.reason == "all 2 gates passed" and not promoted.forced
    challenger = decide(evaluate_gates(gates, {"q": 0.6, "f": 0.7}, None, {"f": 0.8}))
    assert challenger.decision == "challenger" and challenger.reason.startswith("vs:")
    rejected = decide(evaluate_gates(gates, {"q": 0.4, "f": 0.7}, None, {"f": 0.8}))
    assert rejected.decision == "rejected" and rejected.reason.startswith("fid:") and "vs:" not in rejected.reason
    forced = decide(evaluate_gates(gates, {"q": 0.4, "f": 0.7}, None, {"f": 0.8}), force_reason="clinician review")
    assert forced.decision == "promoted" and forced.forced
    assert "failed fid, vs" in forced.reason and "clinician review" in forced.reason


def test_gate_params_are_validated_with_the_key_named():
    base = Params().model_dump(mode="json")
    with pytest.raises(ConfigError, match="promote.gates.loose"):
        params_from_dict(merge_overlay(base, {"promote": {"gates": {"loose": {"metric": "q", "greater_is_better": True}}}}))
    with pytest.raises(ConfigError, match="gate name"):
        params_from_dict(merge_overlay(base, {"promote": {"gates": {"Bad.Name": {
            "metric": "q", "greater_is_better": True, "threshold": 1}}}}))
    params = params_from_dict(merge_overlay(base, {"promote": {"gates": {"fst_fidelity": {"threshold": 0.99}}}}))
    assert params.promote.gates["fst_fidelity"].threshold == 0.99  # one threshold, as `dvc exp run -S` sets it
    assert params.promote.registered_model("wound") == "fairaug-wound-lora"
