"""The classifier stages: real-only, evaluator and augmented (evaluate_fairness is in `evaluation`).

train_classifier@<dataset>-real (real train split), train_evaluator@<dataset> (real train split,
train_classifier.evaluator_seed) and train_classifier_augmented@<dataset> (real train split plus kept
synthetic images, `fairaug.fairness.mix`; validation and test stay real) write into their out dir
(outputs/<d>/classifier/real, .../evaluator, .../augmented):
    model.safetensors       the small CNN / backbone with its classes in the metadata
    predictions.parquet     the real test split: path, label, fst, group_id, score_<label> per class
    metrics.json            `point_report` of those predictions: `fairness_report`'s values
                            (``fairness/<metric>[.fst<k>]``, with ``.reason`` strings) without
                            intervals or the small-group rule, which are evaluate_fairness's (its
                            params are no dep of a classifier: changing them retrains nothing)
    mix.json                augmented only: ``mode`` (mix.mode, also an MLflow param) and
                            ``mix/<count>.fst<k>`` (real, available, ratio, wanted, synthetic,
                            share) and the totals, also logged as MLflow metrics
and log per-epoch ``classifier/train_loss`` and ``classifier/val_loss`` (mix mode
pretrain_finetune: ``classifier/pretrain_loss`` of the synthetic phase before them), the report's numbers under
the same names as in metrics.json, and the files as artifacts. The MLflow run is named after the DVC
stage, tagged ``fairaug.variant`` and linked to its upstream runs (prepare; augmented: also generate).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import mlflow
import pandas as pd

from fairaug.config import DatasetConfig, Params
from fairaug.data.files import MANIFEST
from fairaug.fairness.data import make_loader, split_datasets
from fairaug.fairness.evaluation import Report, report_options
from fairaug.fairness.files import METRICS, MIX, PREDICTIONS, WEIGHTS
from fairaug.fairness.mix import augmented_train_sets, mix_record, mix_shortfall, read_synthetic_manifest
from fairaug.fairness.model import save_classifier
from fairaug.fairness.predictions import write_predictions
from fairaug.fairness.report import fairness_report
from fairaug.fairness.training import predict, train_classifier
from fairaug.io import atomic_dir, write_json
from fairaug.tracking import numeric_metrics, stage_run


def classifier_stage(dataset: str, variant: str) -> str:
    """The DVC name of a classifier stage: train_classifier@<dataset>-real (a matrix over data set x
    variant), train_evaluator@<dataset> and train_classifier_augmented@<dataset>, stages of their own
    because each depends on other params or inputs (dvc.yaml explains)."""
    if variant == "real":
        return f"train_classifier@{dataset}-real"
    if variant == "evaluator":
        return f"train_evaluator@{dataset}"
    return f"train_classifier_{variant}@{dataset}"


def dataset_classes(config: DatasetConfig, manifest: pd.DataFrame) -> list[str]:
    """The classifier's classes in order: the data set's labels (ordered wound phases), else the
    labels present in the manifest, sorted."""
    return config.allowed_labels() or sorted(manifest["label"].unique())


def point_report(params: Params, dataset: str, predictions: pd.DataFrame, classes: Sequence[str]) -> Report:
    """A classifier's own metrics.json: the point values of every FST group with rows, no intervals
    and no group left out of the gaps (min_group_size 1): nothing of the evaluate_fairness params."""
    return fairness_report(predictions, classes, **report_options(params.dataset(dataset), classes),
                           min_group_size=1, n_bootstrap=0)  # fmt: skip


def _train_classifier_stage(
    params: Params, dataset: str, prepared_dir: Path, out_dir: Path, synthetic_dir: Path | None,
    variant: str = "real",
) -> Report:
    """Every variant: real-only when ``synthetic_dir`` is None, else augmented by its kept images;
    the evaluator trains as the real-only one with its own seed."""
    variant = "augmented" if synthetic_dir is not None else variant
    config = params.train_classifier
    if variant == "evaluator":
        config = config.model_copy(update={"seed": config.evaluator_seed})
    dataset_config = params.dataset(dataset)
    stage_params = {
        "train_classifier": config.model_dump(),
        "dataset": dataset_config.model_dump(),
    }
    upstream = {"prepare": Path(prepared_dir)}
    if synthetic_dir is not None:
        read_synthetic_manifest(synthetic_dir)  # a clean error before any run or output exists
        stage_params["mix"] = params.mix.model_dump()
        upstream["generate"] = Path(synthetic_dir)
    with stage_run("train_classifier", dataset, params, stage_params, upstream=upstream, outs=[out_dir],
                   dvc_stage=classifier_stage(dataset, variant)), atomic_dir(out_dir) as out:  # fmt: skip
        mlflow.set_tag("fairaug.variant", variant)
        manifest = pd.read_parquet(Path(prepared_dir) / MANIFEST)
        classes = dataset_classes(dataset_config, manifest)
        splits = split_datasets(dataset_config.root, manifest, classes, config)
        artifacts = [WEIGHTS, PREDICTIONS, METRICS]
        pretrain_set = None
        if synthetic_dir is not None:
            pretrain_set, splits["train"], counts = augmented_train_sets(splits["train"], Path(synthetic_dir),
                                                                         params.mix)  # fmt: skip
            if (shortfall := mix_shortfall(counts)) is not None:
                print(f"warning: {dataset}: {shortfall}", file=sys.stderr)
            mix = mix_record(counts)
            write_json(out / MIX, {"mode": params.mix.mode} | mix)
            mlflow.log_metrics(mix)
            artifacts.append(MIX)
        model, history = train_classifier(splits["train"], splits["val"], config, pretrain_set,
                                          params.mix.pretrain_epochs)  # fmt: skip
        for epoch, loss in enumerate(history.pretrain_loss, start=1):
            mlflow.log_metric("classifier/pretrain_loss", loss, step=epoch)
        for epoch, (train_loss, val_loss) in enumerate(zip(history.train_loss, history.val_loss, strict=True), start=1):
            mlflow.log_metrics({"classifier/train_loss": train_loss, "classifier/val_loss": val_loss}, step=epoch)
        for epoch, loss in enumerate(history.fst_branch_loss, start=1):
            mlflow.log_metric("classifier/fst_branch_loss", loss, step=epoch)
        mlflow.log_metric("classifier/best_epoch", history.best_epoch)
        save_classifier(model, out / WEIGHTS)
        predictions = predict(model, make_loader(splits["test"], config))
        write_predictions(predictions, out / PREDICTIONS)
        report = point_report(params, dataset, predictions, classes)
        write_json(out / METRICS, report)
        mlflow.log_metrics(numeric_metrics(report))
        for name in artifacts:
            mlflow.log_artifact(str(out / name), artifact_path="classifier")
    return report


def train_real_classifier(params: Params, dataset: str, prepared_dir: Path, out_dir: Path) -> Report:
    """Train the real-only classifier on the train split (val for early stopping), predict the test
    split and write weights, predictions and their `point_report` to ``out_dir``; returns the report."""
    return _train_classifier_stage(params, dataset, prepared_dir, out_dir, None)


def train_evaluator(params: Params, dataset: str, prepared_dir: Path, out_dir: Path) -> Report:
    """The evaluator: as `train_real_classifier` with ``train_classifier.evaluator_seed``. Only
    evaluate_quality uses it (label confidence, the evaluator feature metrics): the generate filter
    uses the real-only classifier, and nothing is graded by the model that selected it."""
    return _train_classifier_stage(params, dataset, prepared_dir, out_dir, None, variant="evaluator")


def train_augmented_classifier(
    params: Params, dataset: str, prepared_dir: Path, synthetic_dir: Path, out_dir: Path
) -> Report:
    """As `train_real_classifier`, on the real train split plus the kept synthetic images of
    ``synthetic_dir`` chosen by ``params.mix``; also writes mix.json. A DataError (before anything
    is written or logged) when ``synthetic_dir`` is not a finished synthetic set."""
    return _train_classifier_stage(params, dataset, prepared_dir, out_dir, Path(synthetic_dir))
