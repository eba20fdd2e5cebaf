"""A fresh clone of the committed repository: the Makefile regenerates exactly the data data.dvc
records, `fairaug repro` (as `make demo`) of the ci profile runs every stage offline with the data
sets side by side, a `dvc repro` afterwards is a no-op, the metrics files hold DESIGN.md's names,
MLflow holds every stage's run with its lineage, the registry holds each data set's LoRA with its
decision, `dvc exp run -S` of one gate reruns `promote` alone and flips the decision, and the
champion loads in a fresh process from the tracking store alone.

All of it against a team-like setup (scripts/services.py): an MLflow server on PostgreSQL with its
artifacts in an S3 bucket (moto), and the DVC remote on the same object store: `dvc push`, then a
second clone's `dvc pull` and `dvc repro` is a no-op."""

import json
import os
import re
import shutil
import subprocess
import sys

import boto3
import mlflow
import pandas as pd
import pytest

from fairaug.metrics_files import detail_path, read_metrics

from conftest import REPO_ROOT, run

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
DATASETS = ("ham10000", "wound")
PER_DATASET_STAGES = ("prepare", "train_lora", "generate", "evaluate_quality", "train_evaluator",
                      "train_classifier_augmented", "evaluate_fairness", "promote")
LOAD_CHAMPION = """
import io, sys
import mlflow
from PIL import Image
images = mlflow.pyfunc.load_model(sys.argv[1]).predict(["fitzpatrick skin type v, photo of healthy skin"],
                                                       params={"num_inference_steps": 2})
print("image", *Image.open(io.BytesIO(images[0])).size)
"""


GIT_USER = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]


def markdown_table(text: str) -> pd.DataFrame:
    """The first Markdown table in ``text``, every cell a string."""
    block = next(block for block in text.split("\n\n") if block.lstrip().startswith("|"))
    cells = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in block.strip().splitlines()]
    return pd.DataFrame(cells[2:], columns=cells[0])


