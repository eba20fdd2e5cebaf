"""`dvc repro` of prepare@<dataset> in a temporary project: outputs, MLflow lineage, no-op rerun,
and bad data failing cleanly."""

import json

import mlflow
import pandas as pd
import pytest
import yaml

from fairaug.data.files import MANIFEST, VALIDATION_HTML, VALIDATION_JSON

from conftest import run

pytestmark = pytest.mark.slow
DATASETS = ("ham10000", "wound")
PREPARE_STAGES = [f"prepare@{d}" for d in DATASETS]  # not the whole pipeline: it trains models for minutes


def prepare_runs(project):
    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiments = client.search_experiments(filter_string="name LIKE 'fairaug/%'")
    return client, client.search_runs([e.experiment_id for e in experiments])


def test_dvc_repro_prepare_tracks_lineage_and_is_idempotent(project):
    run(["dvc", "repro", *PREPARE_STAGES], project)
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    client, runs = prepare_runs(project)
    assert sorted(r.info.run_name for r in runs) == PREPARE_STAGES
    for dataset in DATASETS:
        out = project / "outputs" / dataset / "prepared"
        assert sorted(p.name for p in out.iterdir()) == ["manifest.parquet", "validation.html", "validation.json"]
        manifest = pd.read_parquet(out / MANIFEST)
        report = json.loads((out / VALIDATION_JSON).read_text())
        assert report["n_images"] == len(manifest) > 0
        assert "<table>" in (out / VALIDATION_HTML).read_text()
        assert manifest.groupby("group_id")["split"].nunique().max() == 1
        base_train = pd.read_parquet(project / "outputs" / "base_train" / f"{dataset}.parquet")  # the shared base's
        pd.testing.assert_frame_equal(base_train, manifest[manifest["split"] == "train"].reset_index(drop=True))

        (tracked,) = [r for r in runs if r.info.run_name == f"prepare@{dataset}"]
        run_id = tracked.info.run_id
        assert not (out / "mlflow_run.json").exists()  # a run id in the out would change it every run
        tags, params = tracked.data.tags, tracked.data.params
        assert tags["fairaug.stage"] == "prepare" and tags["fairaug.dataset"] == dataset
        assert tags["fairaug.profile"] == "tiny"
        assert len(tags["git.commit"]) == 40
        deps = {dep["path"]: dep["md5"] for dep in lock["stages"][f"prepare@{dataset}"]["deps"]}
        assert deps, "dvc.lock lists the stage's deps"
        for path, md5 in deps.items():
            assert tags[f"dvc.md5.{path}"] == md5  # the data version MLflow shows is the one DVC locked
        for out_entry in lock["stages"][f"prepare@{dataset}"]["outs"]:
            assert tags[f"dvc.out_md5.{out_entry['path']}"] == out_entry["md5"]  # how downstream stages find it
        assert params["prepare.seed"] == "0" and params["dataset.root"] == f"data/{dataset}"
        assert tracked.data.metrics["data/n_images"] == len(manifest)
        artifacts = {a.path for a in client.list_artifacts(run_id, "prepared")}
        assert f"prepared/{MANIFEST}" in artifacts

    second = run(["dvc", "repro", *PREPARE_STAGES], project)
    assert "Running stage" not in second.stdout
    assert len(prepare_runs(project)[1]) == len(DATASETS)  # nothing ran, nothing logged


def test_bad_data_fails_cleanly_without_outputs(project):
    metadata = project / "data" / "ham10000" / "HAM10000_metadata.csv"
    frame = pd.read_csv(metadata, dtype=str, keep_default_na=False)
    frame.loc[2, "fitzpatrick"] = "VI"
    frame.to_csv(metadata, index=False)
    result = run(["dvc", "repro", "prepare@ham10000"], project, check=False)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    assert f"{metadata.relative_to(project)}, row 4, column 'fitzpatrick': invalid Fitzpatrick skin type 'VI'" in (
        result.stderr + result.stdout
    )
    out_parent = project / "outputs" / "ham10000"
    assert not out_parent.exists() or list(out_parent.iterdir()) == []


def test_dvc_exp_run_with_a_changed_param_reruns_and_logs_it(project):
    run(["dvc", "repro", "prepare@wound"], project)
    before = pd.read_parquet(project / "outputs" / "wound" / "prepared" / MANIFEST)
    result = run(["dvc", "exp", "run", "-S", "prepare.seed=5", "prepare@wound"], project)
    assert "Running stage 'prepare@wound'" in result.stdout
    after = pd.read_parquet(project / "outputs" / "wound" / "prepared" / MANIFEST)
    assert not before["split"].equals(after["split"])  # another seed, another split
    assert after.groupby("group_id")["split"].nunique().max() == 1
    client, runs = prepare_runs(project)
    assert sorted(r.data.params["prepare.seed"] for r in runs) == ["0", "5"]
