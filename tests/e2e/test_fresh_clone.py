"""A fresh clone of the committed repository: the Makefile regenerates exactly the data data.dvc
records, `dvc repro` of the ci profile runs every stage offline, a second `dvc repro` is a no-op,
the metrics files hold DESIGN.md's names, and MLflow holds every stage's run with its lineage."""

import json

import mlflow
import pytest

from conftest import REPO_ROOT, run

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
DATASETS = ("ham10000", "wound")
PER_DATASET_STAGES = ("prepare", "base_model", "train_lora", "generate", "evaluate_quality",
                      "train_classifier_augmented", "evaluate_fairness")


def test_fresh_clone_fixtures_match_data_dvc_and_pipeline_runs(tmp_path):
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(REPO_ROOT), str(clone)], tmp_path)
    assert not (clone / "data").exists()

    fixtures = run(["make", "--no-print-directory", "fixtures"], clone)
    assert "Data and pipelines are up to date." in fixtures.stdout, fixtures.stdout
    assert run(["git", "status", "--porcelain"], clone).stdout == ""  # data.dvc untouched

    run(["fairaug", "profile", "ci"], clone)  # the documented one-command switch; tiny takes minutes
    first = run(["dvc", "repro"], clone)
    stages = [f"{stage}@{dataset}" for stage in PER_DATASET_STAGES for dataset in DATASETS]
    stages += [f"train_classifier@{dataset}-real" for dataset in DATASETS]
    for stage in stages:
        assert f"Running stage '{stage}'" in first.stdout
    second = run(["dvc", "repro"], clone)
    assert "Data and pipelines are up to date." in second.stdout
    assert "Running stage" not in second.stdout

    client = mlflow.MlflowClient(f"sqlite:///{clone / 'mlflow.db'}")
    experiments = {e.name: e.experiment_id for e in client.search_experiments()}
    for dataset in DATASETS:
        runs = {(r.data.tags["fairaug.stage"], r.data.tags.get("fairaug.variant")): r
                for r in client.search_runs([experiments[f"fairaug/{dataset}"]])}
        runs = {stage if variant is None else f"{stage}.{variant}": tracked for (stage, variant), tracked in runs.items()}
        assert set(runs) == {"prepare", "base_model", "train_lora", "generate", "evaluate_quality",
                             "train_classifier.real", "train_classifier.augmented", "evaluate_fairness"}
        assert runs["prepare"].data.tags[f"dvc.md5.data/{dataset}"].endswith(".dir")
        assert runs["prepare"].data.tags["fairaug.profile"] == "ci"
        lineage = runs["train_lora"].data.tags
        assert lineage["fairaug.upstream.prepare"] == runs["prepare"].info.run_id
        assert lineage["fairaug.upstream.base_model"] == runs["base_model"].info.run_id
        assert runs["generate"].data.tags["fairaug.upstream.train_lora"] == runs["train_lora"].info.run_id
        assert (clone / "outputs" / dataset / "models" / "lora" / "pytorch_lora_weights.safetensors").exists()
        metrics = clone / "outputs" / dataset / "metrics"
        quality = json.loads((metrics / "quality.json").read_text())
        assert {"quality/fid.domain", "quality/kid.domain", "quality/ssim", "quality/fst_fidelity"} <= set(quality)
        fairness = json.loads((metrics / "fairness.json").read_text())
        assert {"fairness/auroc", "fairness/auroc.fst1", "fairness/delta.auroc", "fairness/auroc_gap"} <= set(fairness)
    assert (clone / "mlartifacts").is_dir()
