"""The fairness stage library (train_real_classifier, evaluate_fairness) on fixture data with a
temporary MLflow store, and `fairaug fairness-report` on written prediction files."""

import json
import math

import mlflow
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from fairaug.cli import app
from fairaug.config import DatasetConfig, Params, PrepareConfig
from fairaug.config.fairness import ClassifierConfig, FairnessConfig
from fairaug.data.files import MANIFEST
from fairaug.data.prepare import prepare_dataset
from fairaug.errors import DataError
from fairaug.io import reasons_path, standard_json
from fairaug.fairness.data import make_loader, split_datasets
from fairaug.fairness.model import load_classifier
from fairaug.fairness.predictions import read_predictions, score_column, write_predictions
from fairaug.fairness.report import fairness_report
from fairaug.fairness.training import predict
from fairaug.fairness import stage
from fairaug.fairness.data import ManifestDataset
from fairaug.fairness.files import FAIRNESS, METRICS, MIX, PER_FST_PLOT, PREDICTIONS, ROC_PLOT, WEIGHTS
from fairaug.fairness.mix import MixedDataset, mix_counts, mix_shortfall
from fairaug.labels import HAM10000_DX, MALIGNANT_DX
from fairaug.skin.types import FST_VALUES
from fairaug.fairness.evaluation import HEADLINE, classifier_report, evaluate_fairness, with_worst_fst
from fairaug.fairness.stage import classifier_stage, point_report, train_augmented_classifier, train_real_classifier
from fairaug.metrics_files import detail_path, read_metrics, worst_fst
from fairaug.tracking import stage_run

from synthetic_set import write_synthetic_set

CLASSES = list(HAM10000_DX)
METRIC_NAMES = ["accuracy", "balanced_accuracy", "auroc", "auroc_malignant", "sensitivity", "specificity", "kappa"]
GAPS = ["auroc_gap", "eod", "dpd", "pqd", "dpm", "eom"]
N_BOOTSTRAP = 20


@pytest.fixture
def params(fixture_data) -> Params:
    # 3 epochs and 20 resamples: seconds on 2 cores for the 160-image fixture
    return Params(
        datasets={"ham10000": DatasetConfig(format="ham10000", root=str(fixture_data / "ham10000"), domain="derm")},
        train_classifier=ClassifierConfig(epochs=3),
        evaluate_fairness=FairnessConfig(n_bootstrap=N_BOOTSTRAP),
    )


@pytest.fixture
def trained(params, tmp_path, monkeypatch, mlflow_uri):
    """A prepare run and its manifest, then the real-only classifier stage, in tmp_path."""
    monkeypatch.chdir(tmp_path)
    prepared = tmp_path / "outputs" / "ham10000" / "prepared"
    prepared.mkdir(parents=True)
    with stage_run("prepare", "ham10000", params, {}, outs=[prepared]):
        manifest, _ = prepare_dataset("ham10000", params.dataset("ham10000"), PrepareConfig())
        manifest.to_parquet(prepared / MANIFEST, index=False)
    out = tmp_path / "outputs" / "ham10000" / "classifier" / "real"
    report = train_real_classifier(params, "ham10000", prepared, out)
    return prepared, out, report


def run_named(name: str) -> str:
    """The id of the one run named ``name`` (a DVC stage name) in the test's store."""
    (found,) = mlflow.search_runs(search_all_experiments=True, filter_string=f"attributes.run_name = '{name}'",
                                  output_format="list")  # fmt: skip
    return found.info.run_id


def same(a, b) -> bool:
    """Equal, NaN equal to NaN (an undefined metric)."""
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def same_values(left: dict, right: dict) -> bool:
    return left.keys() == right.keys() and all(same(left[k], right[k]) for k in left)


