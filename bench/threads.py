"""Two processes at once, as `make test` runs them (two xdist workers on 2 cores), each pretraining a
tiny base for a few steps: torch's default threads (one per core) vs one thread per process
(OMP_NUM_THREADS=1, what tests/conftest.py sets). Side by side in this run; every process is timed
from its own start, so import time is left out. Value: one thread / default, wall seconds per pair.
A process alone is the other way round (2 cores, tiny pretraining batch 32: 12-13 s with two threads,
19-22 s with one), so `dvc repro`, one stage at a time, keeps torch's default.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from _report import report
from _smoke import sizes

VAE_STEPS, UNET_STEPS, NET_STEPS = sizes((8, 15, 4), (1, 2, 1))
WORKLOAD = f"""
import sys, time
sys.path.insert(0, {str(Path(__file__).parent)!r})
from fairaug.config.diffusion import BaseConfig, PretrainConfig
from fairaug.diffusion.base import build_tiny_pipeline
from fairaug.diffusion.pretrain import GenericSkinImages, pretrain_tiny
from _tiny import TEMPLATE, tiny_tokenizer
start = time.perf_counter()
pipeline = build_tiny_pipeline(BaseConfig(), tiny_tokenizer())
images = GenericSkinImages(64, 32, TEMPLATE, seed=0)
config = PretrainConfig(vae_steps={VAE_STEPS}, unet_steps={UNET_STEPS}, generic_skin_images=0,
                        perceptual_net_steps={NET_STEPS})
pretrain_tiny(pipeline, images, config, progress=False)
print(time.perf_counter() - start)
"""
PROCESSES = 2


def pair_seconds(threads: str | None) -> float:
    """The slower of two concurrent workloads, with OMP_NUM_THREADS = ``threads`` (None: torch's default)."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"} | ({"OMP_NUM_THREADS": threads} if threads else {})
    running = [subprocess.Popen([sys.executable, "-c", WORKLOAD], env=env, stdout=subprocess.PIPE, text=True)
               for _ in range(PROCESSES)]  # fmt: skip
    return max(float(process.communicate()[0].split()[-1]) for process in running)


def main() -> None:
    pair_seconds("1")  # warm the file cache
    default, single = pair_seconds(None), pair_seconds("1")
    print(f"{PROCESSES} processes on {os.cpu_count()} cores: default threads {default:.1f} s, one thread {single:.1f} s")
    report("threads", single / default, "one thread / default", "<= 1.00")


if __name__ == "__main__":
    main()
