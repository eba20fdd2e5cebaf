"""A fresh clone of the committed repository: the Makefile regenerates exactly the data data.dvc
records, `dvc repro` runs offline, a second `dvc repro` is a no-op, and MLflow holds the runs."""

import mlflow
import pytest

from conftest import REPO_ROOT, run

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_fresh_clone_fixtures_match_data_dvc_and_pipeline_runs(tmp_path):
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(REPO_ROOT), str(clone)], tmp_path)
    assert not (clone / "data").exists()

    fixtures = run(["make", "--no-print-directory", "fixtures"], clone)
    assert "Data and pipelines are up to date." in fixtures.stdout, fixtures.stdout
    assert run(["git", "status", "--porcelain"], clone).stdout == ""  # data.dvc untouched

    first = run(["dvc", "repro"], clone)
    assert "Running stage 'prepare@ham10000'" in first.stdout
    assert "Running stage 'prepare@wound'" in first.stdout
    second = run(["dvc", "repro"], clone)
    assert "Data and pipelines are up to date." in second.stdout
    assert "Running stage" not in second.stdout

    client = mlflow.MlflowClient(f"sqlite:///{clone / 'mlflow.db'}")
    experiments = {e.name: e.experiment_id for e in client.search_experiments()}
    for dataset in ("ham10000", "wound"):
        (tracked,) = client.search_runs([experiments[f"fairaug/{dataset}"]])
        assert tracked.data.tags["fairaug.stage"] == "prepare"
        assert tracked.data.tags[f"dvc.md5.data/{dataset}"].endswith(".dir")
    assert (clone / "mlartifacts").is_dir()