def test_train_real_classifier_writes_weights_predictions_and_report_and_logs_them(trained, params):
    prepared, out, report = trained
    assert sorted(p.name for p in out.iterdir()) == sorted([WEIGHTS, PREDICTIONS, METRICS])
    manifest = pd.read_parquet(prepared / MANIFEST)
    test_rows = manifest[manifest["split"] == "test"]
    predictions = read_predictions(out / PREDICTIONS)
    assert list(predictions.columns) == ["path", "label", "fst", "group_id", *map(score_column, CLASSES)]
    assert predictions["path"].tolist() == test_rows["path"].tolist()

    # the weights reproduce the predictions, and metrics.json is their point-value report (DESIGN names)
    model = load_classifier(out / WEIGHTS)
    test_set = split_datasets(params.dataset("ham10000").root, manifest, CLASSES, params.train_classifier)["test"]
    pd.testing.assert_frame_equal(predict(model, make_loader(test_set, params.train_classifier)), predictions,
                                  check_dtype=False)  # fmt: skip
    written = json.loads((out / METRICS).read_text())
    assert same_values(written, standard_json(report))  # NaN values left out, their reasons kept
    assert same_values(report, point_report(params, "ham10000", predictions, CLASSES))
    for name in METRIC_NAMES:
        for key in [f"fairness/{name}", *(f"fairness/{name}.fst{k}" for k in FST_VALUES)]:
            assert {key, f"{key}.n"} <= report.keys()
    assert all(f"fairness/{name}" in report for name in GAPS)
    # no intervals and no small-group rule: both are evaluate_fairness's params, no dep of a classifier
    assert not any(key.endswith((".ci_low", ".ci_high")) for key in report)
    for k in FST_VALUES:
        n = report[f"fairness/fst{k}.n"]
        assert n == int((predictions["fst"] == k).sum()) == report[f"fairness/auroc.fst{k}.n"]
        assert report[f"fairness/fst{k}.small_group"] == (n == 0)
    assert 0.5 < report["fairness/auroc"] <= 1.0

    client = mlflow.MlflowClient()
    run = client.get_run(run_named("train_classifier@ham10000-real"))
    tags, metrics = run.data.tags, run.data.metrics
    assert tags["fairaug.stage"] == "train_classifier" and tags["fairaug.variant"] == "real"
    assert tags["fairaug.dataset"] == "ham10000"
    assert tags["fairaug.upstream.prepare"] == run_named("prepare@ham10000")
    assert run.data.params["train_classifier.epochs"] == "3"
    assert not any(name.startswith("evaluate_fairness.") for name in run.data.params)
    train_loss = client.get_metric_history(run.info.run_id, "classifier/train_loss")
    val_loss = client.get_metric_history(run.info.run_id, "classifier/val_loss")
    assert [m.step for m in train_loss] == [m.step for m in val_loss] == list(range(1, len(train_loss) + 1))
    numbers = {k: v for k, v in report.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    # MLflow metric names are the report's keys, DESIGN names, no double prefix
    assert same_values({k: v for k, v in metrics.items() if k.startswith("fairness/")},
                       {k: float(v) for k, v in numbers.items()})  # fmt: skip
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "classifier")}
    assert artifacts == {f"classifier/{name}" for name in (WEIGHTS, PREDICTIONS, METRICS)}


