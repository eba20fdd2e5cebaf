"""The downstream classifier whose per-FST quality measures the effect of synthetic augmentation:
the network and its weights file.

A small CNN (tiny profile, ~100k parameters, 32-64 px) or a torchvision backbone (resnet50,
efficientnet_b0) with a linear head. Weights are safetensors with the architecture, classes and
image size in their metadata, so `load_classifier` needs nothing else. Its input is
`fairaug.fairness.data`'s, its training and predictions `fairaug.fairness.training`'s.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import safetensors
import safetensors.torch
import torch
import torchvision
from torch import nn

from fairaug.config.fairness import ClassifierArch
from fairaug.errors import DataError
from fairaug.io import atomic_write_bytes
from fairaug.weights.require import require_file


class SmallCNN(nn.Module):
    """Conv blocks (3x3 conv, batch norm, ReLU, 2x2 max-pool) and global average pooling: with the
    default widths ~97k parameters, a feature vector of ``widths[-1]`` values for 32-64 px images."""

    def __init__(self, widths: Sequence[int] = (16, 32, 64, 128)):
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for width in widths:
            layers += [
                nn.Conv2d(channels, width, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            channels = width
        self.layers = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out_features = channels

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images)


class Classifier(nn.Module):
    """A feature backbone and a linear head over ``classes``; remembers what rebuilds it."""

    def __init__(self, backbone: nn.Module, n_features: int, arch: str, classes: Sequence[str], image_size: int):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(n_features, len(classes))
        self.arch, self.classes, self.image_size = arch, list(classes), image_size

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))


def _torchvision_backbone(arch: str, pretrained: bool, weights_path: str | Path | None) -> tuple[nn.Module, int]:
    factory = {"resnet50": torchvision.models.resnet50, "efficientnet_b0": torchvision.models.efficientnet_b0}[arch]
    # downloads from download.pytorch.org: only where there is internet; offline, use weights_path
    network = factory(weights="IMAGENET1K_V1" if pretrained else None)
    if weights_path is not None:
        require_file(weights_path, f"{arch} ImageNet weights (train_classifier.weights_path)")
        _load_state(network, Path(weights_path), f"{arch} weights")
    if arch == "resnet50":
        n_features = network.fc.in_features
        network.fc = nn.Identity()
    else:
        n_features = network.classifier[-1].in_features
        network.classifier = network.classifier[:-1]  # keep EfficientNet's dropout, drop the ImageNet layer
    return network, n_features


def build_classifier(
    arch: ClassifierArch,
    classes: Sequence[str],
    image_size: int,
    *,
    pretrained: bool = False,
    weights_path: str | Path | None = None,
) -> Classifier:
    """A classifier over ``classes``. ``pretrained`` (download) or ``weights_path`` (a local
    safetensors file of the torchvision model) give a torchvision backbone its ImageNet weights."""
    if arch == "small_cnn":
        backbone: nn.Module = SmallCNN()
        n_features = backbone.out_features
    else:
        backbone, n_features = _torchvision_backbone(arch, pretrained, weights_path)
    return Classifier(backbone, n_features, arch, classes, image_size)


def _load_state(module: nn.Module, path: Path, what: str) -> None:
    if not path.is_file():
        raise DataError("file not found", file=path)
    try:
        state = safetensors.torch.load_file(path)
    except safetensors.SafetensorError as err:
        raise DataError(f"not a safetensors file: {err}", file=path) from None
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        # torch lists every missing/unexpected key: the first line of the list says enough
        lines = str(err).splitlines()
        first_problem = (lines[1] if len(lines) > 1 else lines[0]).strip()[:200]
        raise DataError(f"does not hold {what}: {first_problem}", file=path) from None


def save_classifier(model: Classifier, path: str | Path) -> Path:
    """Write the weights as safetensors (atomically), with arch, classes and image size as metadata."""
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    metadata = {"arch": model.arch, "classes": json.dumps(model.classes), "image_size": str(model.image_size)}
    return atomic_write_bytes(path, _sorted_metadata(safetensors.torch.save(state, metadata=metadata)))


def _sorted_metadata(data: bytes) -> bytes:
    """The safetensors bytes with the header's metadata keys sorted: safetensors writes them in a
    random order on every save (safetensors#584), so the same weights would give files, and DVC hashes,
    that differ between runs. Same keys, same header length: only their order changes."""
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + length])
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    canonical = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    if len(canonical) > length:  # not safetensors' own JSON: keep its (valid) bytes
        return data
    return data[:8] + canonical.ljust(length) + data[8 + length :]


def load_classifier(path: str | Path) -> Classifier:
    """Rebuild a classifier written by `save_classifier` (on the CPU, in eval mode)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", file=path)
    try:
        with safetensors.safe_open(path, framework="pt") as weights:
            metadata = weights.metadata() or {}
    except safetensors.SafetensorError as err:
        raise DataError(f"not a safetensors file: {err}", file=path) from None
    if not {"arch", "classes", "image_size"} <= metadata.keys():
        raise DataError("no classifier metadata (arch, classes, image_size): not written by fairaug", file=path)
    model = build_classifier(metadata["arch"], json.loads(metadata["classes"]), int(metadata["image_size"]))
    _load_state(model, path, f"a {metadata['arch']} classifier")
    return model.eval()
