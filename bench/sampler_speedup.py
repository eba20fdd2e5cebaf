"""Seconds per image: PNDM 50 steps at batch 1 (the StableDiffusionPipeline default) vs fairaug's
default DPM-Solver++ 20 steps at batch 16, same tiny model, side by side. Value: the speed-up."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _report import report  # noqa: E402
from _smoke import sizes  # noqa: E402
from _tiny import TEMPLATE, tiny_base  # noqa: E402

from fairaug.config.generation import GenerateConfig  # noqa: E402
from fairaug.generation.plan import build_plan  # noqa: E402
from fairaug.generation.sampler import load_sampler, sample_batch  # noqa: E402

N_IMAGES = sizes(32, 4)


def seconds_per_image(base: Path, scheduler: str, steps: int, batch_size: int) -> float:
    config = GenerateConfig(fsts=[1, 6], per_cell=N_IMAGES // 4, overgenerate=1.0, scheduler=scheduler,
                            steps=steps, batch_size=batch_size, shard_size=batch_size * 2)
    plan = build_plan(config, TEMPLATE, "derm", ["mel", "nv"])
    pipeline = load_sampler(base, None, config)
    start = time.perf_counter()
    for first in range(0, len(plan), batch_size):
        sample_batch(pipeline, plan.iloc[first : first + batch_size], config)
    return (time.perf_counter() - start) / len(plan)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = tiny_base(Path(tmp) / "base")
        slow = seconds_per_image(base, "pndm", 50, 1)
        fast = seconds_per_image(base, "dpmsolver++", 20, 16)
    speedup = slow / fast
    print(f"PNDM 50 steps batch 1: {slow:.4f} s/img; DPM-Solver++ 20 steps batch 16: {fast:.4f} s/img")
    report("sampler_speedup", speedup, "x faster per image", ">= 2.5", digits=2)


if __name__ == "__main__":
    main()
