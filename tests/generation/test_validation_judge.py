"""The judge of train_lora's validation grids against independent references: label confidence as a
softmax by hand of the classifier's logits, KID as torchmetrics' KernelInceptionDistance; and it is
the filter's classifier, never the evaluator."""

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torchmetrics.image.kid import KernelInceptionDistance

from fairaug.diffusion.lora import KID, LABEL_CONFIDENCE
from fairaug.errors import DataError
from fairaug.fairness.data import image_transform
from fairaug.fairness.files import WEIGHTS
from fairaug.fairness.model import build_classifier, save_classifier
from fairaug.generation.validation import ValidationJudge
from fairaug.metrics.features import folder_set
from fairaug.metrics.functional import Precomputed

from conftest import REPO_ROOT

CLASSES = ["bcc", "mel", "nv"]


def random_images(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8) for _ in range(n)]


def test_scores_are_the_softmax_of_the_logits_and_torchmetrics_kid(tmp_path):
    classifier_dir, real_dir = tmp_path / "classifier" / "real", tmp_path / "real"
    torch.manual_seed(0)
    model = build_classifier("small_cnn", CLASSES, 32).eval()
    save_classifier(model, classifier_dir / WEIGHTS)
    real_dir.mkdir()
    for i, image in enumerate(random_images(6, seed=1)):
        Image.fromarray(image).save(real_dir / f"{i}.png")
    judge = ValidationJudge(classifier_dir, folder_set(real_dir), labels=CLASSES)
    grid, labels = random_images(6, seed=2), ["mel", "nv", "bcc", "mel", "mel", "nv"]
    scores = judge(grid, labels)

    with torch.no_grad():
        pixels = torch.stack([image_transform(32)(image) for image in grid])
        logits = model(pixels).double()
        real = torch.stack([image_transform(32)(np.asarray(Image.open(real_dir / f"{i}.png"))) for i in range(6)])
        real_features, grid_features = model.backbone(real).double(), model.backbone(pixels).double()
    exp = torch.exp(logits - logits.max(dim=1, keepdim=True).values)
    probability = exp / exp.sum(dim=1, keepdim=True)
    expected = np.mean([float(probability[i, CLASSES.index(label)]) for i, label in enumerate(labels)])
    assert scores[LABEL_CONFIDENCE] == pytest.approx(expected, rel=1e-6)
    # equal sets of 6, one subset of 6: torchmetrics' KID is the whole sets' unbiased MMD^2
    reference = KernelInceptionDistance(feature=Precomputed(real_features.shape[1]), subsets=1, subset_size=6)
    reference.update(real_features, real=True)
    reference.update(grid_features, real=False)
    assert scores[KID] == pytest.approx(float(reference.compute()[0]), rel=1e-6)
    assert judge(grid, labels) == scores  # the real features, computed once, do not change


def test_a_missing_or_unfit_classifier_stops_before_training(tmp_path, fixture_data):
    real = folder_set(fixture_data / "ham10000")
    with pytest.raises(DataError, match="real/model.safetensors: not found: the filter's classifier"):
        ValidationJudge(tmp_path / "real", real, CLASSES)
    save_classifier(build_classifier("small_cnn", ["mel", "nv"], 32), tmp_path / "real" / WEIGHTS)
    with pytest.raises(DataError, match="does not know the train labels bcc"):
        ValidationJudge(tmp_path / "real", real, CLASSES)


def test_train_lora_is_judged_by_the_filters_classifier_not_the_evaluator():
    stage = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]["train_lora"]["do"]
    assert "--classifier outputs/${key}/classifier/real " in stage["cmd"] and "evaluator" not in stage["cmd"]
    assert "outputs/${key}/classifier/real" in stage["deps"]
