"""What the MLflow UI shows of fairaug's runs: experiments open in the model training view, and each
stage run lists its data inputs (path and DVC md5) in the Dataset column."""

from __future__ import annotations

import mlflow

from fairaug.config import Params
from fairaug.tracking import stage_run
from fairaug.tracking.lineage import dvc_md5
from fairaug.tracking.runs import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, ensure_experiment


def test_stage_runs_log_their_data_as_dataset_inputs_in_a_model_training_experiment(project, mlflow_uri):
    with stage_run("prepare", "ham10000", Params(), {}) as run:
        pass
    client = mlflow.MlflowClient(mlflow_uri)
    logged = client.get_run(run.run_id)
    inputs = {i.dataset.name: i.dataset for i in logged.inputs.dataset_inputs}
    assert list(inputs) == ["data/ham10000"]  # the data dependency; the .py deps are code, not data
    assert inputs["data/ham10000"].digest == dvc_md5(project / "data" / "ham10000")
    assert '"uri": "data/ham10000"' in inputs["data/ham10000"].source
    experiment = client.get_experiment(logged.info.experiment_id)
    assert experiment.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND


def test_an_experiment_created_before_the_tag_gets_it(project, mlflow_uri):
    mlflow.set_tracking_uri(mlflow_uri)
    old = mlflow.create_experiment("fairaug/wound")
    assert ensure_experiment("fairaug/wound", project, embedded_store=False) == old
    assert mlflow.MlflowClient(mlflow_uri).get_experiment(old).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
