"""Generation images/s of an SD 1.5-sized model at 512 px, 25 steps (batch 1, 8, 16):
fairaug's generator (plan, per-image seeds, padding, PNG + parquet shards) vs bare diffusers pipeline
calls on the same model, prompts, seeds and batches, side by side on the same GPU.

The model is SD 1.5's architecture built from its configs with random weights (bench/_sd15.py), with
the DPM-Solver++ scheduler and the GPU options (dtype, VAE slicing / tiling, channels-last, compile)
of the sd15-ham10000 profile, set up by generate's own `configure_sampler`; the bare calls run on
that same pipeline: nothing is downloaded. Value: the worst bare/ours
images per s over the batch sizes (our overhead; 1.00 = none). Without a CUDA device it prints one
line and a skipped result.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _sd15 import sd15_pipeline, skip_without_cuda  # noqa: E402

BENCH, UNIT, TARGET = "gpu_generate", "bare/ours images per s", "<= 1.05"
BATCHES, BATCHES_PER_RUN, REPEATS, STEPS = (1, 8, 16), 4, 2, 25
GPU_OPTIONS = {"dtype", "vae_slicing", "vae_tiling", "channels_last", "compile"}


def main() -> None:
    if skip_without_cuda(BENCH, UNIT, TARGET):
        return
    from _tiny import TEMPLATE, tiny_tokenizer

    from fairaug.config import resolve_profile
    from fairaug.generation.plan import build_plan
    from fairaug.generation.sampler import DTYPES, configure_sampler, generate_shards

    profile = resolve_profile("sd15-ham10000", Path(__file__).parents[1]).generate
    options = profile.model_dump(include=GPU_OPTIONS)
    print(f"generate options of sd15-ham10000: {options}", flush=True)
    pipeline = configure_sampler(sd15_pipeline(tiny_tokenizer()).to(dtype=DTYPES[profile.dtype]),
                                 profile.model_copy(update={"scheduler": "dpmsolver++"}), "cuda")
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        for batch in BATCHES:
            # fsts x labels x per_cell = BATCHES_PER_RUN full batches
            config = profile.model_copy(update={
                "fsts": [1, 6], "labels": ["mel"], "per_cell": batch * BATCHES_PER_RUN // 2, "top_up_to": None,
                "overgenerate": 1.0, "batch_size": batch, "shard_size": batch * 2, "steps": STEPS})  # fmt: skip
            plan = build_plan(config, TEMPLATE, "derm", ["mel"])

            def bare() -> None:
                for first in range(0, len(plan), batch):
                    rows = plan.iloc[first : first + batch]
                    pipeline(list(rows["prompt"]), negative_prompt=[""] * len(rows), num_inference_steps=STEPS,
                             guidance_scale=config.guidance_scale, output_type="np",
                             generator=[torch.Generator().manual_seed(int(s)) for s in rows["seed"]])

            pipeline(list(plan["prompt"][:batch]), num_inference_steps=2, output_type="np")  # warm-up
            ours_rates, bare_rates = [], []
            for repeat in range(REPEATS):
                torch.cuda.synchronize()
                start = time.perf_counter()
                generate_shards(pipeline, plan, Path(tmp) / f"out-{batch}-{repeat}", config, "bench")
                torch.cuda.synchronize()
                ours_rates.append(len(plan) / (time.perf_counter() - start))
                start = time.perf_counter()
                bare()
                torch.cuda.synchronize()
                bare_rates.append(len(plan) / (time.perf_counter() - start))
            ratios.append(max(bare_rates) / max(ours_rates))
            print(f"batch {batch}: ours {max(ours_rates):.2f} img/s, bare {max(bare_rates):.2f} img/s, "
                  f"ratio {ratios[-1]:.3f}, peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB", flush=True)
    worst = max(ratios)
    print(f"SD 1.5-sized pipeline, 512 px, {STEPS} steps DPM-Solver++, {options}, {torch.cuda.get_device_name()}")
    print(json.dumps({"bench": BENCH, "value": round(worst, 3), "unit": UNIT, "target": TARGET,
                      "holds": worst <= 1.05}))


if __name__ == "__main__":
    main()
