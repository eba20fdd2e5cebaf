"""`fairaug results`: the seed aggregation against numpy on made-up experiments, and the whole path
on a tiny DVC project whose one stage writes fairness-like metrics from a seed param."""

import math
import sys

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from fairaug.cli import app
from fairaug.results import (
    Experiment,
    aggregate,
    experiments_from_show,
    mean_interval,
    results_markdown,
    seed_summary,
    setting_params,
)

from conftest import dvc_repo, run


def fake_fairness(seed: int, mode: str) -> dict[str, float]:
    """Numbers as evaluate_fairness names them; they depend on the seed and the mode."""
    rng = np.random.default_rng([seed, len(mode)])
    values = {"fairness/fst6.n": 31.0, "fairness/fst1.n": 40.0}
    for variant in ("", "augmented."):
        for name in ("auroc.fst1", "auroc.fst6", "sensitivity.fst6", "auroc_gap", "eod"):
            values[f"fairness/{variant}{name}"] = float(rng.uniform(0.5, 1.0))
    for name in ("auroc.fst1", "auroc.fst6", "sensitivity.fst6", "auroc_gap", "eod"):
        values[f"fairness/delta.{name}"] = values[f"fairness/augmented.{name}"] - values[f"fairness/{name}"]
    return values


def fake_quality(seed: int) -> dict[str, float]:
    """Numbers as evaluate_quality names them; they depend on the seed (the mode uses the same set)."""
    rng = np.random.default_rng([seed, 7])
    values = {"quality/n_synthetic": 504.0, "quality/n_synthetic.fst6": 84.0 + seed}
    for name in ("label_confidence.evaluator", "label_confidence.evaluator.fst6", "label_confidence_ratio.evaluator",
                 "filter.acceptance"):  # fmt: skip
        values[f"quality/{name}"] = float(rng.uniform(0.2, 0.9))
    return values


def experiment(seed: int, mode: str, split_seed: int = 0) -> Experiment:
    params = {"train_classifier.seed": seed, "prepare.seed": split_seed, "mix.mode": mode,
              "mix.pretrain_epochs": 10}  # fmt: skip
    return Experiment(f"{mode}-{seed}", params, {"ham10000": fake_fairness(seed, mode)},
                      {"ham10000": fake_quality(seed)})  # fmt: skip


def test_seed_summary_is_numpy_mean_and_sample_std():
    values = [0.61, 0.7, 0.64, math.nan, None]
    mean, std, n = seed_summary(values)
    finite = [0.61, 0.7, 0.64]
    assert (mean, std, n) == (pytest.approx(np.mean(finite)), pytest.approx(np.std(finite, ddof=1)), 3)
    assert math.isnan(seed_summary([0.5])[1]) and seed_summary([])[2] == 0


@pytest.mark.parametrize("values", [[0.049, 0.027, 0.071], [0.016, 0.011, 0.021, 0.02], [-0.1, 0.3]])
def test_mean_interval_is_scipys_one_sample_t_interval(values):
    reference = stats.ttest_1samp(values, 0.0).confidence_interval(0.95)
    low, high = mean_interval(*seed_summary(values))
    assert (low, high) == (pytest.approx(reference.low), pytest.approx(reference.high))
    assert all(math.isnan(v) for v in mean_interval(*seed_summary([0.5])))