def test_fresh_clone_fixtures_match_data_dvc_and_pipeline_runs(tmp_path, services, monkeypatch):
    from fairaug_services import configure_dvc_remote

    for name, value in services.env.items():  # every command below: the server and the bucket
        monkeypatch.setenv(name, value)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(REPO_ROOT), str(clone)], tmp_path)
    assert not (clone / "data").exists()
    configure_dvc_remote(clone, services)  # .dvc/config.local, not committed

    fixtures = run(["make", "--no-print-directory", "fixtures"], clone)
    assert "Data and pipelines are up to date." in fixtures.stdout, fixtures.stdout
    assert run(["git", "status", "--porcelain"], clone).stdout == ""  # data.dvc untouched

    run(["fairaug", "profile", "ci"], clone)  # the documented one-command switch; tiny takes minutes
    first = run(["fairaug", "repro", "--jobs", "2"], clone)  # as `make demo`: the data sets side by side
    # base_model alone (its output as is), every other stage beside another (its lines prefixed)
    assert re.search("^Running stage 'base_model'", first.stdout, re.MULTILINE), first.stdout
    for dataset in DATASETS:
        for stage in [*PER_DATASET_STAGES, "train_classifier"]:
            name = f"{stage}@{dataset}-real" if stage == "train_classifier" else f"{stage}@{dataset}"
            assert f"[{dataset}] Running stage '{name}'" in first.stdout
    second = run(["dvc", "repro"], clone)  # dvc.lock, written by both data sets' processes, is complete
    assert "Data and pipelines are up to date." in second.stdout
    assert "Running stage" not in second.stdout

    # where the label is lost (docs/label_fidelity.md): every link of the chain, and a pretraining change
    label_fidelity = [sys.executable, "scripts/label_fidelity.py", "--per-cell", "1"]
    chain = markdown_table(run([*label_fidelity, "--dataset", "wound"], clone).stdout)
    assert list(chain["link"][:3]) == ["real test images", "their VAE reconstructions",
                                       "base alone: generate params (dpmsolver++, 4 steps, guidance 5.0)"]
    assert len(chain) == 8 and all(link.startswith("base + LoRA: ") for link in chain["link"][3:])
    assert chain["label_confidence"].astype(float).between(0, 1).all()
    changed = run([*label_fidelity, "--pretrain", "unet_steps=3", "vae_steps=2", "tiny.latent_channels=2",
                   "--seeds", "0", "1"], clone).stdout
    assert "### base: unet_steps=3, vae_steps=2, tiny.latent_channels=2" in changed
    per_seed = markdown_table(changed)  # the first table: one row per seed and data set
    seeds_and_datasets = zip(per_seed["seed"], per_seed["dataset"], strict=True)
    assert sorted(seeds_and_datasets) == [(s, d) for s in ("0", "1") for d in DATASETS]
    assert per_seed["label_confidence"].astype(float).between(0, 1).all()
    assert per_seed["reconstructions"].astype(float).between(0, 1).all()
    assert (per_seed["pretrain minutes"].astype(float) > 0).all()

    # the outputs travel through the DVC remote: a second clone pulls them and has nothing to run
    run([*GIT_USER, "commit", "-qam", "ci profile, its dvc.lock"], clone)
    assert "pushed" in run(["dvc", "push"], clone).stdout
    other = tmp_path / "other"
    run(["git", "clone", "-q", str(clone), str(other)], tmp_path)
    configure_dvc_remote(other, services)
    run(["dvc", "pull"], other)
    pulled = run(["dvc", "repro"], other)
    assert "Data and pipelines are up to date." in pulled.stdout and "Running stage" not in pulled.stdout
    assert run(["git", "status", "--porcelain"], other).stdout == ""

    client = mlflow.MlflowClient(services.tracking_uri)
    experiments = {e.name: e.experiment_id for e in client.search_experiments()}
    for dataset in DATASETS:
        runs = {(r.data.tags["fairaug.stage"], r.data.tags.get("fairaug.variant")): r
                for r in client.search_runs([experiments[f"fairaug/{dataset}"]])}
        runs = {stage if variant is None else f"{stage}.{variant}": tracked for (stage, variant), tracked in runs.items()}
        assert set(runs) == {"prepare", "base_model", "train_lora", "generate", "evaluate_quality",
                             "train_classifier.real", "train_classifier.evaluator", "train_classifier.augmented",
                             "evaluate_fairness", "promote"}
        # quality is graded by the evaluator, never by the classifier that filtered the images
        graded_by = runs["evaluate_quality"].data.tags["fairaug.upstream.train_classifier.evaluator"]
        assert graded_by == runs["train_classifier.evaluator"].info.run_id
        assert runs["generate"].data.tags["fairaug.upstream.train_classifier"] == runs["train_classifier.real"].info.run_id
        assert runs["prepare"].data.tags[f"dvc.md5.data/{dataset}"].endswith(".dir")
        assert runs["prepare"].data.tags["fairaug.profile"] == "ci"
        lineage = runs["train_lora"].data.tags
        assert lineage["fairaug.upstream.prepare"] == runs["prepare"].info.run_id
        assert lineage["fairaug.upstream.base_model"] == runs["base_model"].info.run_id
        assert runs["base_model"].data.tags["fairaug.upstream.prepare"] == runs["prepare"].info.run_id
        assert runs["generate"].data.tags["fairaug.upstream.train_lora"] == runs["train_lora"].info.run_id
        assert (clone / "outputs" / dataset / "models" / "lora" / "pytorch_lora_weights.safetensors").exists()
        metrics = clone / "outputs" / dataset / "metrics"
        for name, expected in (("quality", {"quality/fid.evaluator", "quality/kid.evaluator", "quality/ssim",
                                            "quality/fst_fidelity", "quality/label_confidence.evaluator",
                                            "quality/realness_auc.pixels", "quality/filter.acceptance"}),
                               ("fairness", {"fairness/auroc", "fairness/auroc.fst1", "fairness/delta.auroc",
                                             "fairness/auroc_gap"})):  # fmt: skip
            path = metrics / f"{name}.json"
            values, reasons = read_metrics(path), json.loads((metrics / f"{name}_reasons.json").read_text())
            # standard JSON; a missing value has its reason beside it
            assert "NaN" not in path.read_text() + detail_path(path).read_text()
            for key in expected:
                assert key in values or reasons[f"{key}.reason"], key
            # the DVC metrics are the headline, the per-FST values are in the detail file beside it
            headline = json.loads(path.read_text())
            assert len(headline) <= 60 and not any(".fst" in key for key in headline)
        quality = read_metrics(metrics / "quality.json")
        assert 0 <= quality["quality/fst_fidelity"] <= 1 and 0 <= quality["quality/ssim"] <= 1
        assert 0 <= quality["quality/label_confidence.evaluator"] <= 1
        assert 0 <= quality["quality/realness_auc.pixels"] <= 1 and 0 <= quality["quality/filter.acceptance"] <= 1
    # nothing in the embedded store: runs are in the server, their artifacts in the bucket
    assert not (clone / "mlflow.db").exists() and not (clone / "mlartifacts").exists()
    s3 = boto3.client("s3", endpoint_url=services.s3_endpoint)
    keys = [obj["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=services.bucket, Prefix="mlflow/")
            for obj in page.get("Contents", [])]  # fmt: skip
    lora_runs = client.search_runs([experiments["fairaug/wound"]], "tags.`fairaug.stage` = 'train_lora'")
    assert any(key.startswith(f"mlflow/{experiments['fairaug/wound']}/{lora_runs[0].info.run_id}/") for key in keys)

    # the registry: one version per data set with its decision; the ci profile's gates pass it
    for dataset in DATASETS:
        (version,) = client.search_model_versions(f"name = 'fairaug-{dataset}-lora'")
        assert version.tags["fairaug.decision"] == "promoted", version.tags
        assert version.tags["fairaug.run.train_lora"] and version.tags["fairaug.run.evaluate_fairness"]
        promotion = json.loads((clone / "outputs" / dataset / "metrics" / "promotion.json").read_text())
        assert promotion["promotion/promoted"] == 1 and promotion["promotion/version"] == 1

    # one gate made impossible: only promote reruns, the same version is now rejected
    flipped = run(["dvc", "exp", "run", "-S", "promote.gates.fst_fidelity.threshold=1.5"], clone)
    assert [line for line in flipped.stdout.splitlines() if line.startswith("Running stage")] == [
        f"Running stage 'promote@{dataset}':" for dataset in DATASETS]
    for dataset in DATASETS:
        (version,) = client.search_model_versions(f"name = 'fairaug-{dataset}-lora'")
        assert version.tags["fairaug.decision"] == "rejected" and "fst_fidelity" in version.tags["fairaug.decision_reason"]
    history = run(["fairaug", "registry", "history", "--dataset", "ham10000"], clone).stdout
    assert history.index("promoted") < history.index("rejected")
    assert "Running stage" not in run(["dvc", "repro"], clone).stdout

    # the gate back: promoted again; the champion loads with only MLFLOW_TRACKING_URI, outputs/ gone
    run(["dvc", "exp", "run", "-S", "promote.gates.fst_fidelity.threshold=0.0"], clone)
    shutil.move(clone / "outputs", tmp_path / "outputs-elsewhere")
    (tmp_path / "load.py").write_text(LOAD_CHAMPION)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "MLFLOW_TRACKING_URI": services.tracking_uri,
           **{name: os.environ[name] for name in ("PYTHONPATH",) if name in os.environ}}
    loaded = subprocess.run([sys.executable, str(tmp_path / "load.py"), "models:/fairaug-wound-lora@champion"],
                            cwd=tmp_path, env=env, capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert loaded.stdout.split()[-3:] == ["image", "32", "32"]
