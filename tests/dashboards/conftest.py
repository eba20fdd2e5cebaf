"""One seeded project per session (a temporary MLflow store with pipeline-shaped runs, the workspace's
synthetic set and real images), an empty store, and helpers to run the dashboard's pages on them."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from mlflow import MlflowClient

from pipeline_store import Seeder, classifier_reports

REPO_ROOT = Path(__file__).resolve().parents[2]
APP = REPO_ROOT / "dashboards" / "app.py"
NAN = math.nan


def seed_registry(seeder: Seeder, experiment_id: str, lora_runs: list[str]) -> None:
    """fairaug-ham10000-lora: version 1 promoted then replaced by version 2 (champion); two promote runs."""
    client = seeder.client
    client.create_registered_model("fairaug-ham10000-lora")
    for number, run_id in enumerate(lora_runs, start=1):
        gate = {"gate.auroc_gap.metric": "fairness/augmented.auroc_gap", "gate.auroc_gap.value": str(0.1 - 0.02 * number),
                "gate.auroc_gap.threshold": "0.1", "gate.auroc_gap.champion_value": "0.08" if number == 2 else "",
                "gate.auroc_gap.passed": "true", "gate.auroc_gap.reason": "gap below threshold",
                "gate.kid.metric": "quality/kid.evaluator", "gate.kid.value": "0.05", "gate.kid.threshold": "0.1",
                "gate.kid.passed": "true", "gate.kid.reason": "ok"}  # fmt: skip
        tags = gate | {"fairaug.dataset": "ham10000", "fairaug.decision": "promoted",
                       "fairaug.decision_reason": f"all gates passed (v{number})", "fairaug.forced": "false",
                       "fairaug.decided_at": f"2026-11-2{number}T10:00:00", "fairaug.lora_sha256": "ab" * 32}  # fmt: skip
        if number == 1:
            tags["fairaug.replaced_by"] = "2"
        client.create_model_version("fairaug-ham10000-lora", f"runs:/{run_id}/lora", run_id, tags=tags)
        seeder.run(experiment_id, "promote", "ham10000", extra_tags={
            "fairaug.version": str(number), "fairaug.decision": "promoted", "fairaug.forced": "false",
            "fairaug.decision_reason": f"all gates passed (v{number})",
            "fairaug.champion_before": "" if number == 1 else "1", "fairaug.champion_after": str(number)})
    client.set_registered_model_alias("fairaug-ham10000-lora", "champion", "2")
    client.set_registered_model_alias("fairaug-ham10000-lora", "challenger", "1")


@pytest.fixture(scope="session")
def seeded(tmp_path_factory) -> dict:
    """The seeded project: ham10000 with two full pipeline runs sharing one prepare run (the newer one
    with artifacts and its synthetic set in the workspace) and a registry; wound with a broken
    pipeline run (prepare, a real-only classifier whose metrics are NaN or missing, evaluate_fairness
    without an augmented classifier; no LoRA, no generate, no quality)."""
    root = tmp_path_factory.mktemp("seeded-project")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    seeder = Seeder(MlflowClient(uri), root)
    ham = seeder.experiment("ham10000")
    older = seeder.pipeline(ham, "ham10000", reports=classifier_reports(0), commit="a" * 40, per_cell=4)
    newer = seeder.pipeline(ham, "ham10000", reports=classifier_reports(2), commit="b" * 40, per_cell=8,
                            prepare=older["prepare"], artifacts=True, experiment="seed-2")  # fmt: skip
    seed_registry(seeder, ham, [older["train_lora"], newer["train_lora"]])

    wound = seeder.experiment("wound")
    prepare = seeder.run(wound, "prepare", "wound", metrics={"data/n_images": 240})
    broken = {"fairness/auroc": NAN, "fairness/auroc.n": 30, "fairness/accuracy": 0.5, "fairness/fst1.n": 30,
              "fairness/accuracy.fst1": NAN, "fairness/accuracy.fst1.n": 30}  # fmt: skip
    classifier = seeder.run(wound, "train_classifier", "wound", variant="real", upstream={"prepare": prepare},
                            metrics=broken)  # fmt: skip
    seeder.run(wound, "evaluate_fairness", "wound", upstream={"train_classifier.real": classifier}, metrics=broken)
    return {"root": root, "uri": uri, "ham": ham, "older": older, "newer": newer, "wound": wound}


@pytest.fixture
def in_project(seeded, monkeypatch) -> dict:
    """The dashboard's view of the seeded project: its directory as working directory, its store."""
    monkeypatch.chdir(seeded["root"])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", seeded["uri"])
    return seeded


@pytest.fixture
def empty_store(tmp_path, monkeypatch) -> str:
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'empty.db'}"
    MlflowClient(uri).search_experiments()  # creates the tables
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri
