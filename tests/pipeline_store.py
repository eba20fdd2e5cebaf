"""A tracking store seeded with pipeline-shaped runs: the stage tags, lineage tags, params, metric
names and artifacts the stages log, with fairness reports made by the library's own
`fairness_report` on synthetic predictions. Used by the dashboard tests and bench/dashboard.py."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from fairaug.data import storage
from fairaug.data.files import MANIFEST
from fairaug.diffusion.stage import SAMPLES
from fairaug.fairness.evaluation import fairness_metrics, roc_table
from fairaug.fairness.files import ROC_PLOT
from fairaug.fairness.predictions import score_column
from fairaug.fairness.report import fairness_report
from fairaug.skin.types import FST_VALUES
from fairaug.tracking.lineage import dvc_md5
from fairaug.tracking.runs import DVC_OUT_MD5_TAG, EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, numeric_metrics
from fairaug.tracking.search import DVC_EXPERIMENT_TAG
from synthetic_set import synthetic_image, write_synthetic_set

CLASSES = ["bkl", "mel", "nv"]
# test images per FST: few V-VI as in real dermoscopy; VI below the min_group_size of 5
FST_SIZES = {1: 40, 2: 40, 3: 30, 4: 20, 5: 9, 6: 3}
MIN_GROUP_SIZE = 5
DATA_ROOT = "data/ham10000"


def predictions(seed: int, skill: float) -> pd.DataFrame:
    """Predictions in the prediction-file format; ``skill`` scales how much the right class's score
    stands out (dark skin types get less of it, as a biased classifier would)."""
    rng = np.random.default_rng(seed)
    rows = []
    for fst, n in FST_SIZES.items():
        for _ in range(n):
            label = int(rng.integers(len(CLASSES)))
            logits = rng.normal(0, 1, len(CLASSES))
            logits[label] += skill * (1.2 if fst <= 4 else 0.6)
            probs = np.exp(logits) / np.exp(logits).sum()
            scores = {score_column(c): p for c, p in zip(CLASSES, probs, strict=True)}
            rows.append({"label": CLASSES[label], "fst": fst} | scores)
    return pd.DataFrame(rows)


def classifier_reports(seed: int, n_bootstrap: int = 30) -> dict[str, tuple[pd.DataFrame, dict]]:
    """Variant -> (predictions, fairness report) of a real-only and a better augmented classifier."""
    made = {}
    for variant, skill in (("real", 1.0), ("augmented", 1.8)):
        frame = predictions(seed + (variant == "augmented"), skill)
        made[variant] = (frame, fairness_report(frame, CLASSES, malignant_classes=["mel"],
                                                min_group_size=MIN_GROUP_SIZE, n_bootstrap=n_bootstrap))  # fmt: skip
    return made


def quality_metrics(shift: float) -> dict[str, float]:
    """quality.json-shaped numbers: KID of the evaluator extractor and FST fidelity, overall and per FST
    with intervals and n, and the group sizes (FST VI has 2 real images: a small group)."""
    metrics = {"quality/kid.evaluator": 0.05 + shift, "quality/kid.evaluator.n": 120, "quality/fst_fidelity": 0.95}
    for k in FST_VALUES:
        kid = 0.02 * k + shift
        metrics |= {f"quality/kid.evaluator.fst{k}": kid, f"quality/kid.evaluator.fst{k}.ci_low": kid - 0.01,
                    f"quality/kid.evaluator.fst{k}.ci_high": kid + 0.015, f"quality/kid.evaluator.fst{k}.n": 20,
                    f"quality/fst_fidelity.fst{k}": 1.0 - 0.02 * k, f"quality/fst_fidelity.fst{k}.n": 20,
                    f"quality/n_real.fst{k}": 2 if k == 6 else 30, f"quality/n_synthetic.fst{k}": 20}  # fmt: skip
    return metrics


class Seeder:
    """Writes stage runs into a store the way the stages do (tags, params, metrics, artifacts)."""

    def __init__(self, client: MlflowClient, root: Path):
        self.client, self.root = client, root
        self.clock = 1_780_000_000_000  # ms; every run starts a minute after the previous one

    def experiment(self, dataset: str) -> str:
        return self.client.create_experiment(f"fairaug/{dataset}", (self.root / "mlartifacts" / dataset).as_uri(),
                                             tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})  # fmt: skip

    def run(self, experiment_id: str, stage: str, dataset: str, *, upstream: Mapping[str, str] = {},
            metrics: Mapping[str, float] = {}, params: Mapping[str, object] = {}, variant: str | None = None,
            commit: str = "a" * 40, status: str = "FINISHED", extra_tags: Mapping[str, str] = {}) -> str:  # fmt: skip
        self.clock += 60_000
        name = f"{stage}@{dataset}" + (f"-{variant}" if variant else "")
        tags = {"fairaug.stage": stage, "fairaug.dataset": dataset, "fairaug.profile": "tiny", "git.commit": commit,
                "mlflow.runName": name} | {f"fairaug.upstream.{k}": v for k, v in upstream.items()} | dict(extra_tags)  # fmt: skip
        if variant:
            tags["fairaug.variant"] = variant
        run = self.client.create_run(experiment_id, start_time=self.clock, tags=tags, run_name=name)
        run_id = run.info.run_id
        self.client.log_batch(run_id, metrics=[Metric(k, float(v), self.clock, 0) for k, v in metrics.items()],
                              params=[Param(k, str(v)) for k, v in params.items()],
                              tags=[RunTag("mlflow.runName", name)])  # fmt: skip
        self.client.set_terminated(run_id, status, end_time=self.clock + 30_000)
        return run_id

    def log_file(self, run_id: str, name: str, content: bytes, artifact_path: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            path.write_bytes(content)
            self.client.log_artifact(run_id, str(path), artifact_path)

    def pipeline(self, experiment_id: str, dataset: str, *, reports: dict, commit: str, per_cell: int,
                 prepare: str | None = None, artifacts: bool = False, experiment: str | None = None) -> dict[str, str]:  # fmt: skip
        """All eight stage runs of one `dvc repro`, linked by lineage; ``prepare`` reuses a prepare run
        (DVC did not rerun it). With ``artifacts``, the files the Samples and Fairness pages read; with
        ``experiment``, the runs this pipeline made belong to that DVC experiment."""
        classifier_params = {"dataset.root": DATA_ROOT}
        ids = {"prepare": prepare or self.run(experiment_id, "prepare", dataset, commit=commit,
                                              metrics={"data/n_images": 600}, params={"dataset.root": DATA_ROOT})}
        up = {"prepare": ids["prepare"]}
        ids["base_model"] = self.run(experiment_id, "base_model", dataset, upstream=up, commit=commit,
                                     metrics={"base/fst_fidelity": 0.9})  # fmt: skip
        ids["train_lora"] = self.run(experiment_id, "train_lora", dataset, commit=commit,
                                     upstream=up | {"base_model": ids["base_model"]},
                                     metrics={"train/loss": 0.2}, params={"train_lora.steps": 300})  # fmt: skip
        ids["train_classifier.real"] = self.run(experiment_id, "train_classifier", dataset, variant="real",
                                                upstream=up, commit=commit, params=classifier_params,
                                                metrics=numeric_metrics(reports["real"][1]))  # fmt: skip
        ids["generate"] = self.run(experiment_id, "generate", dataset, commit=commit,
                                   upstream=up | {"base_model": ids["base_model"], "train_lora": ids["train_lora"],
                                                  "train_classifier": ids["train_classifier.real"]},
                                   metrics={"generate/acceptance": 0.5}, params={"generate.per_cell": per_cell})  # fmt: skip
        ids["evaluate_quality"] = self.run(experiment_id, "evaluate_quality", dataset, commit=commit,
                                           upstream=up | {"generate": ids["generate"],
                                                          "train_classifier": ids["train_classifier.real"]},
                                           metrics=quality_metrics(per_cell / 1000),
                                           params={"evaluate_quality.min_group_size": MIN_GROUP_SIZE})  # fmt: skip
        ids["train_classifier.augmented"] = self.run(experiment_id, "train_classifier", dataset, variant="augmented",
                                                     upstream=up | {"generate": ids["generate"]}, commit=commit,
                                                     params=classifier_params | {"mix.ratio": 1.0},
                                                     metrics=numeric_metrics(reports["augmented"][1]))  # fmt: skip
        evaluation = fairness_metrics({variant: report for variant, (_, report) in reports.items()})
        ids["evaluate_fairness"] = self.run(experiment_id, "evaluate_fairness", dataset, commit=commit,
                                            upstream={f"train_classifier.{v}": ids[f"train_classifier.{v}"]
                                                      for v in ("real", "augmented")},
                                            metrics=numeric_metrics(evaluation),
                                            params={"evaluate_fairness.min_group_size": MIN_GROUP_SIZE})  # fmt: skip
        if artifacts:
            self.pipeline_artifacts(ids, dataset, reports)
        if experiment:
            for run_id in set(ids.values()) - {prepare}:  # a reused prepare run is the workspace's
                self.client.set_tag(run_id, DVC_EXPERIMENT_TAG, experiment)
        return ids

    def pipeline_artifacts(self, ids: Mapping[str, str], dataset: str, reports: dict) -> None:
        """ROC curves, the synthetic set (workspace, locked in dvc.lock as the generate run's out,
        + manifest artifact), the real data and its manifest, and LoRA validation grids at steps 150
        and 300."""
        roc = roc_table({v: frame for v, (frame, _) in reports.items()}, CLASSES, ["mel"])
        self.log_file(ids["evaluate_fairness"], ROC_PLOT, roc.to_csv(index=False).encode(), "fairness")
        out_dir = self.root / "outputs" / dataset / "synthetic"
        cells = {(fst, label): (3, 2) for fst in FST_VALUES for label in CLASSES}
        write_synthetic_set(out_dir, cells, CLASSES)
        out_path, md5 = out_dir.relative_to(self.root).as_posix(), dvc_md5(out_dir)
        self.client.set_tag(ids["generate"], f"{DVC_OUT_MD5_TAG}{out_path}", md5)
        lock = self.root / "dvc.lock"
        locked = json.loads(lock.read_text()) if lock.exists() else {"schema": "2.0", "stages": {}}  # JSON is YAML
        locked["stages"][f"generate@{dataset}"] = {"outs": [{"path": out_path, "md5": md5}]}
        lock.write_text(json.dumps(locked))
        self.log_file(ids["generate"], MANIFEST, (out_dir / MANIFEST).read_bytes(), "synthetic")
        rng, rows = np.random.default_rng(0), []
        for fst in FST_VALUES:
            for label in CLASSES:
                for i in range(2):
                    path = f"images/real-{fst}-{label}-{i}.png"
                    (self.root / DATA_ROOT / path).parent.mkdir(parents=True, exist_ok=True)
                    (self.root / DATA_ROOT / path).write_bytes(storage.png_bytes(synthetic_image(fst, CLASSES.index(label), rng)))
                    rows.append({"path": path, "fst": fst, "label": label, "split": "train"})
        self.log_file(ids["prepare"], MANIFEST, pd.DataFrame(rows).to_parquet(index=False), "prepared")
        for step in (150, 300):
            grid = np.concatenate([synthetic_image(k, step // 150, rng) for k in FST_VALUES])
            self.log_file(ids["train_lora"], f"step_{step:06d}.png", storage.png_bytes(grid), SAMPLES)
