"""Time per LoRA training step: fairaug's LoraTrainer vs a plain diffusers + peft loop.

The plain loop is what diffusers' train_text_to_image_lora.py does per step (DataLoader over the
images, VAE encode, noise, text encoder, UNet, MSE with Min-SNR weights, AdamW). Both train the same
tiny model on the same images, side by side in this process; ours adds step-indexed randomness,
FST-balanced sampling, EMA and bookkeeping. Value: ours / plain seconds per step.
"""

from __future__ import annotations

import itertools
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from diffusers.training_utils import compute_snr
from peft import LoraConfig
from torch.utils.data import DataLoader

from fairaug.config import DatasetConfig, Params, PrepareConfig
from fairaug.config.diffusion import BaseConfig, TrainLoraConfig
from fairaug.data.fixtures import write_derm_fixture
from fairaug.data.prepare import prepare_dataset
from fairaug.diffusion.base import build_tiny_pipeline
from fairaug.diffusion.data import collate
from fairaug.diffusion.lora import LoraTrainer
from fairaug.diffusion.prompts import all_prompts
from fairaug.diffusion.stage import lora_data
from fairaug.diffusion.tokenizer import build_tokenizer
from _report import best_of_alternating, report
from _smoke import sizes

# min over 5 alternating repeats: 3 left +-15% run to run on this machine
STEPS, WARMUP, REPEATS = sizes((40, 3, 5), (2, 1, 1))


def tiny_pipeline(params: Params):
    tokenizer = build_tokenizer(all_prompts(params.prompts.templates, {"derm": ["mel", "nv", "bkl"]}))
    return build_tiny_pipeline(BaseConfig(), tokenizer)


def ours(params: Params, data, out: Path) -> float:
    config = params.train_lora.model_copy(update={"max_steps": WARMUP + STEPS})
    trainer = LoraTrainer(tiny_pipeline(params), data, config, out, "bench", Accelerator(cpu=True))
    times = []
    trainer.train(resume=None, log=lambda metrics, step: times.append(time.perf_counter()))
    return (times[-1] - times[WARMUP - 1]) / STEPS


def plain(params: Params, data) -> float:
    config = params.train_lora
    pipeline = tiny_pipeline(params)
    unet, vae, text_encoder, tokenizer, scheduler = (pipeline.unet, pipeline.vae, pipeline.text_encoder,
                                                     pipeline.tokenizer, pipeline.scheduler)
    vae.requires_grad_(False)
    text_encoder.requires_grad_(False)
    unet.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=config.rank, lora_alpha=config.alpha, init_lora_weights="gaussian",
                                target_modules=list(config.target_modules)))
    params_ = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params_, lr=config.lr, weight_decay=config.weight_decay)
    loader = DataLoader(data.train, batch_size=config.batch_size, shuffle=True, collate_fn=collate, drop_last=True)
    batches = iter(loader)
    times = []
    for step in range(WARMUP + STEPS):
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            batch = next(batches)
        with torch.no_grad():
            latents = vae.encode(batch["pixels"]).latent_dist.sample() * vae.config.scaling_factor
            tokens = tokenizer(batch["prompts"], padding="max_length", max_length=tokenizer.model_max_length,
                               truncation=True, return_tensors="pt")
            states = text_encoder(tokens.input_ids)[0]
        noise = torch.randn_like(latents) + config.noise_offset * torch.randn(latents.shape[0], latents.shape[1], 1, 1)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (latents.shape[0],))
        prediction = unet(scheduler.add_noise(latents, noise, timesteps), timesteps, states).sample
        snr = compute_snr(scheduler, timesteps)
        weights = torch.clamp(snr, max=config.snr_gamma) / snr
        loss = (F.mse_loss(prediction, noise, reduction="none").mean(dim=(1, 2, 3)) * weights).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter())
    return (times[-1] - times[WARMUP - 1]) / STEPS


def main() -> None:
    torch.set_num_threads(torch.get_num_threads())
    with tempfile.TemporaryDirectory() as tmp:
        root = write_derm_fixture(Path(tmp) / "derm", n=200, seed=0)
        dataset = DatasetConfig(format="ham10000", root=str(root), domain="derm")
        manifest, _ = prepare_dataset("derm", dataset, PrepareConfig())
        params = Params().model_copy(update={
            "datasets": {"derm": dataset},
            # like for like: the plain loop encodes every step, so ours does too (cached latents: tiny_pretrain_step)
            # select_by val_loss: the sample grids of select_by samples are validation, not step time
            "train_lora": TrainLoraConfig(checkpoint_every=10_000, validate_every=10_000, cache_latents=False,
                                          select_by="val_loss"),
        })
        data = lora_data(params, "derm", manifest)
        runs = itertools.count()  # each of ours' runs in an output directory of its own
        ours_s, plain_s = best_of_alternating(lambda: ours(params, data, Path(tmp) / f"ours{next(runs)}"),
                                              lambda: plain(params, data), REPEATS)
    ratio = ours_s / plain_s
    print(f"s/step at batch {params.train_lora.batch_size}, {params.base.resolution} px: "
          f"ours {ours_s:.4f}, plain {plain_s:.4f}")
    report("lora_step", ratio, "ours/plain s per step", "<= 1.10")


if __name__ == "__main__":
    main()