def test_evaluate_fairness_real_only_and_with_an_augmented_classifier(trained, params, tmp_path):
    _, real, _ = trained
    out = tmp_path / "outputs" / "ham10000" / "metrics" / FAIRNESS
    metrics = evaluate_fairness(params, "ham10000", real, None, out)

    written = read_metrics(out)
    assert same_values(written, metrics)
    # the real-only classifier's predictions reported with the evaluate_fairness params (intervals,
    # small groups): names, numbers and small-group flags only, with the worst FST groups (as the
    # gates read them); no deltas yet
    report = with_worst_fst(classifier_report(params, "ham10000", read_predictions(real / PREDICTIONS), CLASSES))
    assert written["fairness/auroc.ci_low"] <= written["fairness/auroc"] <= written["fairness/auroc.ci_high"]
    assert same_values(written, standard_json({k: v for k, v in report.items() if not k.endswith(".reason")}))
    assert written["fairness/auroc.worst_fst"] == worst_fst(report, "fairness/auroc", True).value
    # fairness.json, the DVC metrics, is the headline; per-FST values are in the detail file only
    headline = json.loads(out.read_text())
    assert set(headline) <= {f"{name}{s}" for name in HEADLINE for s in ("", ".n", ".ci_low", ".ci_high")}
    assert {"fairness/auroc", "fairness/auroc.ci_low", "fairness/auroc.n", "fairness/auroc.worst_fst",
            "fairness/eod"} <= set(headline)  # fmt: skip
    assert "fairness/auroc.fst2" in json.loads(detail_path(out).read_text()) and "fairness/auroc.fst2" not in headline
    assert not any(isinstance(v, str) for v in written.values())
    assert not any(k.startswith(("fairness/delta.", "fairness/augmented.")) for k in written)
    assert all(k.startswith("fairness/") for k in written)

    per_fst = pd.read_csv(out.parent / PER_FST_PLOT)
    assert list(per_fst.columns) == ["fst", "metric", "value", "ci_low", "ci_high", "n"]
    assert len(per_fst) == len(METRIC_NAMES) * len(FST_VALUES) and per_fst["metric"].is_unique
    row = per_fst.set_index("metric").loc["fairness/auroc.fst2"]
    assert row["fst"] == 2 and row["n"] == written["fairness/auroc.fst2.n"]
    assert np.allclose(row[["value", "ci_low", "ci_high"]].astype(float),
                       [written[f"fairness/auroc.fst2{s}"] for s in ("", ".ci_low", ".ci_high")],
                       equal_nan=True)  # fmt: skip

    roc = pd.read_csv(out.parent / ROC_PLOT)
    assert list(roc.columns) == ["fpr", *(f"fst{k}" for k in FST_VALUES)]
    assert roc["fpr"].iloc[0] == 0 and roc["fpr"].iloc[-1] == 1
    predictions = read_predictions(real / PREDICTIONS)
    for k in FST_VALUES:
        group = predictions[predictions["fst"] == k]
        has_curve = group["label"].isin(MALIGNANT_DX).any() and not group["label"].isin(MALIGNANT_DX).all()
        tpr = roc[f"fst{k}"]
        assert tpr.notna().all() == has_curve and tpr.isna().all() == (not has_curve)
        if has_curve:
            assert tpr.is_monotonic_increasing and tpr.iloc[-1] == 1.0
            # the step curve's area is the group's malignant AUROC (up to the grid)
            assert abs(np.trapezoid(tpr, roc["fpr"]) - written[f"fairness/auroc_malignant.fst{k}"]) < 0.1

    run = mlflow.MlflowClient().search_runs(
        [mlflow.get_experiment_by_name("fairaug/ham10000").experiment_id], "tags.`fairaug.stage` = 'evaluate_fairness'"
    )[0]
    assert run.data.tags["fairaug.upstream.train_classifier.real"] == run_named("train_classifier@ham10000-real")
    assert run.data.params["evaluate_fairness.n_bootstrap"] == str(N_BOOTSTRAP)
    assert run.data.metrics["fairness/auroc"] == written["fairness/auroc"]
    assert "fairness/fst1.small_group" not in run.data.metrics

    # an augmented classifier adds its values and the deltas; stands in for it: the real one's
    # predictions, a little sharper
    augmented = tmp_path / "augmented"
    augmented.mkdir()
    predictions = read_predictions(real / PREDICTIONS)
    scores = predictions[[score_column(c) for c in CLASSES]] ** 2
    predictions[scores.columns] = scores.div(scores.sum(axis=1), axis=0)
    with stage_run("train_classifier", "ham10000", params, {}, outs=[augmented]) as augmented_run:
        write_predictions(predictions, augmented / PREDICTIONS)
    augmented_report = classifier_report(params, "ham10000", predictions, CLASSES)

    metrics = evaluate_fairness(params, "ham10000", real, augmented, out)
    evaluated = mlflow.search_runs(search_all_experiments=True, filter_string="attributes.run_name = 'evaluate_fairness@ham10000'",
                                   order_by=["attributes.start_time DESC"], output_format="list")[0]  # fmt: skip
    assert evaluated.data.tags["fairaug.upstream.train_classifier.augmented"] == augmented_run.run_id
    for name in [*METRIC_NAMES, *GAPS]:
        for key in [name, *(f"{name}.fst{k}" for k in FST_VALUES if name in METRIC_NAMES)]:
            value = augmented_report[f"fairness/{key}"]
            assert same(metrics.get(f"fairness/augmented.{key}", math.nan), value)
            assert same(metrics.get(f"fairness/delta.{key}", math.nan), value - report[f"fairness/{key}"])
    deltas = [k for k in metrics if k.startswith("fairness/delta.")]
    assert deltas and not any(k.endswith((".n", ".ci_low", ".ci_high")) for k in deltas)
    assert (pd.read_csv(out.parent / PER_FST_PLOT)["metric"] == "fairness/augmented.auroc.fst1").sum() == 1
    # standard JSON: every value missing from fairness.json and its detail has its reason in fairness_reasons.json
    written, reasons = read_metrics(out), json.loads(reasons_path(out).read_text())
    assert "NaN" not in out.read_text() and "NaN" not in detail_path(out).read_text()
    for key, value in {**report, **{f"fairness/augmented.{k.removeprefix('fairness/')}": v
                                    for k, v in augmented_report.items()}}.items():  # fmt: skip
        if isinstance(value, float) and math.isnan(value):
            assert key not in written, key
            if not key.endswith((".ci_low", ".ci_high")):  # an interval has its value's reason
                assert reasons[f"{key}.reason"], key
    undefined_deltas = [k for k in reasons if k.startswith("fairness/delta.")]
    assert all(k.removesuffix(".reason") not in written for k in undefined_deltas)
    assert "augmented_fst1" in pd.read_csv(out.parent / ROC_PLOT).columns