def test_aggregate_groups_by_non_seed_params_and_matches_numpy():
    experiments = [experiment(s, "concat", split_seed=s) for s in (1, 2, 3)]
    experiments += [experiment(s, "pretrain_finetune") for s in (1, 2)]
    assert setting_params(experiments) == ["mix.mode"]  # the seeds, prepare.seed too, make no setting
    table = aggregate(experiments).set_index(["setting", "metric", "variant"])
    for mode, seeds in (("concat", (1, 2, 3)), ("pretrain_finetune", (1, 2))):
        for metric in ("auroc.fst6", "sensitivity.fst6", "auroc_gap", "eod"):
            for variant, prefix in (("real", ""), ("augmented", "augmented."), ("delta", "delta.")):
                by_hand = [fake_fairness(s, mode)[f"fairness/{prefix}{metric}"] for s in seeds]
                row = table.loc[(f'mix.mode="{mode}"', metric, variant)]
                assert row["mean"] == pytest.approx(np.mean(by_hand))
                assert row["std"] == pytest.approx(np.std(by_hand, ddof=1))
                assert row["seeds"] == len(seeds)
                reference = stats.ttest_1samp(by_hand, 0.0).confidence_interval(0.95)
                assert (row["ci_low"], row["ci_high"]) == (pytest.approx(reference.low), pytest.approx(reference.high))
        assert table.loc[(f'mix.mode="{mode}"', "auroc.fst6", "real"), "test_n"] == "31"
        # a metric no experiment has is reported as such, not left out
        assert table.loc[(f'mix.mode="{mode}"', "auroc.fst3", "real"), "seeds"] == 0
        for metric in ("label_confidence.evaluator", "label_confidence.evaluator.fst6",
                       "label_confidence_ratio.evaluator", "filter.acceptance"):  # fmt: skip
            by_hand = [fake_quality(s)[f"quality/{metric}"] for s in seeds]
            row = table.loc[(f'mix.mode="{mode}"', metric, "synthetic")]
            assert (row["mean"], row["seeds"]) == (pytest.approx(np.mean(by_hand)), len(seeds))
            assert row["std"] == pytest.approx(np.std(by_hand, ddof=1))
        sizes = [84 + s for s in seeds]
        n = table.loc[(f'mix.mode="{mode}"', "label_confidence.evaluator.fst6", "synthetic"), "test_n"]
        assert n == f"{min(sizes)}-{max(sizes)}"
    markdown = results_markdown(aggregate(experiments), "abc123", "fairaug results")
    assert "`fairaug results`" in markdown and "`abc123`" in markdown
    assert "| auroc FST III |  | n/a | n/a | n/a |  |" in markdown
    by_hand = [fake_quality(s)["quality/label_confidence.evaluator"] for s in (1, 2)]
    assert (f"| label_confidence.evaluator | 504 | {np.mean(by_hand):.3f} ± {np.std(by_hand, ddof=1):.3f} (2) |"
            in markdown[markdown.index('### mix.mode="pretrain_finetune"'):])  # fmt: skip
    assert "| fst_fidelity | 504 | n/a |" in markdown  # no experiment has it: said, not left out
    # mix modes of the same seeds share their synthetic sets: one table, and a reference to it
    same_seeds = [experiment(s, mode) for mode in ("concat", "pretrain_finetune") for s in (1, 2)]
    markdown = results_markdown(aggregate(same_seeds), "abc123", "fairaug results")
    concat, pretrain = markdown.split('### mix.mode="pretrain_finetune"')
    assert concat.count("| synthetic images |") == 1 and "| synthetic images |" not in pretrain
    assert 'Synthetic images: the same as under `mix.mode="concat"`.' in pretrain
    assert "| auroc FST VI | 31 |" in pretrain  # the fairness rows stay


def test_only_finished_experiments_are_read():
    def entry(name, executor):
        data = {"params": {"params.yaml": {"data": {"train_classifier": {"seed": 1}}}},
                "metrics": {"outputs/toy/metrics/fairness.json": {"data": {"fairness/eod": 0.1}}}}  # fmt: skip
        return {"name": name, "executor": executor, "revs": [{"rev": f"{name}-rev", "name": name, "data": data}]}

    show = [{"rev": "workspace"}, {"rev": "base", "experiments": [
        entry("in-workspace", None), entry("from-queue", {"state": "success"}), entry("queued", {"state": "queued"}),
        entry("running", {"state": "running"}), entry("failed", {"state": "failed"})]}]  # fmt: skip
    show[1]["experiments"][0]["revs"][0]["data"]["metrics"]["outputs/toy/metrics/quality.json"] = {
        "data": {"quality/fst_fidelity": 0.9}}
    detail = {"outputs/toy/metrics/fairness_detail.json": '{"fairness/auroc.fst6": 0.7}',
              "outputs/toy/metrics/quality_detail.json": '{"quality/fst_fidelity.fst6": 0.8}'}  # fmt: skip
    commit, experiments = experiments_from_show(show, lambda path, rev: detail[path])
    assert commit == "base" and [e.name for e in experiments] == ["in-workspace", "from-queue"]
    assert experiments[0].fairness == {"toy": {"fairness/eod": 0.1, "fairness/auroc.fst6": 0.7}}
    assert experiments[0].quality == {"toy": {"quality/fst_fidelity": 0.9, "quality/fst_fidelity.fst6": 0.8}}
    assert experiments[1].quality == {}
    assert experiments[0].params == {"train_classifier.seed": 1}


