"""Perceptual losses: feature maps of a frozen network compared between a generated and a real image
(Johnson et al. 2016).

- LoRA training compares the decoded x0 prediction with the real image on torchvision's VGG16, as
  wound-care LoRA systems add it to the diffusion loss. The network is built without weights, its
  ImageNet weights loaded from a local file that `fairaug weights fetch` put there: nothing is
  downloaded while a stage runs.
- The tiny base's VAE compares its reconstructions with their images on a small network it trains
  first, from scratch, to tell the pretraining prompts apart (`prompt_feature_net`): the offline
  profile has no ImageNet weights, and pixel losses alone blur the lesions' marks. Its distance is
  LPIPS's: feature vectors unit-normalised per position, squared differences summed over channels.
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
    batches in [-1, 1] (first normalised to ``input_mean`` / ``input_std`` of [0, 1] images, ImageNet's by
    default). ``unit_normalize``: LPIPS's distance instead (unit feature vectors, squared differences
    summed over channels, averaged over positions). ``features`` runs layer by layer up to the last tap;
    it is frozen, and gradients flow to the first batch only."""

    def __init__(self, features: torch.nn.Sequential, taps: list[int], input_mean: tuple = IMAGENET_MEAN,
                 input_std: tuple = IMAGENET_STD, unit_normalize: bool = False):
        super().__init__()
        self.features = features[: max(taps) + 1].requires_grad_(False).eval()
        self.taps = sorted(set(taps))
        self.unit_normalize = unit_normalize
        self.register_buffer("mean", torch.tensor(input_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(input_std).view(1, 3, 1, 1), persistent=False)

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
        pairs = zip(self.feature_maps(images), target_maps, strict=True)
        if self.unit_normalize:
            distances = [(unit_vectors(ours) - unit_vectors(theirs)).pow(2).sum(1).mean() for ours, theirs in pairs]
        else:
            distances = [F.mse_loss(ours.float(), theirs.float()) for ours, theirs in pairs]
        return torch.stack(distances).mean()

    def train(self, mode: bool = True) -> PerceptualLoss:
        return super().train(False)  # frozen: dropout-free and eval always


def unit_vectors(feature_maps: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Each position's feature vector scaled to unit length (LPIPS's normalize_tensor)."""
    feature_maps = feature_maps.float()
    return feature_maps / (feature_maps.pow(2).sum(1, keepdim=True).sqrt() + eps)


def prompt_feature_net(widths: tuple[int, ...] = (32, 64, 128, 128)) -> tuple[torch.nn.Sequential, list[int]]:
    """Conv blocks (3x3 conv, group norm, SiLU; the first at full resolution, each later one halving it)
    and the index of each block's output: the features of `PerceptualLoss` for the tiny VAE. Unlike the
    classifiers that filter and grade synthetic images (batch norm, ReLU, max-pooling), so the VAE is
    not shaped by a copy of its graders' architecture."""
    layers: list[torch.nn.Module] = []
    channels = 3
    for index, width in enumerate(widths):
        layers += [torch.nn.Conv2d(channels, width, kernel_size=3, stride=1 if index == 0 else 2, padding=1),
                   torch.nn.GroupNorm(8, width), torch.nn.SiLU()]  # fmt: skip
        channels = width
    return torch.nn.Sequential(*layers), [3 * index + 2 for index in range(len(widths))]


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