def run_named_param(name: str, param: str) -> str:
    return mlflow.MlflowClient().get_run(run_named(name)).data.params[param]


def test_pretrain_finetune_trains_on_synthetic_then_on_real(trained, params, tmp_path, training_sets):
    prepared, _, _ = trained
    synthetic = tmp_path / "outputs" / "ham10000" / "synthetic"
    with stage_run("generate", "ham10000", params, {}, outs=[synthetic]):
        synthetic_manifest = write_synthetic_set(synthetic, {(k, "mel"): (3, 1) for k in FST_VALUES}, CLASSES)
    params = params.model_copy(update={"mix": params.mix.model_copy(update={"mode": "pretrain_finetune",
                                                                             "pretrain_epochs": 2})})
    out = tmp_path / "outputs" / "ham10000" / "classifier" / "augmented"
    train_augmented_classifier(params, "ham10000", prepared, synthetic, out)

    manifest = pd.read_parquet(prepared / MANIFEST)
    train_rows = manifest[manifest["split"] == "train"]
    counts = mix_counts(train_rows, synthetic_manifest, params.mix)
    pretrain, finetune = training_sets
    assert (pretrain.rows["source"] == "synthetic").all() and len(pretrain) == counts["synthetic"].sum() > 0
    assert set(pretrain.rows["path"]) <= set(synthetic_manifest["path"])
    assert type(finetune) is ManifestDataset and finetune.rows["path"].tolist() == train_rows["path"].tolist()
    assert json.loads((out / MIX).read_text())["mode"] == "pretrain_finetune"
    name = classifier_stage("ham10000", "augmented")
    assert run_named_param(name, "mix.mode") == "pretrain_finetune"
    history = mlflow.MlflowClient().get_metric_history(run_named(name), "classifier/pretrain_loss")
    assert [m.step for m in history] == [1, 2]


