"""`dvc repro` of train_classifier@<dataset>-real, train_classifier_augmented@<dataset> (on a
synthetic set written by hand: no diffusion) and evaluate_fairness@<dataset> in a temporary project:
outputs, fairness.json and fairness_detail.json keys, MLflow lineage, DVC metrics (the headline) and
plots, no-op rerun, what reruns when (a rerun with identical outputs reruns nothing below it; a
bootstrap param reruns only evaluate_fairness)."""

import json
import runpy
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml

from fairaug.config import load_params
from fairaug.labels import HAM10000_DX
from fairaug.metrics_files import read_metrics
from fairaug.tracking import stage_run

from conftest import REPO_ROOT, run, write_params
from synthetic_set import write_synthetic_set

DATASET = "ham10000"
CLASSIFIER_STAGE, EVALUATE_STAGE = f"train_classifier@{DATASET}-real", f"evaluate_fairness@{DATASET}"
AUGMENTED_STAGE = f"train_classifier_augmented@{DATASET}"
FST_COLUMNS = [f"fst{k}" for k in range(1, 7)]


def run_id(client, name):
    """The newest run of DVC stage ``name``."""
    return client.search_runs(client.search_experiments(filter_string="name LIKE 'fairaug/%'")[0].experiment_id,
                              f"attributes.run_name = '{name}'", order_by=["attributes.start_time DESC"])[0].info.run_id


