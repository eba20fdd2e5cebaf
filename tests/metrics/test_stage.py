"""The evaluate_quality stage on a tmp project: a prepared manifest of fixture images, a tiny
synthetic set written with the generate stage's storage, an untrained small CNN as the classifier."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from scipy.special import softmax

from fairaug.config import load_params
from fairaug.config.quality import EvaluateQualityConfig
from fairaug.data.files import MANIFEST
from fairaug.data.storage import png_bytes, shard_path, write_shard
from fairaug.errors import exit_on_user_error
from fairaug.fairness.files import WEIGHTS
from fairaug.fairness.model import build_classifier, save_classifier
from fairaug.skin.types import FST_VALUES
from fairaug.images import read_rgb
from fairaug.io import reasons_path
from fairaug.metrics.extractors import evaluator_extractor
from fairaug.metrics.files import QUALITY
from fairaug.metrics.stage import HEADLINE, evaluate_quality
from fairaug.metrics_files import detail_path, read_metrics, split_headline

DATASET = "ham10000"


def prepared_manifest(root: Path) -> pd.DataFrame:
    metadata = pd.read_csv(root / "HAM10000_metadata.csv")
    paths = [next(root.glob(f"HAM10000_images_part_*/{image_id}.jpg")).relative_to(root).as_posix()
             for image_id in metadata["image_id"]]  # fmt: skip
    return pd.DataFrame({
        "path": paths,
        "sha256": [hashlib.sha256((root / p).read_bytes()).hexdigest() for p in paths],
        "label": metadata["dx"], "fst": metadata["fitzpatrick"], "fst_source": "label",
        "group_id": metadata["lesion_id"], "split": np.where(np.arange(len(paths)) % 5 == 0, "test", "train"),
    })  # fmt: skip


def synthetic_set(out: Path, root: Path, manifest: pd.DataFrame, per_shard: int = 16) -> None:
    """Flipped real test images asked for with their own FST and label, in shards; one row not kept."""
    rows = manifest[manifest["split"] == "test"].reset_index(drop=True)
    rows = rows.assign(id=[f"img{i:04d}" for i in range(len(rows))], prompt="p", seed=0, index=rows.index,
                       confidence=0.9, ssim_to_real=0.5, nearest_real=rows["path"], kept=rows.index > 0,
                       reason="passed")  # fmt: skip
    pieces = []
    for shard, start in enumerate(range(0, len(rows), per_shard)):
        chunk = rows.iloc[start : start + per_shard]
        images = [png_bytes(np.ascontiguousarray(read_rgb(root / p)[:, ::-1])) for p in chunk["path"]]
        path = write_shard(shard_path(out, shard), chunk[["id", "fst", "label"]], images, "fingerprint")
        pieces.append(chunk.assign(path=[f"shards/{path.name}#{i}" for i in chunk["id"]]))
    pd.concat(pieces)[["path", "id", "fst", "label", "prompt", "seed", "index", "confidence", "ssim_to_real",
                       "nearest_real", "kept", "reason"]].to_parquet(out / MANIFEST)  # fmt: skip


def stage_inputs(project):
    """The prepared manifest, a synthetic set and the evaluator's out dir: (manifest, prepared, synthetic,
    classifier)."""
    root = project / "data" / DATASET
    manifest = prepared_manifest(root)
    prepared, synthetic, classifier = (project / "outputs" / DATASET / d for d in ("prepared", "synthetic",
                                                                                    "classifier/evaluator"))  # fmt: skip
    prepared.mkdir(parents=True)
    manifest.to_parquet(prepared / MANIFEST)
    synthetic_set(synthetic, root, manifest)
    return manifest, prepared, synthetic, classifier


def test_evaluate_quality_writes_per_fst_values_with_intervals(project, mlflow_uri, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # offline: no Inception / LPIPS weights
    manifest, prepared, synthetic, classifier = stage_inputs(project)
    save_classifier(build_classifier("small_cnn", sorted(manifest["label"].unique()), 32),
                    classifier / WEIGHTS)  # fmt: skip
    params = load_params(project / "params.yaml")
    config = EvaluateQualityConfig(n_bootstrap=20, cache_dir=str(tmp_path / "cache"), min_group_size=5)
    params = params.model_copy(update={"evaluate_quality": config})
    out = project / "outputs" / DATASET / "metrics" / QUALITY

    report = evaluate_quality(params, DATASET, prepared, synthetic, classifier, out)

    metrics, reasons = read_metrics(out), json.loads(reasons_path(out).read_text())
    # quality.json, the DVC metrics, is the headline: no per-FST or per-label key, a few dozen of
    # some 400; the detail file beside it has the rest under the same names
    headline, detail = json.loads(out.read_text()), json.loads(detail_path(out).read_text())
    assert (headline, detail) == split_headline(metrics, HEADLINE) and not headline.keys() & detail.keys()
    assert len(headline) <= 60 < len(metrics) and not any(".fst" in k or ".label_" in k for k in headline)
    assert {"quality/kid.evaluator.ci_low", "quality/fid.pixels", "quality/fst_fidelity.n"} <= headline.keys()
    assert metrics.keys() == {k for k, v in report.items() if not isinstance(v, str) and not math.isnan(v)}
    assert all(isinstance(v, int | float) for v in metrics.values())
    assert all(isinstance(v, str) for v in reasons.values())
    n_synthetic = int((manifest["split"] == "test").sum()) - 1  # one row not kept
    assert metrics["quality/n_synthetic"] == n_synthetic
    assert metrics["quality/n_real"] == int((manifest["split"] == "train").sum())
    for name in ("kid.evaluator", "kid.pixels", "ssim", "fst_fidelity", "label_confidence.evaluator"):
        value, low, high = (metrics[f"quality/{name}{s}"] for s in ("", ".ci_low", ".ci_high"))
        assert low <= high and metrics[f"quality/{name}.n"] == n_synthetic and not math.isnan(value)
    for name in ("fid.evaluator", "is.evaluator", "precision.evaluator", "recall.evaluator", "diversity.evaluator",
                 "memorization.near_copy.evaluator", "memorization.ssim_near_copy", "fid.pixels",
                 "realness_auc.pixels", "realness_auc.evaluator", "label_accuracy.evaluator"):
        assert not math.isnan(metrics[f"quality/{name}"]), name
    for k in FST_VALUES:
        n = metrics[f"quality/n_synthetic.fst{k}"]
        assert metrics[f"quality/fst{k}.small_group"] == (min(n, metrics[f"quality/n_real.fst{k}"]) < 5)
        if n >= 2:
            assert metrics[f"quality/kid.evaluator.fst{k}.n"] == n and f"quality/kid.evaluator.fst{k}.ci_low" in metrics
            assert metrics[f"quality/label_confidence.evaluator.fst{k}.n"] == n
            assert 0 <= metrics[f"quality/fst_fidelity.fst{k}"] <= 1
    assert "quality/fid.inception" not in metrics  # standard JSON: left out, its reason beside it
    assert "NaN" not in out.read_text() and "NaN" not in detail_path(out).read_text()
    assert reasons["quality/fid.inception.reason"].startswith("unavailable: Inception-v3 FID weights not found")
    assert "lpips.alex.reason" in " ".join(reasons) and "quality/ssim.label_mel" in metrics
    # the flipped copies are near their originals: SSIM well above unrelated images'
    assert metrics["quality/ssim"] > 0.5

    run = mlflow.search_runs(experiment_names=[f"fairaug/{DATASET}"], output_format="list")[0]
    assert run.data.tags["fairaug.stage"] == "evaluate_quality"
    assert run.data.metrics["quality/kid.evaluator"] == pytest.approx(metrics["quality/kid.evaluator"])
    assert run.data.metrics["quality/ssim.label_mel"] == pytest.approx(metrics["quality/ssim.label_mel"])  # detail too
    # real features: evaluator and pixels of the reference split, evaluator of the held-out test split
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 3
    # the filter's statistics: every image of the set passed, one was not kept; none below the bar
    assert metrics["quality/filter.acceptance"] == 1.0 and metrics["quality/filter.below_bar"] == 0.0
    assert metrics["quality/filter.acceptance.fst1"] == 1.0

    # the evaluator on the real test split, which it never trained on: its softmax at each true
    # label (scipy), averaged per FST group; the synthetic confidence over it is the ratio
    test = manifest[manifest["split"] == "test"].reset_index(drop=True)
    evaluator = evaluator_extractor(classifier / WEIGHTS)
    probabilities = softmax(evaluator.extract([read_rgb(project / "data" / DATASET / p) for p in test["path"]]).logits,
                            axis=1)  # fmt: skip
    own = probabilities[np.arange(len(test)), [evaluator.classes.index(label) for label in test["label"]]]
    assert metrics["quality/label_confidence_real.evaluator"] == pytest.approx(own.mean())
    assert metrics["quality/label_confidence_real.evaluator.n"] == len(test)
    ratio = "quality/label_confidence_ratio.evaluator"
    assert metrics[ratio] == pytest.approx(metrics["quality/label_confidence.evaluator"] / own.mean())
    assert metrics[f"{ratio}.ci_low"] <= metrics[ratio] <= metrics[f"{ratio}.ci_high"] and ratio in headline
    for k in FST_VALUES:
        in_group = (test["fst"] == k).to_numpy()
        if in_group.any():
            real_k = metrics[f"quality/label_confidence_real.evaluator.fst{k}"]
            assert real_k == pytest.approx(own[in_group].mean())
            assert metrics[f"quality/label_confidence_real.evaluator.fst{k}.n"] == in_group.sum()
            if f"quality/label_confidence.evaluator.fst{k}" in metrics:
                assert metrics[f"{ratio}.fst{k}"] == pytest.approx(
                    metrics[f"quality/label_confidence.evaluator.fst{k}"] / real_k)


def test_a_synthetic_set_with_nothing_kept_is_one_line_and_exit_2_before_any_run(project, mlflow_uri, capsys):
    _, prepared, synthetic, classifier = stage_inputs(project)
    pd.read_parquet(synthetic / MANIFEST).assign(kept=False).to_parquet(synthetic / MANIFEST)
    out = project / "outputs" / DATASET / "metrics" / QUALITY

    with pytest.raises(SystemExit) as exit_info:
        exit_on_user_error(evaluate_quality)(load_params(project / "params.yaml"), DATASET, prepared, synthetic,
                                             classifier, out)  # fmt: skip
    message = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and message == f"error: {synthetic / MANIFEST}: no kept synthetic images"
    assert not out.exists()
    mlflow.set_tracking_uri(mlflow_uri)  # where a run would have gone (an earlier test may have pointed it elsewhere)
    assert mlflow.search_runs(search_all_experiments=True).empty  # no failed run left behind