def test_augmented_classifier_trains_on_real_and_synthetic_and_evaluate_fairness_reports_deltas(
    trained, params, tmp_path, monkeypatch, capsys
):
    prepared, real, report = trained
    synthetic = tmp_path / "outputs" / "ham10000" / "synthetic"
    # a small synthetic set as the generate stage writes it (no diffusion): 4 kept + 1 dropped per cell
    cells = {(k, label): (4, 1) for k in FST_VALUES for label in ("mel", "nv", "bkl")}
    with stage_run("generate", "ham10000", params, {}, outs=[synthetic]) as generate_run:
        synthetic_manifest = write_synthetic_set(synthetic, cells, CLASSES)

    seen = {}
    real_train = stage.train_classifier

    def spy(train_set, val_set, config, pretrain_set, pretrain_epochs):
        seen.update(train=train_set, val=val_set, pretrain=pretrain_set)
        return real_train(train_set, val_set, config, pretrain_set, pretrain_epochs)

    monkeypatch.setattr(stage, "train_classifier", spy)
    out = tmp_path / "outputs" / "ham10000" / "classifier" / "augmented"
    augmented_report = train_augmented_classifier(params, "ham10000", prepared, synthetic, out)
    assert sorted(p.name for p in out.iterdir()) == sorted([WEIGHTS, PREDICTIONS, METRICS, MIX])

    # train: every real train image plus the mix's synthetic ones; val and test: real only
    manifest = pd.read_parquet(prepared / MANIFEST)
    train_rows = manifest[manifest["split"] == "train"]
    counts = mix_counts(train_rows, synthetic_manifest, params.mix)
    assert isinstance(seen["train"], MixedDataset) and len(seen["train"]) == len(train_rows) + counts["synthetic"].sum()
    assert seen["train"].rows.groupby("source").size().to_dict() == {"real": len(train_rows),
                                                                     "synthetic": counts["synthetic"].sum()}
    assert counts["synthetic"].sum() > 0 and seen["pretrain"] is None  # concat: one phase
    assert type(seen["val"]) is ManifestDataset and (seen["val"].rows["split"] == "val").all()
    predictions = read_predictions(out / PREDICTIONS)
    assert predictions["path"].tolist() == manifest.loc[manifest["split"] == "test", "path"].tolist()

    mix = json.loads((out / MIX).read_text())
    assert mix.pop("mode") == "concat"
    assert run_named_param(classifier_stage("ham10000", "augmented"), "mix.mode") == "concat"
    for k in FST_VALUES:
        assert mix[f"mix/real.fst{k}"] == counts.at[k, "real"] == (train_rows["fst"] == k).sum()
        assert mix[f"mix/synthetic.fst{k}"] == counts.at[k, "synthetic"] <= 12
    # 12 kept images per FST are fewer than FST VI's ratio of 0.8 wants: the stage says so
    assert counts.at[6, "synthetic"] < counts.at[6, "wanted"]
    assert f"warning: ham10000: {mix_shortfall(counts)}" in capsys.readouterr().err
    client = mlflow.MlflowClient()
    run = client.get_run(run_named(classifier_stage("ham10000", "augmented")))
    assert run.info.run_name == "train_classifier_augmented@ham10000"
    assert run.data.tags["fairaug.stage"] == "train_classifier" and run.data.tags["fairaug.variant"] == "augmented"
    assert run.data.tags["fairaug.upstream.prepare"] == run_named("prepare@ham10000")
    assert run.data.tags["fairaug.upstream.generate"] == generate_run.run_id
    assert run.data.params["mix.synthetic_ratio.fst6"] == "0.8"
    assert {k: v for k, v in run.data.metrics.items() if k.startswith("mix/")} == pytest.approx(mix)
    assert run.data.metrics["fairness/auroc.fst1"] == augmented_report["fairness/auroc.fst1"]
    assert f"classifier/{MIX}" in {a.path for a in client.list_artifacts(run.info.run_id, "classifier")}

    # evaluate_fairness with both: per-FST values of each, deltas, MLflow under the same names
    fairness_json = tmp_path / "outputs" / "ham10000" / "metrics" / FAIRNESS
    metrics = evaluate_fairness(params, "ham10000", real, out, fairness_json)
    written = read_metrics(fairness_json)
    assert same_values(written, metrics)
    # the DVC metrics stay readable: a few dozen headline keys of some 500, the deltas among them
    headline = json.loads(fairness_json.read_text())
    assert len(headline) <= 60 < len(written) and "fairness/delta.auroc.worst_fst" in headline
    for name in METRIC_NAMES:
        for key in [name, *(f"{name}.fst{k}" for k in FST_VALUES)]:
            assert same(written.get(f"fairness/{key}", math.nan), report[f"fairness/{key}"])
            assert same(written.get(f"fairness/augmented.{key}", math.nan), augmented_report[f"fairness/{key}"])
            assert {f"fairness/{key}.n", f"fairness/augmented.{key}.n"} <= written.keys()
            assert same(written.get(f"fairness/delta.{key}", math.nan),
                        augmented_report[f"fairness/{key}"] - report[f"fairness/{key}"])  # fmt: skip
    reasons = json.loads(reasons_path(fairness_json).read_text())
    for gap in GAPS:  # a gap's delta, or why it has none
        assert f"fairness/delta.{gap}" in written or reasons[f"fairness/delta.{gap}.reason"]
    evaluated = client.search_runs([run.info.experiment_id], "tags.`fairaug.stage` = 'evaluate_fairness'")[0]
    assert evaluated.data.tags["fairaug.upstream.train_classifier.augmented"] == run.info.run_id
    numbers = {k: float(v) for k, v in written.items() if not isinstance(v, bool)}
    assert same_values({k: v for k, v in evaluated.data.metrics.items() if k.startswith("fairness/")}, numbers)


