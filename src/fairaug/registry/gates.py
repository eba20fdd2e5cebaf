"""Promotion gates and the decision: pure functions over metrics dicts (quality.json, fairness.json and
their detail files, `fairaug.metrics_files.read_metrics`).

A gate passes when its metric is present and finite, within its fixed threshold (if any) and not
worse than the champion's value plus the required improvement (if it compares with the champion).
A missing or NaN metric fails its gate with the metric's recorded reason. The decision:

- ``promoted``: every gate passed (the LoRA becomes, or stays, the champion);
- ``challenger``: every fixed-threshold gate passed, but it does not beat the champion;
- ``rejected``: a fixed-threshold gate failed;

and a human override (``force``) promotes whatever the gates said, recorded as such.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from fairaug.config.registry import GateConfig
from fairaug.metrics_files import WORST_FST, MetricValue, finite, worst_fst

Decision = Literal["promoted", "challenger", "rejected"]


@dataclass(frozen=True)
class GateResult:
    name: str
    metric: str
    value: float | None
    threshold: float | None
    champion_value: float | None
    failure: Literal["missing", "threshold", "champion"] | None  # None: passed
    reason: str

    @property
    def passed(self) -> bool:
        return self.failure is None


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    reason: str
    gates: tuple[GateResult, ...]
    forced: bool = False


def metric_value(
    metrics: Mapping[str, object], name: str, greater_is_better: bool, reasons: Mapping[str, str] | None = None
) -> MetricValue:
    """``metrics[name]``, or for ``<metric>.worst_fst`` the worst of its per-FST values (min when
    greater is better, else max); None with the reason recorded for it (``<name>.reason``) when absent."""
    if name.endswith(WORST_FST):
        return worst_fst(metrics, name.removesuffix(WORST_FST), greater_is_better)
    value = finite(metrics.get(name))
    if value is not None:
        return MetricValue(value)
    recorded = (reasons or {}).get(f"{name}.reason") or metrics.get(f"{name}.reason")
    if recorded:
        return MetricValue(None, str(recorded))
    return MetricValue(None, "NaN" if name in metrics else "not in the metrics files")


def _not_worse(value: float, bound: float, greater_is_better: bool) -> bool:
    """At the bound passes: 0.15 - 0.05 must not fail 0.1 by a rounding error."""
    if math.isclose(value, bound, rel_tol=1e-9, abs_tol=1e-12):
        return True
    return value >= bound if greater_is_better else value <= bound


def _champion_bound(gate: GateConfig, champion: float) -> float:
    """The value a candidate must reach to beat ``champion`` (MetricThreshold's min changes)."""
    sign = 1 if gate.greater_is_better else -1
    bound = champion + sign * (gate.min_absolute_change or 0.0)
    if gate.min_relative_change:
        relative = champion + sign * gate.min_relative_change * abs(champion)
        bound = max(bound, relative) if gate.greater_is_better else min(bound, relative)
    return bound


def evaluate_gate(
    name: str,
    gate: GateConfig,
    metrics: Mapping[str, object],
    reasons: Mapping[str, str] | None = None,
    champion_metrics: Mapping[str, object] | None = None,
) -> GateResult:
    """One gate on the candidate's ``metrics``; ``champion_metrics`` None means there is no other
    champion to compare with (none yet, or the candidate is the champion)."""
    read = metric_value(metrics, gate.metric, gate.greater_is_better, reasons)

    def result(failure: str | None, reason: str, champion_value: float | None = None) -> GateResult:
        return GateResult(name, gate.metric, read.value, gate.threshold, champion_value, failure, reason)

    if read.value is None:
        return result("missing", f"{gate.metric} missing: {read.reason}")
    relation = ">=" if gate.greater_is_better else "<="
    if gate.threshold is not None and not _not_worse(read.value, gate.threshold, gate.greater_is_better):
        return result("threshold", f"{gate.metric} = {read.value:.4g}, needs {relation} {gate.threshold:g}")
    if not gate.versus_champion or champion_metrics is None:
        note = " (no other champion to compare with)" if gate.versus_champion else ""
        return result(None, f"{gate.metric} = {read.value:.4g}{note}")
    champion = metric_value(champion_metrics, gate.metric, gate.greater_is_better)
    if champion.value is None:
        return result(None, f"{gate.metric} = {read.value:.4g}; champion has no value ({champion.reason})")
    bound = _champion_bound(gate, champion.value)
    beats = _not_worse(read.value, bound, gate.greater_is_better)
    verdict = "beats" if beats else "does not beat"
    return result(None if beats else "champion", f"{gate.metric} = {read.value:.4g} {verdict} the champion's "
                  f"{champion.value:.4g} (needs {relation} {bound:.4g})", champion.value)  # fmt: skip


def evaluate_gates(
    gates: Mapping[str, GateConfig],
    metrics: Mapping[str, object],
    reasons: Mapping[str, str] | None = None,
    champion_metrics: Mapping[str, object] | None = None,
) -> tuple[GateResult, ...]:
    return tuple(evaluate_gate(name, gate, metrics, reasons, champion_metrics) for name, gate in gates.items())


def decide(results: tuple[GateResult, ...], force_reason: str | None = None) -> Verdict:
    """The decision from the gate results (module docstring); ``force_reason`` promotes regardless."""
    failed = [r for r in results if not r.passed]
    if force_reason is not None:
        gates = "all gates passed" if not failed else f"failed {', '.join(r.name for r in failed)}"
        return Verdict("promoted", f"forced by a person ({gates}): {force_reason}", results, forced=True)
    if disqualified := [r for r in failed if r.failure != "champion"]:
        return Verdict("rejected", "; ".join(f"{r.name}: {r.reason}" for r in disqualified), results)
    if failed:
        return Verdict("challenger", "; ".join(f"{r.name}: {r.reason}" for r in failed), results)
    return Verdict("promoted", f"all {len(results)} gates passed", results)
