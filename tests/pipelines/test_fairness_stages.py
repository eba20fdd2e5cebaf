"""`dvc repro` of train_classifier@<dataset>-real and evaluate_fairness@<dataset> in a temporary
project: outputs, fairness.json keys, MLflow lineage, DVC metrics and plots, no-op rerun."""

import json
import runpy
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml

from fairaug.tracking import RUN_FILE

from conftest import REPO_ROOT, run, write_params

DATASET = "ham10000"
CLASSIFIER_STAGE, EVALUATE_STAGE = f"train_classifier@{DATASET}-real", f"evaluate_fairness@{DATASET}"


def run_id(path):
    return json.loads((path / RUN_FILE).read_text())["run_id"]


@pytest.mark.slow
def test_dvc_repro_evaluate_fairness_tracks_lineage_and_is_idempotent(project):
    write_params(project, train_classifier={"epochs": 2}, evaluate_fairness={"n_bootstrap": 20})
    first = run(["dvc", "repro", EVALUATE_STAGE], project)
    assert f"Running stage '{CLASSIFIER_STAGE}'" in first.stdout

    classifier = project / "outputs" / DATASET / "classifier" / "real"
    assert {p.name for p in classifier.iterdir()} == {"model.safetensors", "predictions.parquet", "metrics.json",
                                                      RUN_FILE}  # fmt: skip
    metrics_dir = project / "outputs" / DATASET / "metrics"
    fairness = json.loads((metrics_dir / "fairness.json").read_text())
    for key in ["auroc", "auroc.fst1", "auroc.fst1.ci_low", "auroc.fst1.ci_high", "auroc.fst1.n", "auroc_malignant",
                "balanced_accuracy.fst6", "kappa", "auroc_gap", "eod", "dpd", "pqd", "dpm", "eom", "fst6.small_group"]:
        assert key in fairness
    assert not any(isinstance(v, str) for v in fairness.values())
    assert not any(key.startswith("delta.") for key in fairness)  # no augmented classifier yet
    assert len(pd.read_csv(metrics_dir / "fairness_per_fst.csv")) == 42  # 7 metrics x 6 FST groups
    assert list(pd.read_csv(metrics_dir / "roc_per_fst.csv").columns) == ["fpr", *(f"fst{k}" for k in range(1, 7))]

    # MLflow: stage tags, lineage to the upstream runs, and the DVC md5 of the classifier's deps
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    prepared = project / "outputs" / DATASET / "prepared"
    trained = client.get_run(run_id(classifier))
    assert trained.info.run_name == CLASSIFIER_STAGE
    assert trained.data.tags["fairaug.stage"] == "train_classifier"
    assert trained.data.tags["fairaug.variant"] == "real"
    assert trained.data.tags["fairaug.upstream.prepare"] == run_id(prepared)
    for dep in lock[CLASSIFIER_STAGE]["deps"]:
        assert trained.data.tags[f"dvc.md5.{dep['path']}"] == dep["md5"]
    evaluated = client.search_runs([trained.info.experiment_id], "tags.`fairaug.stage` = 'evaluate_fairness'")
    assert len(evaluated) == 1
    tags = evaluated[0].data.tags
    assert tags["fairaug.upstream.train_classifier.real"] == run_id(classifier)
    assert tags["dvc.md5.outputs/ham10000/classifier/real"] == lock[EVALUATE_STAGE]["deps"][0]["md5"]
    assert evaluated[0].data.metrics["fairness/auroc"] == fairness["auroc"]

    # DVC reads the metrics and renders the plots
    (workspace,) = json.loads(run(["dvc", "metrics", "show", "--json"], project).stdout).values()
    assert workspace["data"]["outputs/ham10000/metrics/fairness.json"]["data"]["auroc"] == fairness["auroc"]
    plots = json.loads(run(["dvc", "plots", "show", "--json"], project).stdout)["data"]
    (roc,) = plots["outputs/ham10000/metrics/roc_per_fst.csv"]
    assert roc["content"]["encoding"]["strokeDash"]["scale"]["domain"] == [f"fst{k}" for k in range(1, 7)]
    (bars,) = plots["outputs/ham10000/metrics/fairness_per_fst.csv"]
    assert len(bars["content"]["data"]["values"]) == 42

    second = run(["dvc", "repro", EVALUATE_STAGE], project)
    assert "Running stage" not in second.stdout
    assert len(client.search_runs([trained.info.experiment_id])) == 3  # prepare, classifier, evaluate: once each


@pytest.mark.parametrize("synthetic_exists", [False, True])
def test_augmented_variant_fails_cleanly_until_generate_exists(tmp_path, monkeypatch, capsys, synthetic_exists):
    monkeypatch.chdir(tmp_path)
    synthetic = Path("outputs", DATASET, "synthetic")
    if synthetic_exists:
        synthetic.mkdir(parents=True)
    monkeypatch.setattr(sys, "argv", ["train_classifier.py", "--dataset", DATASET, "--variant", "augmented",
                                      "--prepared", f"outputs/{DATASET}/prepared",
                                      "--out", f"outputs/{DATASET}/classifier/augmented"])  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(REPO_ROOT / "pipelines" / "train_classifier.py"), run_name="__main__")
    assert exit_info.value.code == 2
    expected = "not implemented yet" if synthetic_exists else f"needs the generate stage ({synthetic})"
    stderr = capsys.readouterr().err
    assert stderr.count("\n") == 1 and stderr.startswith("error: --variant augmented") and expected in stderr
    assert not Path("outputs", DATASET, "classifier").exists()