def test_augmented_classifier_without_a_synthetic_set_is_a_clean_error(trained, params, tmp_path):
    prepared, _, _ = trained
    out = tmp_path / "outputs" / "ham10000" / "classifier" / "augmented"
    runs_before = len(mlflow.search_runs(search_all_experiments=True))
    with pytest.raises(DataError, match="the generate stage has not run"):
        train_augmented_classifier(params, "ham10000", prepared, tmp_path / "no-synthetic", out)
    assert not out.exists()
    assert len(mlflow.search_runs(search_all_experiments=True)) == runs_before


# --------------------------------------------------------------------------------------------------
# fairaug fairness-report


@pytest.fixture(scope="module")
def predictions_table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 120
    labels = rng.choice(CLASSES, size=n)
    scores = rng.dirichlet(np.ones(len(CLASSES)), size=n)
    scores[np.arange(n), [CLASSES.index(label) for label in labels]] += 0.5  # better than chance
    scores /= scores.sum(axis=1, keepdims=True)
    frame = pd.DataFrame({"path": [f"img{i}.jpg" for i in range(n)], "label": labels,
                          "fst": rng.choice(FST_VALUES, size=n, p=[0.3, 0.3, 0.2, 0.1, 0.07, 0.03])})  # fmt: skip
    for i, label in enumerate(CLASSES):
        frame[score_column(label)] = scores[:, i]
    return frame


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_fairness_report_command_reproduces_fairness_report(predictions_table, tmp_path, suffix):
    path = tmp_path / f"predictions{suffix}"
    if suffix == ".parquet":
        write_predictions(predictions_table, path)
    else:
        predictions_table.to_csv(path, index=False)
    out = tmp_path / "report.json"
    result = CliRunner().invoke(app, ["fairness-report", str(path), "--out", str(out), "--malignant", "mel,bcc,akiec",
                                      "--n-bootstrap", "30", "--seed", "3", "--min-group-size", "8"])  # fmt: skip
    assert result.exit_code == 0, result.output
    expected = fairness_report(predictions_table, CLASSES, malignant_classes=["mel", "bcc", "akiec"],
                               n_bootstrap=30, seed=3, min_group_size=8)  # fmt: skip
    assert same_values(json.loads(out.read_text()), standard_json(expected))


def test_fairness_report_command_ordinal_without_bootstrap(tmp_path):
    frame = pd.DataFrame({"label": ["I", "P", "R", "P", "I", "R"] * 4, "fst": [1, 2, 5] * 8})
    for i, label in enumerate("IPR"):
        frame[score_column(label)] = np.where(frame["label"] == label, 0.6, 0.2) + 0.01 * i
    path = tmp_path / "wound.csv"
    frame.to_csv(path, index=False)
    out = tmp_path / "report.json"
    arguments = ["fairness-report", str(path), "--out", str(out), "--ordinal", "--n-bootstrap", "0"]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert same_values(report, standard_json(fairness_report(frame, list("IPR"), ordinal=True, n_bootstrap=0)))
    assert "fairness/auroc_malignant" not in report and "fairness/kappa.ci_low" not in report
    assert "fairness/kappa" in report


@pytest.mark.parametrize(
    ("drop", "named"),
    [("score_vasc", "column 'label': label must be one of akiec, bcc, bkl, df, mel, nv, got 'vasc'"),
     ("fst", "column 'fst': missing column")],
)  # fmt: skip
def test_fairness_report_command_fails_cleanly_on_a_missing_column(predictions_table, tmp_path, drop, named):
    path = tmp_path / "predictions.csv"
    frame = predictions_table.copy()
    frame.loc[0, "label"] = "vasc"  # so that a label has no score column when score_vasc is dropped
    frame.drop(columns=drop).to_csv(path, index=False)
    out = tmp_path / "report.json"
    result = CliRunner().invoke(app, ["fairness-report", str(path), "--out", str(out)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}, ")
    assert named in lines[0] and "Traceback" not in result.output
    assert not out.exists()


def test_fairness_report_command_rejects_an_unknown_malignant_class(predictions_table, tmp_path):
    path = tmp_path / "predictions.parquet"
    write_predictions(predictions_table, path)
    result = CliRunner().invoke(app, ["fairness-report", str(path), "--out", str(tmp_path / "r.json"),
                                      "--malignant", "mel,melanoma"])  # fmt: skip
    assert result.exit_code == 2
    classes = ", ".join(CLASSES)
    assert result.output.strip() == f"error: --malignant: melanoma not among the classes of {path}: {classes}"
