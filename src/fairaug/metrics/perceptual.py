"""LPIPS (Zhang et al. 2018, the lpips package): a learned perceptual distance between two images.

Its linear layers ship with the package, its backbone is torchvision's ImageNet network, which
torchvision downloads: offline, LPIPS is available only when torch hub's cache already holds it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision

from fairaug.errors import DataError
from fairaug.weights.require import read_state_dict, require_file

MIN_SIDE = 64  # smaller images are upsampled: LPIPS was calibrated on 64 px patches
BACKBONE_WEIGHTS = {
    "alex": torchvision.models.AlexNet_Weights.IMAGENET1K_V1,
    "vgg": torchvision.models.VGG16_Weights.IMAGENET1K_V1,
    "squeeze": torchvision.models.SqueezeNet1_1_Weights.IMAGENET1K_V1,
}


@dataclass(frozen=True)
class Lpips:
    net: str
    distance: Callable[[Sequence[np.ndarray], Sequence[np.ndarray]], np.ndarray] | None = None
    reason: str | None = None


def backbone_file(net: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(BACKBONE_WEIGHTS[net].url).name


def lpips_from_module(net: str, module: torch.nn.Module, device: str = "cpu") -> Lpips:
    """Pairwise distances of same-sized uint8 image pairs with a constructed ``lpips.LPIPS``."""
    module = module.to(device).eval()

    @torch.no_grad()
    def distance(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> np.ndarray:
        def tensor(images: Sequence[np.ndarray]) -> torch.Tensor:
            batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().to(device)
            if min(batch.shape[-2:]) < MIN_SIDE:  # AlexNet's strides leave nothing of a 32 px image
                scale = MIN_SIDE / min(batch.shape[-2:])
                batch = torch.nn.functional.interpolate(batch, scale_factor=scale, mode="bilinear", align_corners=False)
            return batch / 127.5 - 1.0  # LPIPS takes [-1, 1]

        if len({image.shape for image in [*a, *b]}) > 1:  # mixed sizes (a folder): pair by pair
            return np.concatenate([distance([x], [y]) for x, y in zip(a, b, strict=True)])
        return module(tensor(a), tensor(b)).flatten().double().cpu().numpy()

    return Lpips(net, distance)


def load_backbone(module: torch.nn.Module, path: Path) -> None:
    """Load torchvision's ImageNet weights of the backbone (``features.<i>.*``, a .pth state dict read
    with weights_only, or safetensors) into an ``lpips.LPIPS``, whose slices keep the layer indices."""
    state = read_state_dict(path)
    try:
        module.net.load_state_dict({key: state[f"features.{key.split('.', 1)[1]}"]
                                    for key in module.net.state_dict()})  # fmt: skip
    except Exception as err:  # noqa: BLE001 - a foreign state dict is the user's input error
        raise DataError(f"does not hold torchvision's {module.pnet_type} ImageNet weights: "
                        f"{str(err).splitlines()[0][:200]}", file=path) from None


def load_lpips(net: str, device: str = "cpu", weights: str | Path | None = None, required: bool = False) -> Lpips:
    """LPIPS with ``net``'s ImageNet backbone from ``weights`` (a local file) or torch hub's cache;
    unavailable (with the reason) when it is not there, or (``required``) a DataError naming the file."""
    path = Path(weights) if weights is not None else backbone_file(net)
    if not path.is_file():
        if required:
            require_file(path, f"LPIPS backbone ({net}: torchvision ImageNet weights)")
        return Lpips(net, reason=f"unavailable: LPIPS needs torchvision's {net} ImageNet weights, not found at "
                                 f"{path} (download them once on a connected machine: fairaug weights fetch)")
    import lpips

    if weights is None:
        return lpips_from_module(net, lpips.LPIPS(net=net, verbose=False), device)
    module = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)  # random backbone: nothing downloaded
    load_backbone(module, path)
    return lpips_from_module(net, module, device)
