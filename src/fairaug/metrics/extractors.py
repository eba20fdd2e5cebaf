"""Feature extractors behind one interface: a batch of HxWx3 uint8 images -> float features (and
class logits where the network has them, for the Inception Score).

    inception   Inception-v3 with the torch-fidelity FID weights: the standard extractor, only with a
                weights file (configured, or in torch hub's cache); never on random weights.
    evaluator   a classifier trained only for measuring (train_evaluator@<d>: the real train
                split, its own seed), never the generate filter's: backbone features, head logits, and
                its classes for the label metrics. Nothing is graded by the model that selected it.
    pixels      standardised 16x16 thumbnails: no weights, works on any folder offline.

An extractor whose weights are missing has ``extract = None`` and a ``reason``; every metric named
after it is then reported unavailable with that reason. ``key`` names the network and its weights
(a hash), so that cached features are never reused across weights.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import torch
from PIL import Image

from fairaug.errors import DataError
from fairaug.weights.require import read_state_dict, require_file

ExtractorName = Literal["inception", "evaluator", "pixels"]
EXTRACTORS: tuple[ExtractorName, ...] = ("inception", "evaluator", "pixels")
# torch-fidelity's FID weights (converted from TF's 2015-12-05 Inception), as its download names them
INCEPTION_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
SIDE = 299  # Inception-v3 input side
THUMBNAIL_SIZE = 16  # the pixels extractor's side


def thumbnail_features(images: list[np.ndarray]) -> np.ndarray:
    """Standardised 16x16 RGB thumbnails, flattened: a pixel-space embedding for nearest neighbours
    (computed in float32, returned as float64, the dtype of the distance functions)."""
    small = np.stack([np.asarray(Image.fromarray(i).resize((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.Resampling.BOX),
                                 dtype=np.float32).ravel() for i in images])
    return ((small - small.mean(axis=1, keepdims=True)) / (small.std(axis=1, keepdims=True) + 1e-6)).astype(np.float64)


class Output(NamedTuple):
    features: np.ndarray  # (n, d) float64
    logits: np.ndarray | None  # (n, classes) float64, for the Inception Score


@dataclass(frozen=True)
class Extractor:
    name: str
    key: str
    extract: Callable[[Sequence[np.ndarray]], Output] | None = None
    reason: str | None = None
    classes: tuple[str, ...] | None = None  # what the logits' columns are, for a classifier

    @property
    def available(self) -> bool:
        return self.extract is not None


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def unavailable(name: str, reason: str) -> Extractor:
    return Extractor(name, key=name, reason=f"unavailable: {reason}")


def pixels_extractor() -> Extractor:
    return Extractor("pixels", key="pixels-16x16", extract=lambda images: Output(
        thumbnail_features(list(images)), None))


def evaluator_extractor(classifier_path: str | Path | None, device: str = "cpu") -> Extractor:
    """Penultimate-layer features and class logits of the evaluator classifier."""
    from fairaug.fairness.data import image_transform
    from fairaug.fairness.model import load_classifier

    if classifier_path is None or not Path(classifier_path).is_file():
        where = f" at {classifier_path}" if classifier_path else ""
        return unavailable("evaluator", f"evaluator classifier not found{where} (run "
                                        "train_evaluator@<dataset>, or pass --evaluator)")  # fmt: skip
    model = load_classifier(classifier_path).to(device)
    transform = image_transform(model.image_size)

    @torch.no_grad()
    def extract(images: Sequence[np.ndarray]) -> Output:
        # a copy: decoded images are read-only arrays, which torch warns about
        features = model.backbone(torch.stack([transform(np.array(image)) for image in images]).to(device))
        return Output(features.double().cpu().numpy(), model.head(features).double().cpu().numpy())

    return Extractor("evaluator", key=f"evaluator-{file_hash(Path(classifier_path))}", extract=extract,
                     classes=tuple(model.classes))  # fmt: skip


def find_inception_weights(configured: str | Path | None) -> Path | None:
    """The configured weights file, else torch-fidelity's download in torch hub's cache, else None."""
    if configured is not None:
        return Path(configured) if Path(configured).is_file() else None
    cached = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILE
    return cached if cached.is_file() else None


def inception_extractor(weights: str | Path | None = None, device: str = "cpu", required: bool = False) -> Extractor:
    """torch-fidelity's FID Inception-v3: pool features (2048) and unbiased logits (1008). Weights not
    found: unavailable, or (``required``) a DataError naming the file and the fetch command."""
    path = find_inception_weights(weights)
    if path is None and required:
        require_file(weights or Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILE,
                     "Inception-v3 FID weights (torch-fidelity)")
    if path is None:
        where = f"at {weights}" if weights else f"in {Path(torch.hub.get_dir()) / 'checkpoints'}"
        return unavailable("inception", f"Inception-v3 FID weights not found {where} (set "
                                        f"evaluate_quality.inception_weights or --inception-weights to a local "
                                        f"{INCEPTION_WEIGHTS_FILE}, downloaded on a connected machine)")
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    read_state_dict(path)  # torch-fidelity unpickles without weights_only: refuse anything but plain tensors first
    try:
        network = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                              feature_extractor_weights_path=str(path)).to(device)
    except RuntimeError as err:
        raise DataError(f"does not hold torch-fidelity's Inception-v3: {str(err).splitlines()[0][:200]}",
                        file=path) from None

    @torch.no_grad()
    def extract(images: Sequence[np.ndarray]) -> Output:
        if len({image.shape for image in images}) > 1:  # a folder of mixed sizes: one size to stack
            images = [np.asarray(Image.fromarray(image).resize((SIDE, SIDE), Image.Resampling.BILINEAR))
                      for image in images]
        batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous().to(device)
        features, logits = network(batch)  # resizes to 299 itself, as the TF original
        return Output(features.double().cpu().numpy(), logits.double().cpu().numpy())

    return Extractor("inception", key=f"inception-{file_hash(path)}", extract=extract)


def build_extractors(
    names: Sequence[ExtractorName],
    *,
    evaluator: str | Path | None = None,
    inception_weights: str | Path | None = None,
    device: str = "cpu",
    required: bool = False,
) -> list[Extractor]:
    factories = {
        "inception": lambda: inception_extractor(inception_weights, device, required),
        "evaluator": lambda: evaluator_extractor(evaluator, device),
        "pixels": pixels_extractor,
    }
    return [factories[name]() for name in dict.fromkeys(names)]
