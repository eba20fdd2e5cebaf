"""The promote stage, also `fairaug promote` on the LoRA in outputs/: register the LoRA in the MLflow
model registry (once per LoRA), judge it by the gates of params `promote` over quality.json and
fairness.json (with their detail files beside them), move the `champion` / `challenger` aliases
(`fairaug.registry.promote`) and write promotion.json (DVC metrics, `promotion_metrics`)."""

from __future__ import annotations

from pathlib import Path

import mlflow

from fairaug.config import Params
from fairaug.io import write_json
from fairaug.registry.model import lora_candidate
from fairaug.registry.promote import (
    STAGE,
    Outcome,
    connect,
    decide_and_record,
    find_version,
    judge,
    read_evidence,
    register,
)
from fairaug.tracking import numeric_metrics, stage_run
from fairaug.tracking.server import tracking_errors

PROMOTION = "promotion.json"  # the stage's out in outputs/<d>/metrics (dvc.yaml names the path)


def promotion_metrics(outcome: Outcome) -> dict[str, float | int]:
    """promotion.json: numbers only (gate values, thresholds, verdicts as 0/1, version, promoted)."""
    metrics: dict[str, float | int] = {}
    for result in outcome.verdict.gates:
        for key, value in (("value", result.value), ("threshold", result.threshold),
                           ("champion_value", result.champion_value)):  # fmt: skip
            if value is not None:
                metrics[f"promotion/{result.name}.{key}"] = value
        metrics[f"promotion/{result.name}.passed"] = int(result.passed)
    metrics["promotion/promoted"] = int(outcome.verdict.decision == "promoted")
    for key, value in (("version", outcome.version), ("champion_version", outcome.champion_after)):
        if value is not None:
            metrics[f"promotion/{key}"] = value
    return metrics


def promote(params: Params, dataset: str, quality_path: Path, fairness_path: Path, lora_dir: Path, base_dir: Path,
            out_path: Path | None = None, *, dry_run: bool = False, force_reason: str | None = None,
            root: Path | None = None) -> Outcome:
    """The promote stage and `fairaug promote`: register the LoRA (once), judge it by the gates and
    record the decision; ``dry_run`` judges only, writing nothing."""
    root = (root or Path.cwd()).resolve()
    evidence = read_evidence(quality_path, fairness_path)
    name = params.promote.registered_model(dataset)
    client, uri = connect(root)
    with tracking_errors(uri):
        if dry_run:
            candidate = lora_candidate(params, dataset, lora_dir, base_dir)
            existing = find_version(client, name, candidate.digest)
            number = int(existing.version) if existing else None
            verdict, champion = judge(client, params, name, number, evidence, force_reason)
            before = int(champion.version) if champion else None
            return Outcome(number, verdict, before, before, registered=False)
        upstream = {"train_lora": Path(lora_dir), "base_model": Path(base_dir)}
        with stage_run(STAGE, dataset, params, {"promote": params.promote.model_dump()}, root=root,
                       upstream=upstream, outs=[out_path] if out_path is not None else []) as run:  # fmt: skip
            version, registered = register(client, params, dataset, lora_dir, base_dir, run.run_id,
                                           run.experiment_id)  # fmt: skip
            outcome = decide_and_record(client, params, name, version, evidence, force_reason, run.run_id,
                                        registered)  # fmt: skip
            metrics = promotion_metrics(outcome)
            if out_path is not None:
                write_json(out_path, metrics)
            mlflow.log_metrics(numeric_metrics(metrics))
    return outcome
