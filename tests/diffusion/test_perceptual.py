"""Perceptual losses: the feature distance (LoRA training's mean squared error, the tiny VAE's LPIPS
distance against the lpips package), the tiny VAE's feature network, LoRA training's VGG16 weights from a
local file, and the x0 that the UNet's prediction implies (against diffusers' scheduler)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from diffusers import DDPMScheduler
from lpips import normalize_tensor, spatial_average
from safetensors.torch import save_file

from fairaug.diffusion.loss import predicted_original
from fairaug.diffusion.perceptual import IMAGENET_MEAN, IMAGENET_STD, VGG16_LAYERS, PerceptualLoss, prompt_feature_net
from fairaug.diffusion.perceptual import vgg16_perceptual
from fairaug.errors import DataError


def two_layer_net() -> torch.nn.Sequential:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(8, 8, 3, stride=2, padding=1), torch.nn.ReLU())  # fmt: skip


def images(seed: int, n: int = 4, size: int = 32) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_feature_distance_is_the_mean_layer_mse_zero_for_identical_images_and_grows_with_distortion():
    net = two_layer_net()
    loss = PerceptualLoss(net, taps=[1, 3])
    real = images(0)
    distorted = [real + sigma * torch.randn(real.shape, generator=torch.Generator().manual_seed(1))
                 for sigma in (0.05, 0.1, 0.2, 0.4)]  # fmt: skip

    def by_hand(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        x, y = ((a + 1) / 2 - mean) / std, ((b + 1) / 2 - mean) / std
        first = (net[1](net[0](x)), net[1](net[0](y)))
        second = (net[3](net[2](first[0])), net[3](net[2](first[1])))
        return (F.mse_loss(*first) + F.mse_loss(*second)) / 2

    assert loss(real, real.clone()).item() == 0
    values = [loss(image, real).item() for image in distorted]
    assert all(a < b for a, b in zip(values, values[1:], strict=False)), values
    torch.testing.assert_close(loss(distorted[2], real), by_hand(distorted[2], real))
    # gradients reach the first batch only, not the frozen network
    moving = distorted[1].clone().requires_grad_(True)
    loss(moving, real).backward()
    assert moving.grad.abs().sum() > 0 and all(p.grad is None for p in net.parameters())


def test_unit_normalized_distance_is_lpips_without_its_linear_layers():
    """LPIPS (Zhang et al. 2018) with lpips=False: per layer, unit-normalised feature vectors, squared
    differences summed over channels and averaged over positions; here averaged over the layers."""
    net = two_layer_net()
    identity = (0.5, 0.5, 0.5)  # [-1, 1] images reach the network as they are
    loss = PerceptualLoss(net, taps=[1, 3], input_mean=identity, input_std=identity, unit_normalize=True)
    a, b = images(4), images(5)
    first = (net[1](net[0](a)), net[1](net[0](b)))
    second = (net[3](net[2](first[0])), net[3](net[2](first[1])))
    reference = [spatial_average((normalize_tensor(x) - normalize_tensor(y)).pow(2).sum(1, keepdim=True)).mean()
                 for x, y in (first, second)]  # fmt: skip
    torch.testing.assert_close(loss(a, b), torch.stack(reference).mean())
    assert loss(a, a.clone()).item() == 0
    assert loss(a, 3 * a).item() < loss(a, b).item()  # a scaled image's features point the same way after the ReLUs


def test_prompt_feature_net_taps_every_block_at_halving_resolutions():
    features, taps = prompt_feature_net((8, 16, 16))
    x = images(6, n=2)
    sizes = []
    for index, layer in enumerate(features):
        x = layer(x)
        if index in taps:
            assert isinstance(layer, torch.nn.SiLU)
            sizes.append(tuple(x.shape[1:]))
    assert sizes == [(8, 32, 32), (16, 16, 16), (16, 8, 8)]
    assert taps[-1] == len(features) - 1


@pytest.fixture(scope="module")
def vgg16_file(tmp_path_factory):
    """Random VGG16 features under torchvision's key names, as safetensors (the fetch's converted form)."""
    torch.manual_seed(0)
    features = torchvision.models.vgg16(weights=None).features
    path = tmp_path_factory.mktemp("vgg") / "vgg16.safetensors"
    save_file({f"features.{key}": value for key, value in features.state_dict().items()}, str(path))
    return path, features


def test_vgg16_loads_its_weights_from_a_local_file_and_measures_at_32_px(vgg16_file, tmp_path):
    path, reference = vgg16_file
    loss = vgg16_perceptual(["relu1_2", "relu3_3"], path)
    assert len(loss.features) == VGG16_LAYERS["relu3_3"] + 1  # nothing computed past the last tap
    assert torch.equal(loss.features[0].weight, reference[0].weight)
    real = images(2)
    assert loss(real, real).item() == 0
    assert 0 < loss(real.flip(-1), real).item() < loss(images(3), real).item()  # a mirror is nearer than another image

    with pytest.raises(DataError, match=r"nope.pth: missing perceptual loss network .*fairaug weights fetch"):
        vgg16_perceptual(["relu1_2"], tmp_path / "nope.pth")
    foreign = tmp_path / "squeeze.pth"
    torch.save(torchvision.models.squeezenet1_1().state_dict(), foreign)
    with pytest.raises(DataError, match="squeeze.pth: does not hold torchvision's vgg16 ImageNet weights"):
        vgg16_perceptual(["relu1_2"], foreign)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_x0_is_the_schedulers_pred_original_sample(prediction_type):
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                              beta_end=0.012, clip_sample=False, prediction_type=prediction_type)  # SD's schedule
    generator = torch.Generator().manual_seed(0)
    latents, noise = torch.randn(5, 4, 8, 8, generator=generator), torch.randn(5, 4, 8, 8, generator=generator)
    timesteps = torch.tensor([0, 17, 250, 640, 999])
    noisy = scheduler.add_noise(latents, noise, timesteps)
    prediction = torch.randn(5, 4, 8, 8, generator=generator)  # any model output
    ours = predicted_original(scheduler, noisy, prediction, timesteps)
    theirs = torch.cat([scheduler.step(prediction[i : i + 1], int(t), noisy[i : i + 1]).pred_original_sample
                        for i, t in enumerate(timesteps)])  # fmt: skip
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    # the exact prediction (the noise, or the velocity) gives back the clean latents
    exact = scheduler.get_velocity(latents, noise, timesteps) if prediction_type == "v_prediction" else noise
    torch.testing.assert_close(predicted_original(scheduler, noisy, exact, timesteps), latents, rtol=1e-3, atol=1e-3)