STAGE = """\
import json, pathlib, yaml
params = yaml.safe_load(open("params.yaml"))
seed, mode = params["train_classifier"]["seed"], params["mix"]["mode"]
out = pathlib.Path("outputs/toy/metrics")
out.mkdir(parents=True, exist_ok=True)
real, augmented = 0.6 + seed / 100, 0.7 + seed / 100 + (0.05 if mode == "pretrain_finetune" else 0)
json.dump({"fairness/eod": 0.3 - seed / 100, "fairness/augmented.eod": 0.2}, open(out / "fairness.json", "w"))
json.dump({"fairness/auroc.fst6": real, "fairness/augmented.auroc.fst6": augmented,
           "fairness/delta.auroc.fst6": augmented - real, "fairness/fst6.n": 30}, open(out / "fairness_detail.json", "w"))
json.dump({"quality/label_confidence.evaluator": 0.5 + seed / 100}, open(out / "quality.json", "w"))
json.dump({"quality/n_synthetic": 100}, open(out / "quality_detail.json", "w"))
"""
DVC_YAML = """\
stages:
  evaluate_fairness:
    cmd: python stage.py
    deps: [stage.py]
    params: [train_classifier, mix]
    metrics: [outputs/toy/metrics/fairness.json, outputs/toy/metrics/quality.json]
    outs: [outputs/toy/metrics/fairness_detail.json, outputs/toy/metrics/quality_detail.json]
"""


@pytest.mark.slow
def test_results_from_dvc_experiments(tmp_path, monkeypatch):
    project = dvc_repo(tmp_path / "project", {
        "stage.py": STAGE, "dvc.yaml": DVC_YAML, ".gitignore": "/outputs\n",
        "params.yaml": "train_classifier:\n  seed: 0\nmix:\n  mode: concat\n"})
    dvc = [sys.executable, "-m", "dvc"]
    for seed, mode in ((1, "concat"), (2, "concat"), (4, "concat"), (1, "pretrain_finetune")):
        run([*dvc, "exp", "run", "-q", "-S", f"train_classifier.seed={seed}", "-S", f"mix.mode={mode}"], project)
    commit = run(["git", "rev-parse", "HEAD"], project).stdout.strip()

    monkeypatch.chdir(project)
    result = CliRunner().invoke(app, ["results", "--out", "docs/results.md"])
    assert result.exit_code == 0, result.output
    text = (project / "docs" / "results.md").read_text()
    assert commit in text and "`fairaug results --out docs/results.md`" in text
    concat = text[text.index('### mix.mode="concat"'):text.index('### mix.mode="pretrain_finetune"')]
    real = [0.6 + s / 100 for s in (1, 2, 4)]
    augmented = [0.7 + s / 100 for s in (1, 2, 4)]
    delta = np.subtract(augmented, real)
    interval = stats.ttest_1samp(delta, 0.0).confidence_interval(0.95)
    expected = (f"| auroc FST VI | 30 | {np.mean(real):.3f} ± {np.std(real, ddof=1):.3f} (3) | "
                f"{np.mean(augmented):.3f} ± {np.std(augmented, ddof=1):.3f} (3) | "
                f"{np.mean(delta):.3f} ± {np.std(delta, ddof=1):.3f} (3) | "
                f"{interval.low:+.3f} to {interval.high:+.3f} |")  # fmt: skip
    assert expected in concat
    eod = [0.3 - s / 100 for s in (1, 2, 4)]
    assert f"| eod |  | {np.mean(eod):.3f} ± {np.std(eod, ddof=1):.3f} (3) | 0.200 ± 0.000 (3) | n/a |" in concat
    confidence = [0.5 + s / 100 for s in (1, 2, 4)]
    row = f"| label_confidence.evaluator | 100 | {np.mean(confidence):.3f} ± {np.std(confidence, ddof=1):.3f} (3) |"
    assert row in concat
    pretrain = text[text.index('### mix.mode="pretrain_finetune"'):]
    assert f"| auroc FST VI | 30 | {0.61:.3f} (1) | {0.76:.3f} (1) |" in pretrain


def test_results_without_experiments_is_a_clean_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["results"])
    assert result.exit_code == 2 and "dvc exp show failed" in result.output
