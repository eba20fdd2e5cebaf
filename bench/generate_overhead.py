"""Images/s of fairaug's generator (plan, per-image seeds, PNG + parquet shards) vs a bare
diffusers pipeline call on the same model, prompts, seeds and batches, side by side in one process.
Value: bare images/s over ours (our overhead; 1.00 = none)."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _report import report  # noqa: E402
from _smoke import sizes  # noqa: E402
from _tiny import TEMPLATE, tiny_base  # noqa: E402

from fairaug.config.generation import GenerateConfig  # noqa: E402
from fairaug.generation.plan import build_plan  # noqa: E402
from fairaug.generation.sampler import generate_shards, load_sampler  # noqa: E402

# best of 5 alternating repeats: 3 left +-7% run to run on this machine
REPEATS, PER_CELL, STEPS = sizes((5, 16, 20), (1, 2, 2))


def main() -> None:
    config = GenerateConfig(fsts=[1, 6], per_cell=PER_CELL, overgenerate=1.0, batch_size=16, shard_size=32,
                            steps=STEPS)
    plan = build_plan(config, TEMPLATE, "derm", ["mel", "nv"])
    with tempfile.TemporaryDirectory() as tmp:
        pipeline = load_sampler(tiny_base(Path(tmp) / "base"), None, config)
        ours, bare = [], []
        for repeat in range(REPEATS):
            start = time.perf_counter()
            generate_shards(pipeline, plan, Path(tmp) / f"out{repeat}", config, "bench")
            ours.append(len(plan) / (time.perf_counter() - start))
            start = time.perf_counter()
            for first in range(0, len(plan), config.batch_size):
                rows = plan.iloc[first : first + config.batch_size]
                pipeline(list(rows["prompt"]), num_inference_steps=config.steps, guidance_scale=config.guidance_scale,
                         generator=[torch.Generator().manual_seed(int(s)) for s in rows["seed"]], output_type="np")
            bare.append(len(plan) / (time.perf_counter() - start))
    ratio = max(bare) / max(ours)
    print(f"{len(plan)} images, batch {config.batch_size}, {config.steps} steps: ours {max(ours):.1f} img/s, "
          f"bare pipeline {max(bare):.1f} img/s")
    report("generate_overhead", ratio, "bare/ours images per s", "<= 1.05")


if __name__ == "__main__":
    main()
