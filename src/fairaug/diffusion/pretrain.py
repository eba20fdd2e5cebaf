"""Pretraining of the tiny base from scratch: the VAE first, then UNet and text encoder together.

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
from fairaug.diffusion.data import ManifestImages, StepBatchSampler, collate, hflip, step_seed
from fairaug.diffusion.loss import PosteriorCache, denoising_loss, draw_step_noise
from fairaug.diffusion.optim import adamw
from fairaug.diffusion.prompts import all_prompts, build_prompt, promptable
from fairaug.diffusion.tokenizer import build_tokenizer
from fairaug.progress import progress_bar
from fairaug.skin.render import photograph, sample_skin, skin_canvas
from fairaug.skin.types import FST_VALUES

KL_WEIGHT = 1e-6  # as SD's VAE: a nearly deterministic autoencoder whose latents stay well-scaled
SNR_GAMMA = 5.0
MAX_GRAD_NORM = 1.0
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
    """Train the pipeline's VAE, then its UNet and text encoder, on ``images`` (items with ``pixels`` in
    [-1, 1] and ``prompt``), drawn with probabilities ``weights`` (default: uniform). Returns the loss
    per step of each phase."""
    data = collate([images[i] for i in range(len(images))])  # a few MB at tiny resolutions
    if weights is None:
        weights = np.full(len(images), 1.0 / len(images))
    vae_loss = train_vae(pipeline.vae, data["pixels"], weights, config, progress)
    posteriors = encode_with_unit_variance(pipeline.vae, data["pixels"], config.seed, progress)
    unet_loss = train_unet(pipeline, posteriors, data["prompts"], weights, config, progress)
    return {"vae_loss": vae_loss, "unet_loss": unet_loss}


def _latent_shape(vae, pixels: torch.Tensor) -> tuple[int, int, int]:
    down_factor = 2 ** (len(vae.config.block_out_channels) - 1)
    return vae.config.latent_channels, pixels.shape[-2] // down_factor, pixels.shape[-1] // down_factor


def train_vae(vae, pixels: torch.Tensor, weights: np.ndarray, config: PretrainConfig, progress: bool) -> list[float]:
    """Reconstruction (L1 + MSE) with a small KL term (`encode_with_unit_variance` then sets the scale)."""
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
