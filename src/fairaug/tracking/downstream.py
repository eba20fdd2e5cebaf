"""Find the stage runs that followed a given one, by their lineage tags (``fairaug.upstream.*``)."""

from __future__ import annotations

from mlflow import MlflowClient
from mlflow.entities import Run

# (key, stage, upstream key): each run found by the run of its upstream key, in pipeline order
DOWNSTREAM_OF_TRAIN_LORA = (
    ("generate", "generate", "train_lora"),
    ("evaluate_quality", "evaluate_quality", "generate"),
    ("train_classifier.augmented", "train_classifier", "generate"),
    ("evaluate_fairness", "evaluate_fairness", "train_classifier.augmented"),
)


def latest_run(client: MlflowClient, experiment_id: str, stage: str, tags: dict[str, str] | None = None) -> Run | None:
    """The newest finished run of ``stage`` whose tags have these values."""
    clauses = [f"tags.`fairaug.stage` = '{stage}'", "attributes.status = 'FINISHED'"]
    clauses += [f"tags.`{key}` = '{value}'" for key, value in (tags or {}).items()]
    runs = client.search_runs([experiment_id], " and ".join(clauses), max_results=1, order_by=["start_time DESC"])
    return runs[0] if runs else None


def downstream_run_ids(client: MlflowClient, experiment_id: str, train_lora_run_id: str) -> dict[str, str]:
    """Run ids of the generate, evaluation and augmented-classifier runs that followed a LoRA's
    training run (newest of each), keyed as their upstream tags name them; absent where none ran."""
    ids = {"train_lora": train_lora_run_id}
    for key, stage, upstream in DOWNSTREAM_OF_TRAIN_LORA:
        if upstream in ids and (run := latest_run(client, experiment_id, stage, {f"fairaug.upstream.{upstream}": ids[upstream]})):
            ids[key] = run.info.run_id
    return ids
