"""LoRA training steps/s of an SD 1.5-sized model at 512 px (batch 1, 4, 8): fairaug's LoraTrainer vs a
plain diffusers + peft loop, side by side on the same GPU, both with the GPU options of the
sd15-ham10000 profile (bf16 mixed precision, gradient checkpointing, channels-last, compile as set
there: ours through train_lora's params, the plain loop by hand as diffusers' example does).

The model is SD 1.5's architecture built from its configs with random weights (bench/_sd15.py): a
step costs what it costs with the real weights, and nothing is downloaded. The plain loop is the one
of bench/lora_step.py (diffusers' train_text_to_image_lora.py per step) under bf16 autocast; both
encode images every step (cache_latents off: like for like). Value: the worst ours/plain s per step
over the batch sizes. Without a CUDA device it prints one line and a skipped result.
"""

from __future__ import annotations

import copy
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from _report import report  # noqa: E402
from _sd15 import sd15_pipeline, skip_without_cuda  # noqa: E402

BENCH, UNIT, TARGET = "gpu_lora", "ours/plain s per step", "<= 1.10"
BATCHES, WARMUP, STEPS, REPEATS = (1, 4, 8), 3, 10, 2
RESOLUTION = 512
GPU_OPTIONS = {"mixed_precision", "gradient_checkpointing", "channels_last", "compile"}


def run_ours(base, data, config, out: Path) -> float:
    from accelerate import Accelerator
    from diffusers import StableDiffusionPipeline

    from fairaug.diffusion.lora import LoraTrainer

    pipeline = StableDiffusionPipeline(**(base.components | {"unet": copy.deepcopy(base.unet)}))
    accelerator = Accelerator(mixed_precision={"fp32": "no"}.get(config.mixed_precision, config.mixed_precision))
    trainer = LoraTrainer(pipeline, data, config, out, "bench", accelerator)
    times = {}

    def log(metrics, step):
        torch.cuda.synchronize()
        times[step] = time.perf_counter()

    # the trainer validates at step 0 and at its last step (max_steps = WARMUP + STEPS + 1): both outside
    # the timed steps WARMUP + 1 .. WARMUP + STEPS, the ones the plain loop times
    trainer.train(resume=None, log=log)
    return (times[WARMUP + STEPS] - times[WARMUP]) / STEPS


def run_plain(base, data, config) -> float:
    from diffusers.training_utils import compute_snr
    from peft import LoraConfig
    from torch.utils.data import DataLoader

    from fairaug.diffusion.data import collate

    device = torch.device("cuda")
    unet, vae, text_encoder = copy.deepcopy(base.unet).to(device), base.vae.to(device), base.text_encoder.to(device)
    tokenizer, scheduler = base.tokenizer, base.scheduler
    for module in (unet, vae, text_encoder):
        module.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=config.rank, lora_alpha=config.alpha, init_lora_weights="gaussian",
                                target_modules=list(config.target_modules)))
    if config.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    if config.channels_last:
        unet.to(memory_format=torch.channels_last)
    if config.compile:
        unet.compile()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.mixed_precision)
    trainable = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    loader = DataLoader(data.train, batch_size=config.batch_size, shuffle=True, collate_fn=collate, drop_last=True)
    batches, times = iter(loader), []
    for _ in range(WARMUP + STEPS):
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            batch = next(batches)
        with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
            with torch.no_grad():
                pixels = batch["pixels"].to(device)
                latents = vae.encode(pixels).latent_dist.sample() * vae.config.scaling_factor
                tokens = tokenizer(batch["prompts"], padding="max_length", max_length=tokenizer.model_max_length,
                                   truncation=True, return_tensors="pt").input_ids.to(device)
                states = text_encoder(tokens)[0]
            noise = torch.randn_like(latents) + config.noise_offset * torch.randn(
                latents.shape[0], latents.shape[1], 1, 1, device=device)
            timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (latents.shape[0],), device=device)
            prediction = unet(scheduler.add_noise(latents, noise, timesteps), timesteps, states).sample
        snr = compute_snr(scheduler, timesteps)
        weights = torch.clamp(snr, max=config.snr_gamma) / snr
        loss = (F.mse_loss(prediction.float(), noise.float(), reduction="none").mean(dim=(1, 2, 3)) * weights).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()  # the plain loop logs its loss too
        torch.cuda.synchronize()
        times.append(time.perf_counter())
    return (times[-1] - times[WARMUP - 1]) / STEPS


def main() -> None:
    if skip_without_cuda(BENCH, UNIT, TARGET):
        return
    from _tiny import tiny_tokenizer

    from fairaug.config import DatasetConfig, Params, PrepareConfig, resolve_profile
    from fairaug.config.diffusion import BaseConfig, TrainLoraConfig
    from fairaug.data.fixtures import write_derm_fixture
    from fairaug.data.prepare import prepare_dataset
    from fairaug.diffusion.stage import lora_data

    base = sd15_pipeline(tiny_tokenizer())
    profile = resolve_profile("sd15-ham10000", Path(__file__).parents[1]).train_lora
    options = profile.model_dump(include=GPU_OPTIONS)
    print(f"train_lora options of sd15-ham10000: {options}", flush=True)
    ratios, lines = [], []
    with tempfile.TemporaryDirectory() as tmp:
        root = write_derm_fixture(Path(tmp) / "derm", n=80, seed=0, size=RESOLUTION)
        dataset = DatasetConfig(format="ham10000", root=str(root), domain="derm")
        manifest, _ = prepare_dataset("derm", dataset, PrepareConfig())
        params = Params().model_copy(update={"datasets": {"derm": dataset},
                                             "base": BaseConfig(resolution=RESOLUTION)})
        data = lora_data(params, "derm", manifest)
        for batch in BATCHES:
            config = TrainLoraConfig(batch_size=batch, max_steps=WARMUP + STEPS + 1, lr=1e-4, checkpoint_every=10_000,
                                     validate_every=10_000, cache_latents=False, select_by="val_loss",
                                     **options)
            ours, plain = [], []
            for repeat in range(REPEATS):  # alternate, so that drifting clocks hit both alike
                ours.append(run_ours(base, data, config, Path(tmp) / f"ours-{batch}-{repeat}"))
                plain.append(run_plain(base, data, config))
                torch.cuda.empty_cache()
            ratios.append(min(ours) / min(plain))
            lines.append(f"batch {batch}: ours {1 / min(ours):.2f} steps/s, plain {1 / min(plain):.2f} steps/s, "
                         f"ratio {ratios[-1]:.3f}, peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
            print(lines[-1], flush=True)
    worst = max(ratios)
    print(f"SD 1.5-sized LoRA (rank 8, attention), {RESOLUTION} px, {options}, {torch.cuda.get_device_name()}")
    report(BENCH, worst, UNIT, TARGET)


if __name__ == "__main__":
    main()
