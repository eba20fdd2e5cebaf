"""Pretraining of the tiny base from scratch: the VAE (after the network of its perceptual loss), then
UNet and text encoder together.

The tiny base stands in for Stable Diffusion, whose general knowledge includes every skin type and
which every data set starts from. So one base learns from the train split of every data set
(imbalanced: few FST V-VI), each prompted with its domain's template, and also from generic images of
healthy skin, uniform over FST I-VI, made with the fixtures' skin model (DESIGN.md, Profiles).

Every random draw comes from generators seeded by (seed, step) (`fairaug.diffusion.data`): the same
config and data give the same weights. The UNet phase numbers its steps after the VAE's, so the two
phases never share draws.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from diffusers import StableDiffusionPipeline
from torch.utils.data import ConcatDataset, Dataset

from fairaug.config.diffusion import BaseConfig, PretrainConfig, PromptsConfig
from fairaug.config.models import DatasetConfig
from fairaug.diffusion.base import build_tiny_pipeline
from fairaug.diffusion.data import ManifestImages, StepBatchSampler, collate, hflip, step_generator, step_seed
from fairaug.diffusion.loss import PosteriorCache, denoising_loss, draw_step_noise
from fairaug.diffusion.optim import adamw
from fairaug.diffusion.perceptual import PerceptualLoss, prompt_feature_net
from fairaug.diffusion.prompts import all_prompts, build_prompt, promptable
from fairaug.diffusion.tokenizer import build_tokenizer
from fairaug.progress import progress_bar
from fairaug.skin.render import photograph, sample_skin, skin_canvas
from fairaug.skin.types import FST_VALUES

KL_WEIGHT = 1e-6  # as SD's VAE: a nearly deterministic autoencoder whose latents stay well-scaled
SNR_GAMMA = 5.0
MAX_GRAD_NORM = 1.0
PERCEPTUAL_NET_BATCH, PERCEPTUAL_NET_LR = 64, 1e-3
PERCEPTUAL_NET_STREAM = 11  # seed stream of its batches and flips, apart from the VAE's and the UNet's
ENCODE_BATCH = 256  # images per VAE call outside the training steps
GENERIC_SKIN_STREAM = 7  # seed stream of the generic skin images, apart from the training draws


class GenericSkinImages(Dataset):
    """``n`` lesion-free skin images, FST I-VI in turn, prompted with the ``skin`` template."""

    def __init__(self, n: int, resolution: int, template: str, seed: int):
        self.fst = np.array([FST_VALUES[i % len(FST_VALUES)] for i in range(n)])
        self.prompts = [build_prompt(template, "skin", "", fst) for fst in self.fst]
        pixels = []
        for index, fst in enumerate(self.fst):
            rng = np.random.default_rng(step_seed(seed, index, GENERIC_SKIN_STREAM))
            canvas, _, _ = skin_canvas(rng, resolution, sample_skin(rng, int(fst)))
            pixels.append(torch.from_numpy(photograph(canvas, rng)).permute(2, 0, 1).float() / 127.5 - 1.0)
        self.pixels = torch.stack(pixels) if pixels else torch.empty(0, 3, resolution, resolution)

    def __len__(self) -> int:
        return len(self.fst)

    def __getitem__(self, index: int) -> dict:
        return {"pixels": self.pixels[index], "prompt": self.prompts[index], "index": index}


def pretraining_images(
    train_splits: Mapping[str, pd.DataFrame],
    datasets: Mapping[str, DatasetConfig],
    resolution: int,
    templates: Mapping[str, str],
    config: PretrainConfig,
) -> Dataset:
    """Every data set's train split (prompted with its domain's template), then the generic skin images."""
    parts = []
    for name, train in train_splits.items():
        dataset, train = datasets[name], promptable(train)
        prompts = [build_prompt(templates[dataset.domain], dataset.domain, row.label, row.fst)
                   for row in train.itertuples()]  # fmt: skip
        parts.append(ManifestImages(train, Path(dataset.root), resolution, prompts))
    parts.append(GenericSkinImages(config.generic_skin_images, resolution, templates["skin"], config.seed))
    return ConcatDataset(parts)


def pretrain_tiny(
    pipeline: StableDiffusionPipeline,
    images: Dataset,
    config: PretrainConfig,
    weights: np.ndarray | None = None,
    progress: bool = True,
) -> dict[str, list[float]]:
    """Train the pipeline's VAE (after its perceptual loss's network, when it has one), then its UNet
    and text encoder, on ``images`` (items with ``pixels`` in [-1, 1] and ``prompt``), drawn with
    probabilities ``weights`` (default: uniform). Returns the loss per step of each phase."""
    data = collate([images[i] for i in range(len(images))])  # a few MB at tiny resolutions
    if weights is None:
        weights = np.full(len(images), 1.0 / len(images))
    curves, perceptual = {}, None
    if config.vae_perceptual_weight > 0:
        perceptual, curves["perceptual_net_loss"] = train_perceptual_net(
            data["pixels"], data["prompts"], weights, config, progress
        )
    curves["vae_loss"] = train_vae(pipeline.vae, data["pixels"], weights, config, progress, perceptual)
    posteriors = encode_with_unit_variance(pipeline.vae, data["pixels"], config.seed, progress)
    curves["unet_loss"] = train_unet(pipeline, posteriors, data["prompts"], weights, config, progress)
    return curves


def _latent_shape(vae, pixels: torch.Tensor) -> tuple[int, int, int]:
    down_factor = 2 ** (len(vae.config.block_out_channels) - 1)
    return vae.config.latent_channels, pixels.shape[-2] // down_factor, pixels.shape[-1] // down_factor


def train_perceptual_net(
    pixels: torch.Tensor, prompts: list[str], weights: np.ndarray, config: PretrainConfig, progress: bool
) -> tuple[PerceptualLoss, list[float]]:
    """The VAE's perceptual loss: `prompt_feature_net` trained (cross-entropy, mirrored images) to tell
    the images' prompts apart, so its features are those that separate labels and skin types; and the
    training loss per step."""
    unique = sorted(set(prompts))
    targets = torch.tensor([unique.index(prompt) for prompt in prompts])
    seed = step_seed(config.seed, 0, PERCEPTUAL_NET_STREAM)
    with torch.random.fork_rng(devices=[]):  # its initial weights, as build_tiny_pipeline's
        torch.manual_seed(seed)
        features, taps = prompt_feature_net()
        widths = [layer.out_channels for layer in features if isinstance(layer, torch.nn.Conv2d)]
        head = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                   torch.nn.Linear(widths[-1], len(unique)))  # fmt: skip
    net = torch.nn.Sequential(features, head).train()
    optimizer = adamw(net.parameters(), lr=PERCEPTUAL_NET_LR)
    sampler = StepBatchSampler(weights, PERCEPTUAL_NET_BATCH, seed, 0, config.perceptual_net_steps)
    bar = progress_bar(total=config.perceptual_net_steps, desc="pretrain perceptual net", unit="step",
                       hide=not progress)  # fmt: skip
    losses = []
    for step, indices in enumerate(sampler):
        flip = torch.rand(len(indices), generator=step_generator(seed, step)) < 0.5
        loss = F.cross_entropy(net(hflip(pixels[indices], flip)), targets[indices])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        bar.update()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    # the images are in [-1, 1] as the network saw them: the loss's [0, 1] -> input normalisation undoes its shift
    loss = PerceptualLoss(features, taps, input_mean=(0.5, 0.5, 0.5), input_std=(0.5, 0.5, 0.5), unit_normalize=True)
    return loss, losses


def train_vae(
    vae, pixels: torch.Tensor, weights: np.ndarray, config: PretrainConfig, progress: bool,
    perceptual: PerceptualLoss | None = None,
) -> list[float]:
    """Reconstruction (L1 + MSE, and ``perceptual`` at `vae_perceptual_weight`) with a small KL term
    (`encode_with_unit_variance` then sets the scale)."""
    vae.train().requires_grad_(True)
    optimizer = adamw(vae.parameters(), lr=config.vae_lr)
    sampler = StepBatchSampler(weights, config.vae_batch_size, config.seed, 0, config.vae_steps)
    latent_shape = _latent_shape(vae, pixels)
    losses = []
    bar = progress_bar(total=config.vae_steps, desc="pretrain vae", unit="step", hide=not progress)
    for step, indices in enumerate(sampler):
        draws = draw_step_noise(config.seed, step, len(indices), latent_shape, num_train_timesteps=1)  # no timesteps
        batch = hflip(pixels[indices], draws.flip).to(vae.device)
        posterior = vae.encode(batch).latent_dist
        reconstruction = vae.decode(posterior.mean + posterior.std * draws.latent_noise.to(batch)).sample
        loss = (
            F.l1_loss(reconstruction, batch) + F.mse_loss(reconstruction, batch) + KL_WEIGHT * posterior.kl().mean()
        )
        if perceptual is not None:
            loss = loss + config.vae_perceptual_weight * perceptual(reconstruction, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), MAX_GRAD_NORM)
        optimizer.step()
        losses.append(loss.item())
        bar.update()
        bar.set_postfix(loss=f"{loss.item():.4f}")
    bar.close()
    vae.eval().requires_grad_(False)
    return losses


def encode_with_unit_variance(vae, pixels: torch.Tensor, seed: int, progress: bool) -> PosteriorCache:
    """The posteriors of ``pixels`` under the trained VAE, and the VAE's scaling factor set by SD's
    convention: latents * scaling_factor have unit variance, which the noise schedule assumes."""
    vae.register_to_config(scaling_factor=1.0)
    batches = pixels.split(ENCODE_BATCH)
    posteriors = PosteriorCache(vae, batches, total=len(batches), progress=progress)
    noise = torch.randn(posteriors.mean.shape[1:], generator=torch.Generator().manual_seed(seed))
    unscaled = posteriors.latents(torch.arange(len(posteriors)), torch.zeros(len(posteriors), dtype=torch.bool), noise)
    vae.register_to_config(scaling_factor=1.0 / unscaled.std().item())
    posteriors.scaling_factor = vae.config.scaling_factor
    return posteriors


def train_unet(
    pipeline: StableDiffusionPipeline,
    posteriors: PosteriorCache,
    prompts: list[str],
    weights: np.ndarray,
    config: PretrainConfig,
    progress: bool,
) -> list[float]:
    """UNet and text encoder together on the denoising loss (Min-SNR), with prompt dropout so that
    classifier-free guidance has an unconditional model to push away from. ``posteriors`` holds the
    training images' VAE posteriors, ``prompts`` their prompts."""
    unet, text_encoder, tokenizer = pipeline.unet, pipeline.text_encoder, pipeline.tokenizer
    unet.train().requires_grad_(True)
    text_encoder.train().requires_grad_(True)
    parameters = [*unet.parameters(), *text_encoder.parameters()]
    optimizer = adamw(parameters, lr=config.unet_lr)
    # every prompt tokenized once; the last row is the empty prompt of dropped-out samples
    unique = sorted(set(prompts))
    token_ids = tokenizer(
        [*unique, ""], padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
    prompt_rows = torch.tensor([unique.index(prompt) for prompt in prompts])
    first_step = config.vae_steps
    sampler = StepBatchSampler(weights, config.unet_batch_size, config.seed, first_step, first_step + config.unet_steps)
    latent_shape = tuple(posteriors.mean.shape[2:])
    num_train_timesteps = pipeline.scheduler.config.num_train_timesteps
    losses = []
    bar = progress_bar(total=config.unet_steps, desc="pretrain unet", unit="step", hide=not progress)
    for step, indices in enumerate(sampler, start=first_step):
        draws = draw_step_noise(
            config.seed, step, len(indices), latent_shape, num_train_timesteps,
            noise_offset=config.noise_offset, prompt_dropout=config.prompt_dropout,
        )  # fmt: skip
        latents = posteriors.latents(indices, draws.flip, draws.latent_noise)
        rows = torch.where(draws.drop_prompt, len(unique), prompt_rows[indices])
        hidden_states = text_encoder(token_ids[rows].to(text_encoder.device))[0]
        loss = denoising_loss(
            unet, pipeline.scheduler, latents, hidden_states, draws.noise, draws.timesteps, snr_gamma=SNR_GAMMA
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, MAX_GRAD_NORM)
        optimizer.step()
        losses.append(loss.item())
        bar.update()
        bar.set_postfix(loss=f"{loss.item():.4f}")
    bar.close()
    unet.eval().requires_grad_(False)
    text_encoder.eval().requires_grad_(False)
    return losses


def pretrain_base(
    base: BaseConfig,
    prompts: PromptsConfig,
    datasets: Mapping[str, DatasetConfig],
    train_splits: Mapping[str, pd.DataFrame],
    progress: bool = True,
) -> tuple[StableDiffusionPipeline, dict[str, list[float]]]:
    """The tiny base of ``base_model``: tokenizer from the prompt vocabulary of every data set's
    domain and labels, pipeline from config, pretrained on the train splits (data set name -> rows
    of its manifest) and the generic skin images."""
    domain_labels: dict[str, list[str]] = {}
    for name, train in train_splits.items():
        dataset = datasets[name]
        labels = domain_labels.setdefault(dataset.domain, [])
        labels.extend(label for label in [*(dataset.allowed_labels() or []), *sorted(train["label"].unique())]
                      if label not in labels)  # fmt: skip
    corpus = all_prompts({domain: prompts.templates[domain] for domain in [*domain_labels, "skin"]}, domain_labels)
    pipeline = build_tiny_pipeline(base, build_tokenizer(corpus))
    images = pretraining_images(train_splits, datasets, base.resolution, prompts.templates, base.pretrain)
    return pipeline, pretrain_tiny(pipeline, images, base.pretrain, progress=progress)
