"""The MLflow reading helpers behind the pages, on the seeded store."""

from __future__ import annotations

import math
from datetime import datetime

import pytest
from mlflow import MlflowClient

from fairaug.config import load_params
from fairaug.errors import ConfigError
from fairaug.tracking.pipelines import assemble, pipeline_heads
from fairaug.tracking.search import RunFilter
from fairaug.tracking.tables import differences_only, fst_table, params_frame


def test_run_filter_is_one_server_side_filter_string():
    run_filter = RunFilter(stage="generate", profile="tiny", commit="ab'c", experiment="seed-2",
                           started_after=datetime.fromtimestamp(1), started_before=datetime.fromtimestamp(2))  # fmt: skip
    assert run_filter.filter_string() == ("tags.\"fairaug.stage\" = 'generate' AND tags.\"fairaug.profile\" = 'tiny' "
                                          "AND tags.\"git.commit\" LIKE 'ab\\'c%' AND tags.\"dvc.exp_name\" = 'seed-2' "
                                          "AND attributes.start_time >= 1000 AND attributes.start_time < 2000")  # fmt: skip
    assert RunFilter().filter_string() == ""


def test_pipelines_are_assembled_through_lineage_and_share_upstream_runs(seeded):
    client = MlflowClient(seeded["uri"])
    heads = pipeline_heads(client, seeded["ham"], "evaluate_fairness").runs
    newer, older = assemble(client, heads)
    assert {role: run.info.run_id for role, run in newer.runs.items()} == seeded["newer"]
    assert {role: run.info.run_id for role, run in older.runs.items()} == seeded["older"]
    assert newer.runs["prepare"].info.run_id == older.runs["prepare"].info.run_id  # DVC reused it
    assert differences_only(params_frame([newer, older])).index.tolist() == ["generate.per_cell"]


def test_a_pipeline_headed_upstream_of_evaluate_fairness_has_only_its_runs(seeded):
    client = MlflowClient(seeded["uri"])
    [generate] = assemble(client, pipeline_heads(client, seeded["ham"], "generate", max_results=1).runs)
    assert set(generate.runs) == {"prepare", "base_model", "train_lora", "train_classifier.real", "generate",
                                  "evaluate_quality"}  # the branch stage that hangs off generate


def test_fst_table_keeps_missing_values_as_nan_and_unknown_sizes_small():
    metrics = {"fairness/auroc.fst1": 0.8, "fairness/auroc.fst1.ci_low": 0.7, "fairness/auroc.fst1.ci_high": 0.9,
               "fairness/auroc.fst1.n": 12, "fairness/auroc.fst2": math.nan}  # fmt: skip
    table = fst_table(metrics, "fairness/auroc", {1: 12, 2: 3}, min_group_size=5).set_index("fst")
    assert table.loc[1, ["value", "ci_low", "ci_high", "n"]].tolist() == [0.8, 0.7, 0.9, 12]
    assert not table.loc[1, "small_group"] and table.loc[2, "small_group"]
    assert math.isnan(table.loc[2, "value"]) and table.loc[6, "small_group"]  # size unknown
    assert len(table) == 6


@pytest.mark.parametrize(("text", "allowed"), [("dashboard:\n  allow_promotion: true\n", True),
                                               ("dashboard:\n  allow_promotion: false\n", False),
                                               ("profile: tiny\n", False)])  # fmt: skip
def test_promotion_is_read_only_unless_params_enable_it(tmp_path, text, allowed):
    (tmp_path / "params.yaml").write_text(text)
    assert load_params(tmp_path / "params.yaml").dashboard.allow_promotion is allowed
    (tmp_path / "params.yaml").write_text("dashboard:\n  allow_promotion: yes please\n")
    with pytest.raises(ConfigError, match="dashboard.allow_promotion"):
        load_params(tmp_path / "params.yaml")