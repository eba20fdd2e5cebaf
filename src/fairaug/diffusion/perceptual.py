"""The perceptual loss of LoRA training: feature maps of an ImageNet network compared between the decoded
x0 prediction and the real image (Johnson et al. 2016), as wound-care LoRA systems add it to the
diffusion loss.

The network is torchvision's VGG16 built without weights, its ImageNet weights loaded from a local file
that `fairaug weights fetch` put there: nothing is downloaded while a stage runs.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision

from fairaug.errors import DataError
from fairaug.weights.require import read_state_dict, require_file

WEIGHTS_URLS = {"vgg16": torchvision.models.VGG16_Weights.IMAGENET1K_V1.url}  # by train_lora.perceptual_loss.net
# index of each ReLU in torchvision's vgg16().features
VGG16_LAYERS = {"relu1_2": 3, "relu2_2": 8, "relu3_3": 15, "relu4_3": 22, "relu5_3": 29}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class PerceptualLoss(torch.nn.Module):
    """Mean over the tapped layers of the mean squared difference between the feature maps of two image
    batches in [-1, 1] (ImageNet-normalised first). ``features`` runs layer by layer up to the last tap;
    it is frozen, and gradients flow to the first batch only."""

    def __init__(self, features: torch.nn.Sequential, taps: list[int]):
        super().__init__()
        self.features = features[: max(taps) + 1].requires_grad_(False).eval()
        self.taps = sorted(set(taps))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def feature_maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = ((images + 1) / 2 - self.mean.to(images)) / self.std.to(images)
        maps = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.taps:
                maps.append(x)
        return maps

    def forward(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target_maps = self.feature_maps(targets.to(images))
        distances = [F.mse_loss(ours.float(), theirs.float())
                     for ours, theirs in zip(self.feature_maps(images), target_maps, strict=True)]  # fmt: skip
        return torch.stack(distances).mean()

    def train(self, mode: bool = True) -> PerceptualLoss:
        return super().train(False)  # frozen: dropout-free and eval always


def vgg16_perceptual(layers: list[str], weights: str | Path) -> PerceptualLoss:
    """`PerceptualLoss` on torchvision's VGG16 with its ImageNet weights from the local file ``weights``
    (a missing file: one line naming it and the fetch command)."""
    path = require_file(weights, "perceptual loss network (vgg16: torchvision ImageNet weights)")
    features = torchvision.models.vgg16(weights=None).features
    state = read_state_dict(path)
    try:
        features.load_state_dict({key: state[f"features.{key}"] for key in features.state_dict()})
    except (KeyError, RuntimeError) as err:
        raise DataError(f"does not hold torchvision's vgg16 ImageNet weights: {str(err).splitlines()[0][:200]}",
                        file=path) from None
    return PerceptualLoss(features, [VGG16_LAYERS[name] for name in layers])
