"""Every page of the dashboard in Streamlit's AppTest, on the seeded store, the empty store and the
broken wound runs: what it shows (values, counts, the chosen runs), not only that it does not fail."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient
from streamlit.testing.v1 import AppTest

from fairaug.tracking.pipelines import head_label

from dashboards.conftest import APP

PAGES = ["views/runs.py", "views/compare.py", "views/fairness.py", "views/samples.py", "views/registry.py"]


def open_page(page: str, dataset: str = "ham10000") -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    if page != "views/runs.py":
        at.switch_page(page)
        at.run()
    if at.sidebar.selectbox and at.sidebar.selectbox[0].value != dataset:
        at.sidebar.selectbox[0].select(dataset).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(elements) -> str:
    return "\n".join(str(element.value) for element in elements)


@pytest.mark.parametrize("page", PAGES)
def test_empty_store_says_so_on_every_page(empty_store, page):
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    at.switch_page(page)
    at.run()
    assert not at.exception
    assert "No fairaug experiments" in texts(at.info)


def test_runs_page_lists_runs_with_key_metrics_and_filters_on_the_server(in_project):
    at = open_page("views/runs.py")
    table = at.dataframe[0].value
    assert len(table) == 17  # 2 x 8 stage runs sharing one prepare run, plus 2 promote runs
    newest = table.iloc[0]
    assert newest["stage"] == "promote"
    fairness = table[table["stage"] == "evaluate_fairness"]
    runs = MlflowClient(in_project["uri"]).get_run(in_project["newer"]["evaluate_fairness"])
    assert fairness.iloc[0]["fairness/auroc"] == pytest.approx(runs.data.metrics["fairness/auroc"])
    assert fairness.iloc[0]["MLflow"].endswith(f"/runs/{in_project['newer']['evaluate_fairness']}")

    at.selectbox(key="stage").select("train_classifier").run()
    assert set(at.dataframe[0].value["stage"]) == {"train_classifier.real", "train_classifier.augmented"}
    at.text_input(key="commit").input("bbbb").run()
    assert len(at.dataframe[0].value) == 2
    at.text_input(key="commit").input("ffff").run()
    assert "No runs match" in texts(at.info)
    at.text_input(key="commit").input("").run()
    at.selectbox(key="stage").select("(all)").run()
    at.text_input(key="experiment").input("seed-2").run()
    experiment = at.dataframe[0].value
    assert sorted(experiment["run_id"]) == sorted(set(in_project["newer"].values()) - {in_project["newer"]["prepare"]})
    assert set(experiment["experiment"]) == {"seed-2"}


def test_runs_page_pages_with_the_servers_token(in_project):
    at = open_page("views/runs.py")
    at.selectbox(key="page_size").select(10).run()
    first = at.dataframe[0].value
    assert len(first) == 10 and at.button(key="previous").disabled
    at.button(key="next").click().run()
    second = at.dataframe[0].value
    assert len(second) == 7 and at.button(key="next").disabled
    assert not set(first["run_id"]) & set(second["run_id"])
    at.button(key="previous").click().run()
    assert at.dataframe[0].value["run_id"].tolist() == first["run_id"].tolist()


def test_compare_shows_chosen_pipelines_deltas_differing_params_and_fst_charts(in_project):
    at = open_page("views/compare.py")
    client = MlflowClient(in_project["uri"])
    newer = client.get_run(in_project["newer"]["evaluate_fairness"])
    older = client.get_run(in_project["older"]["evaluate_fairness"])
    chosen = at.multiselect[0].value
    assert chosen == [head_label(newer), head_label(older)]  # newest two by default

    pipelines = at.dataframe[0].value
    assert pipelines["missing"].tolist() == ["", ""]
    assert "train_classifier.augmented" in pipelines["stages"].iloc[0]

    metrics = at.dataframe[1].value
    row = metrics.loc[("evaluate_fairness", "fairness/augmented.auroc")]
    expected = older.data.metrics["fairness/augmented.auroc"] - newer.data.metrics["fairness/augmented.auroc"]
    assert row[f"Δ {head_label(older)}"] == pytest.approx(expected)
    assert ("evaluate_fairness", "fairness/auroc.fst1") not in metrics.index  # headline only

    params = at.dataframe[2].value
    assert params.index.tolist() == ["generate.per_cell"]  # the only param that differs
    assert params.loc["generate.per_cell"].tolist() == ["8", "4"]

    fairness = at.dataframe[3].value
    assert len(fairness) == 2 * 2 * 6  # pipelines x (real-only, augmented) x FST
    newest_real = fairness[fairness["series"] == f"{head_label(newer)} · real"].set_index("fst")
    value = newer.data.metrics["fairness/auroc.fst2"]
    low, high = newer.data.metrics["fairness/auroc.fst2.ci_low"], newer.data.metrics["fairness/auroc.fst2.ci_high"]
    assert newest_real.loc[2, "value [CI]"] == f"{value:.3f} [{low:.3f}, {high:.3f}]"
    assert newest_real.loc[2, "n"] == 40 and not newest_real.loc[2, "small_group"]
    assert newest_real.loc[6, "n"] == 3 and newest_real.loc[6, "small_group"]  # 3 test images < 5
    assert len(at.get("vega_lite_chart")) == 2  # fairness and quality per FST

    quality = at.dataframe[4].value
    assert quality["small_group"].tolist() == [False] * 5 + [True] + [False] * 5 + [True]  # 2 real FST VI images

    at.toggle[1].set_value(False).run()  # all params, not only the differences
    assert "dataset.root" in at.dataframe[2].value.index


def test_compare_a_store_without_quality_or_augmented_runs_and_with_nan_metrics(in_project):
    at = open_page("views/compare.py", dataset="wound")
    assert at.dataframe[0].value["missing"].iloc[0] == "base_model, train_lora, generate, evaluate_quality"
    shown = texts(at.info)
    assert "no evaluate_quality run" in shown
    assert "accuracy was not logged (or is NaN) for every FST group" in shown or "No per-FST fairness" in shown
    metrics = at.dataframe[1].value
    assert metrics.loc[("evaluate_fairness", "fairness/accuracy")].iloc[0] == 0.5


def test_fairness_page_shows_per_fst_intervals_gaps_and_roc(in_project):
    at = open_page("views/fairness.py")
    client = MlflowClient(in_project["uri"])
    newer = client.get_run(in_project["newer"]["evaluate_fairness"])
    assert at.selectbox[0].value == head_label(newer)
    auroc = at.dataframe[0].value.set_index(["series", "fst"])
    augmented = newer.data.metrics["fairness/augmented.auroc.fst5"]
    assert auroc.loc[("augmented", 5), "value [CI]"].startswith(f"{augmented:.3f} [")
    assert auroc.loc[("real", 6), "small_group"]
    moved = augmented - newer.data.metrics["fairness/auroc.fst5"]
    assert f"FST 5: {moved:+.3f}" in texts(at.caption)
    gaps = at.dataframe[4].value.set_index("gap")
    assert gaps.loc["auroc_gap", "real"] == pytest.approx(newer.data.metrics["fairness/auroc_gap"])
    assert gaps.loc["auroc_gap", "delta"] == pytest.approx(newer.data.metrics["fairness/delta.auroc_gap"])
    assert len(at.get("vega_lite_chart")) == 5  # four metrics and the ROC curves


def test_fairness_page_of_broken_runs_is_a_message(in_project):
    at = open_page("views/fairness.py", dataset="wound")
    shown = texts(at.info)
    assert "This pipeline run has no per-FST fairness metrics" in shown
    assert "No gaps logged" in shown and "No ROC curves" in shown


def test_samples_page_shows_kept_images_scores_real_examples_and_grids(in_project):
    at = open_page("views/samples.py")
    cells = at.dataframe[0].value
    assert len(cells) == 6 * 3 and cells["sampled"].eq(5).all() and cells["kept"].eq(3).all()
    markdown = texts(at.markdown)
    assert "**Synthetic**, FST 1, bkl: 3 kept of 5" in markdown
    assert "**Real** (train split), FST 1, bkl: 2 shown" in markdown
    images = at.get("image")
    captions = [image.proto.imgs[0].caption for image in images]
    assert captions[0].startswith("kept · conf 0.90 · ssim 0.20")
    assert len(images[0].proto.imgs) == 3  # the cell's kept images only
    at.toggle[0].set_value(True).run()  # rejected ones too
    assert len(at.get("image")[0].proto.imgs) == 5
    assert any("rejected: low confidence" in i.caption for i in at.get("image")[0].proto.imgs)
    assert at.select_slider[0].value == 300 and at.select_slider[0].options == ["150", "300"]
    assert "step 300" in at.get("image")[-1].proto.imgs[0].caption


def test_samples_page_without_generate_runs_is_a_message(in_project):
    at = open_page("views/samples.py", dataset="wound")
    assert "No generate run" in texts(at.info) and "No train_lora run" in texts(at.info)


def test_registry_page_shows_versions_aliases_gates_and_history_read_only(in_project):
    at = open_page("views/registry.py")
    versions = at.dataframe[0].value.set_index("version")
    assert versions.loc[2, "aliases"] == "champion" and versions.loc[1, "aliases"] == "challenger"
    assert versions.loc[1, "replaced_by"] == "2"
    assert at.metric[0].value == "version 2"
    gates = at.dataframe[1].value.set_index("gate")
    assert gates.loc["auroc_gap", "value"] == pytest.approx(0.06) and gates.loc["auroc_gap", "champion_value"] == 0.08
    history = at.dataframe[2].value
    assert history["version"].tolist() == ["1", "2"]  # oldest first
    assert history["champion_after"].tolist() == ["1", "2"]
    assert "Read-only" in texts(at.caption) and not at.button


def test_registry_page_promotes_only_when_enabled_and_confirmed(in_project, monkeypatch, tmp_path):
    import sys
    import types

    calls = []
    promote = types.ModuleType("fairaug.registry.promote")
    decided = types.SimpleNamespace(verdict=types.SimpleNamespace(decision="promoted", reason="all 6 gates passed"))
    promote.promote_version = lambda params, dataset, version, *, force_reason, root: calls.append(
        (params.dashboard.allow_promotion, dataset, version, force_reason)) or decided
    monkeypatch.setitem(sys.modules, "fairaug.registry.promote", promote)
    (tmp_path / "params.yaml").write_text("dashboard:\n  allow_promotion: true\n")
    monkeypatch.chdir(tmp_path)  # the params file the page reads; the store stays the seeded one
    at = open_page("views/registry.py")
    at.selectbox(key="promote_version").select(1)
    at.button[0].click().run()
    assert "Tick the confirmation first." in texts(at.warning) and not calls
    at.checkbox[1].check()
    at.button[0].click().run()
    assert calls == [(True, "ham10000", 1, None)]
    assert "Version 1: promoted: all 6 gates passed" in texts(at.success)
