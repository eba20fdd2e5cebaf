"""Params of the promote stage: the gates a LoRA must pass to become the registry's champion.

Each gate reads one metric of quality.json, fairness.json or the detail files beside them (any key,
e.g. ``fairness/auroc_gap.ci_high``, or ``<metric>.worst_fst``: its worst FST group that is not
flagged small) and compares it like `mlflow.models.MetricThreshold`: with a fixed ``threshold``,
and/or with the current champion's value (``versus_champion``, optionally requiring an improvement of
``min_absolute_change`` / ``min_relative_change``). Gates are a mapping by name so that one threshold is a DVC param of its own:
``dvc exp run -S promote.gates.fst_fidelity.threshold=0.99``.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from fairaug.config.base import StrictModel

GATE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class GateConfig(StrictModel):
    metric: str = Field(description="key in quality[_detail].json / fairness[_detail].json; suffix .worst_fst: the worst FST group")
    greater_is_better: bool = Field(description="true: higher values pass; false: lower values pass")
    threshold: float | None = Field(None, description="fixed bound (>= when greater_is_better, else <=); null: none")
    versus_champion: bool = Field(False, description="also compare with the current champion's value of the metric")
    min_absolute_change: float | None = Field(
        None, ge=0, description="versus_champion: improvement over the champion required (absolute)"
    )
    min_relative_change: float | None = Field(
        None, ge=0, description="versus_champion: improvement over the champion required (share of its value)"
    )

    @model_validator(mode="after")
    def _compares_something(self) -> GateConfig:
        if self.threshold is None and not self.versus_champion:
            raise ValueError("a gate needs a threshold, versus_champion: true, or both")
        if not self.versus_champion and (self.min_absolute_change is not None or self.min_relative_change is not None):
            raise ValueError("min_absolute_change / min_relative_change need versus_champion: true")
        return self


def _default_gates() -> dict[str, GateConfig]:
    return {
        "memorization": GateConfig(
            metric="quality/memorization.near_copy.pixels", greater_is_better=False, threshold=0.05
        ),
        "fst_fidelity": GateConfig(metric="quality/fst_fidelity", greater_is_better=True, threshold=0.9),
        "kernel_distance": GateConfig(metric="quality/kid.pixels", greater_is_better=False, threshold=0.5),
        "auroc_gap": GateConfig(metric="fairness/delta.auroc_gap", greater_is_better=False, threshold=0.05),
        "balanced_accuracy": GateConfig(
            metric="fairness/delta.balanced_accuracy", greater_is_better=True, threshold=-0.05
        ),
        "worst_fst_auroc": GateConfig(
            metric="fairness/augmented.auroc.worst_fst", greater_is_better=True, versus_champion=True
        ),
    }


class PromoteConfig(StrictModel):
    model_name: str = Field("fairaug-{dataset}-lora", description="registered model name; {dataset} is filled in")
    gates: dict[str, GateConfig] = Field(
        default_factory=_default_gates, description="gates by name: all must pass for the LoRA to become champion"
    )

    @field_validator("gates")
    @classmethod
    def _gate_names(cls, gates: dict[str, GateConfig]) -> dict[str, GateConfig]:
        for name in gates:
            if not GATE_NAME.match(name):
                raise ValueError(f"gate name '{name}': lower-case letters, digits and _ only (it becomes a tag key)")
        return gates

    def registered_model(self, dataset: str) -> str:
        return self.model_name.format(dataset=dataset)
