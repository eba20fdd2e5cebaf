"""Feature extractors: availability, reasons, and the Inception loading path (on a randomly
initialised network saved here: it checks the code path, never a metric value)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fairaug.errors import DataError
from fairaug.fairness.model import build_classifier, save_classifier
from fairaug.metrics.extractors import INCEPTION_WEIGHTS_FILE, build_extractors, evaluator_extractor, inception_extractor
from fairaug.metrics.features import FeatureCache, extract, folder_set
from fairaug.metrics.perceptual import load_lpips, lpips_from_module


@pytest.fixture(autouse=True)
def empty_torch_home(tmp_path, monkeypatch):
    """No weights anywhere: torch hub's cache is an empty temp dir."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


def images(n: int, size: int = 32, seed: int = 0) -> list[np.ndarray]:
    return list(np.random.default_rng(seed).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8))


def random_inception_weights(path, monkeypatch):
    """Save the state dict of a randomly initialised torch-fidelity Inception-v3 (no download)."""
    import torch_fidelity.feature_extractor_inceptionv3 as module

    with monkeypatch.context() as patch:
        patch.setattr(module, "load_state_dict_from_url", lambda *args, **kwargs: {})
        patch.setattr(module.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None)
        network = module.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    torch.save(network.state_dict(), path)
    return path


def test_pixels_needs_no_weights():
    (pixels,) = build_extractors(["pixels"])
    output = pixels.extract(images(3))
    assert pixels.available and output.features.shape == (3, 768) and output.logits is None


def test_inception_without_weights_is_unavailable_with_the_reason():
    extractor = inception_extractor(None)
    assert not extractor.available and extractor.extract is None
    assert extractor.reason.startswith("unavailable: Inception-v3 FID weights not found")
    assert "inception_weights" in extractor.reason and INCEPTION_WEIGHTS_FILE in extractor.reason
    assert "not found at /nowhere.pth" in inception_extractor("/nowhere.pth").reason


def test_inception_loads_a_local_weights_file(tmp_path, monkeypatch):
    weights = random_inception_weights(tmp_path / "inception.pth", monkeypatch)
    extractor = inception_extractor(weights)
    output = extractor.extract(images(2, size=40) + images(1, size=24))  # mixed sizes, as in a folder
    assert output.features.shape == (3, 2048) and output.logits.shape == (3, 1008)
    assert extractor.key.startswith("inception-")


def test_inception_weights_from_torch_hub_cache(tmp_path, monkeypatch):
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    random_inception_weights(checkpoints / INCEPTION_WEIGHTS_FILE, monkeypatch)
    assert inception_extractor(None).available


def test_inception_rejects_a_file_that_is_not_its_state_dict(tmp_path):
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="bad.pth"):
        inception_extractor(tmp_path / "bad.pth")
    torch.save({"weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(DataError, match="Inception-v3"):
        inception_extractor(tmp_path / "other.pth")


def test_evaluator_extractor_uses_the_classifier_and_knows_its_classes(tmp_path):
    path = save_classifier(build_classifier("small_cnn", ["a", "b", "c"], 32), tmp_path / "model.safetensors")
    extractor = evaluator_extractor(path)
    output = extractor.extract(images(4, size=64))
    assert output.features.shape == (4, 128) and output.logits.shape == (4, 3)
    assert extractor.classes == ("a", "b", "c")
    missing = evaluator_extractor(tmp_path / "none.safetensors")
    assert not missing.available and "evaluator classifier not found" in missing.reason


def test_lpips_needs_cached_backbone_weights():
    import lpips

    unavailable = load_lpips("alex")
    assert unavailable.distance is None and "alexnet-owt-7be5be79.pth" in unavailable.reason
    random_backbone = lpips_from_module("alex", lpips.LPIPS(net="alex", pnet_rand=True, verbose=False))
    a, b = images(2), images(2, seed=1)
    assert random_backbone.distance(a, a) == pytest.approx([0.0, 0.0], abs=1e-6)
    assert (random_backbone.distance(a, b) > 0).all()


def test_real_features_are_cached(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    from PIL import Image

    for i, image in enumerate(images(5)):
        Image.fromarray(image).save(folder / f"{i}.png")
    image_set = folder_set(folder)
    cache = FeatureCache(tmp_path / "cache")
    calls = []
    (pixels,) = build_extractors(["pixels"])
    counting = type(pixels)(pixels.name, pixels.key, lambda batch: calls.append(len(batch)) or pixels.extract(batch))
    first = cache.features(image_set, [counting], batch_size=2)
    again = cache.features(image_set, [counting], batch_size=2)
    assert calls == [2, 2, 1]  # the second call read the cache
    np.testing.assert_array_equal(first["pixels"].features, again["pixels"].features)
    np.testing.assert_array_equal(first["pixels"].features, extract(image_set, [pixels], 5)[1]["pixels"].features)