@pytest.mark.slow
def test_dvc_repro_fairness_stages_track_lineage_and_are_idempotent(project):
    write_params(project, train_classifier={"epochs": 2}, evaluate_fairness={"n_bootstrap": 20})
    first = run(["dvc", "repro", CLASSIFIER_STAGE], project)
    assert f"Running stage '{CLASSIFIER_STAGE}'" in first.stdout
    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    first_prepare = run_id(client, f"prepare@{DATASET}")

    # prepare rerun with byte-identical outputs (no run id in them): the classifier stays up to date,
    # and its lineage names a run that wrote those bytes
    assert f"Running stage 'prepare@{DATASET}'" in run(["dvc", "repro", "-f", f"prepare@{DATASET}"], project).stdout
    assert run_id(client, f"prepare@{DATASET}") != first_prepare
    assert "Running stage" not in run(["dvc", "repro", CLASSIFIER_STAGE], project).stdout

    # the generate stage's out, written by hand (no diffusion); -s: run the stage alone, as if
    # generate had run
    synthetic = project / "outputs" / DATASET / "synthetic"
    cells = {(k, label): (3, 1) for k in range(1, 7) for label in ("mel", "nv")}
    with stage_run("generate", DATASET, load_params(project / "params.yaml"), {}, outs=[synthetic]) as generate_run:
        write_synthetic_set(synthetic, cells, list(HAM10000_DX))
    run(["dvc", "repro", "-s", AUGMENTED_STAGE], project)
    run(["dvc", "repro", "-s", EVALUATE_STAGE], project)

    classifier = project / "outputs" / DATASET / "classifier" / "real"
    augmented = project / "outputs" / DATASET / "classifier" / "augmented"
    files = {"model.safetensors", "predictions.parquet", "metrics.json"}
    assert {p.name for p in classifier.iterdir()} == files
    assert {p.name for p in augmented.iterdir()} == files | {"mix.json"}
    metrics_dir = project / "outputs" / DATASET / "metrics"
    fairness = read_metrics(metrics_dir / "fairness.json")
    reasons = json.loads((metrics_dir / "fairness_reasons.json").read_text())

    def present(key: str) -> bool:  # a value, or (left out of standard JSON) the reason it has none
        return key in fairness or bool(reasons.get(f"{key.removesuffix('.ci_low').removesuffix('.ci_high')}.reason"))

    for key in ["auroc", "auroc.fst1", "auroc.fst1.ci_low", "auroc.fst1.ci_high", "auroc.fst1.n", "auroc_malignant",
                "balanced_accuracy.fst6", "kappa", "auroc_gap", "eod", "dpd", "pqd", "dpm", "eom", "fst6.small_group"]:
        assert present(f"fairness/{key}") and present(f"fairness/augmented.{key}"), key
    for key in ["auroc", "auroc.fst5", "auroc_gap", "eod", "kappa.fst1"]:
        assert present(f"fairness/delta.{key}"), key
    assert not any(isinstance(v, str) for v in fairness.values())
    assert len(pd.read_csv(metrics_dir / "fairness_per_fst.csv")) == 2 * 42  # 2 classifiers x 7 metrics x 6 FSTs
    roc_columns = ["fpr", *FST_COLUMNS, *(f"augmented_{c}" for c in FST_COLUMNS)]
    assert list(pd.read_csv(metrics_dir / "roc_per_fst.csv").columns) == roc_columns

    # MLflow: stage tags, lineage to the upstream runs, and the DVC md5 of the classifier's deps
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    trained = client.get_run(run_id(client, CLASSIFIER_STAGE))
    assert trained.info.run_name == CLASSIFIER_STAGE
    assert trained.data.tags["fairaug.stage"] == "train_classifier"
    assert trained.data.tags["fairaug.variant"] == "real"
    assert trained.data.tags["fairaug.upstream.prepare"] == first_prepare
    for dep in lock[CLASSIFIER_STAGE]["deps"]:
        assert trained.data.tags[f"dvc.md5.{dep['path']}"] == dep["md5"]
    mixed = client.get_run(run_id(client, AUGMENTED_STAGE))
    assert mixed.info.run_name == AUGMENTED_STAGE and mixed.data.tags["fairaug.variant"] == "augmented"
    # the newest of the two prepare runs that wrote the prepared set as it is
    assert mixed.data.tags["fairaug.upstream.prepare"] == run_id(client, f"prepare@{DATASET}")
    assert mixed.data.tags["fairaug.upstream.generate"] == generate_run.run_id
    for dep in lock[AUGMENTED_STAGE]["deps"]:
        assert mixed.data.tags[f"dvc.md5.{dep['path']}"] == dep["md5"]
    evaluated = client.search_runs([trained.info.experiment_id], "tags.`fairaug.stage` = 'evaluate_fairness'")
    assert len(evaluated) == 1
    tags = evaluated[0].data.tags
    assert tags["fairaug.upstream.train_classifier.real"] == trained.info.run_id
    assert tags["fairaug.upstream.train_classifier.augmented"] == mixed.info.run_id
    evaluate_deps = {dep["path"]: dep["md5"] for dep in lock[EVALUATE_STAGE]["deps"]}
    for variant in ("real", "augmented"):
        path = f"outputs/ham10000/classifier/{variant}"
        assert tags[f"dvc.md5.{path}"] == evaluate_deps[path]
    for key in ("fairness/auroc", "fairness/augmented.auroc.fst1", "fairness/delta.auroc"):
        assert evaluated[0].data.metrics[key] == fairness[key]

    # DVC reads the metrics, the headline only (some 60 columns of ~480), and renders the plots;
    # the detail file is shown when asked for
    (workspace,) = json.loads(run(["dvc", "metrics", "show", "--json"], project).stdout).values()
    shown = workspace["data"]["outputs/ham10000/metrics/fairness.json"]["data"]
    assert shown["fairness/auroc"] == fairness["fairness/auroc"]
    assert shown["fairness/delta.auroc"] == fairness["fairness/delta.auroc"]
    assert len(shown) <= 60 and "fairness/augmented.auroc.fst1" not in shown
    detail = "outputs/ham10000/metrics/fairness_detail.json"
    assert detail not in workspace["data"]
    (workspace,) = json.loads(run(["dvc", "metrics", "show", "--json", detail], project).stdout).values()
    assert workspace["data"][detail]["data"] | shown == fairness
    plots = json.loads(run(["dvc", "plots", "show", "--json"], project).stdout)["data"]
    (roc,) = plots["outputs/ham10000/metrics/roc_per_fst.csv"]
    assert sorted(roc["content"]["encoding"]["strokeDash"]["scale"]["domain"]) == sorted(roc_columns[1:])
    (bars,) = plots["outputs/ham10000/metrics/fairness_per_fst.csv"]
    assert len(bars["content"]["data"]["values"]) == 2 * 42

    # a rerun is a no-op; a generate param retrains neither classifier by itself, a mix param only
    # the augmented one
    for stage in (CLASSIFIER_STAGE, AUGMENTED_STAGE, EVALUATE_STAGE):
        assert "Running stage" not in run(["dvc", "repro", "-s", stage], project).stdout
    assert len(client.search_runs([trained.info.experiment_id])) == 6  # 2 prepare, generate, 2 classifiers, evaluate

    def changed(stage):
        return bool(json.loads(run(["dvc", "status", "--json", stage], project).stdout))

    write_params(project, evaluate_fairness={"n_bootstrap": 30})  # intervals: evaluate_fairness only
    assert not changed(CLASSIFIER_STAGE) and not changed(AUGMENTED_STAGE) and changed(EVALUATE_STAGE)
    write_params(project, generate={"steps": 5})
    assert not changed(CLASSIFIER_STAGE) and not changed(AUGMENTED_STAGE)
    write_params(project, mix={"synthetic_ratio": {"fst6": 0.5}})
    assert not changed(CLASSIFIER_STAGE) and changed(AUGMENTED_STAGE)


@pytest.mark.parametrize("synthetic_exists", [False, True])
def test_augmented_variant_fails_cleanly_without_a_finished_synthetic_set(tmp_path, monkeypatch, capsys,
                                                                          synthetic_exists):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((REPO_ROOT / "params.yaml").read_text())
    synthetic = Path("outputs", DATASET, "synthetic")
    if synthetic_exists:
        synthetic.mkdir(parents=True)  # e.g. a killed generate stage: no manifest yet
    monkeypatch.setattr(sys, "argv", ["train_classifier.py", "--dataset", DATASET, "--variant", "augmented",
                                      "--prepared", f"outputs/{DATASET}/prepared",
                                      "--out", f"outputs/{DATASET}/classifier/augmented"])  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(REPO_ROOT / "pipelines" / "train_classifier.py"), run_name="__main__")
    assert exit_info.value.code == 2
    if synthetic_exists:
        expected = f"error: {synthetic / 'manifest.parquet'}: missing: not a finished synthetic set"
    else:
        expected = f"error: {synthetic}: no synthetic set: the generate stage has not run"
    stderr = capsys.readouterr().err
    assert stderr.count("\n") == 1 and stderr.startswith(expected)
    assert not Path("outputs", DATASET, "classifier").exists()
    assert not Path("mlflow.db").exists()  # no run opened
