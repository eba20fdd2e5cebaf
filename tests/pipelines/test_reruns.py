"""What a params change reruns, read from the resolved pipeline (DVC's own graph, no stage run):
a param reruns the stages that list it and every stage below them, and no other."""

import networkx as nx
import pytest
from dvc.dependency.param import ParamsDependency
from dvc.repo import Repo


def rerun_by(repo: Repo, param: str) -> set[str]:
    """The stages `dvc repro` reruns when ``param`` (e.g. ``evaluate_fairness.n_bootstrap``) changes."""
    graph = repo.index.graph  # an edge runs from a stage to a stage it depends on
    listing = {stage for stage in repo.index.stages
               for dep in stage.deps if isinstance(dep, ParamsDependency)
               for key in dep.params if param == key or param.startswith(f"{key}.")}  # fmt: skip
    return {stage.addressing for stage in listing | {below for s in listing for below in nx.ancestors(graph, s)}}


@pytest.mark.parametrize("param", ["evaluate_fairness.n_bootstrap", "evaluate_fairness.min_group_size"])
def test_a_fairness_report_param_retrains_no_classifier(project, param):
    """The classifiers write predictions and point values; the intervals and the small-group rule are
    evaluate_fairness's, so that changing them neither retrains a classifier nor regenerates."""
    with Repo(str(project)) as repo:
        datasets = {stage.addressing.split("@")[1] for stage in repo.index.stages if stage.addressing.startswith("prepare@")}
        assert rerun_by(repo, param) == {f"{stage}@{d}" for d in datasets for stage in ("evaluate_fairness", "promote")}
