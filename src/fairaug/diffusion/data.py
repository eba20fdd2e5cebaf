"""Training images from the manifest, and step-indexed batches.

Every random choice of a training step (which images, flips, noise, timesteps) is drawn from a
generator seeded by ``(seed, step)``. A run resumed at step k therefore sees exactly what an
uninterrupted run sees from step k on, without restoring any sampler state, and under
`accelerate launch` each process takes a disjoint slice of the same global batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler


def step_seed(seed: int, step: int, stream: int = 0) -> int:
    """A 63-bit seed for one (run seed, step, stream): independent streams per purpose."""
    return int(np.random.SeedSequence([seed, step, stream]).generate_state(1, dtype=np.uint64)[0] >> 1)


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(step_seed(seed, step, stream))


def balanced_weights(frame: pd.DataFrame, by: list[str], power: float = 1.0) -> np.ndarray:
    """Sampling probability per row, proportional to 1 / (size of its cell over ``by``) ** power.

    power 0 keeps the data's distribution; power 1 makes every cell (e.g. FST x label) equally likely,
    which is how rare dark-skin images get seen as often as light-skin ones.
    """
    if not by or power == 0:
        return np.full(len(frame), 1.0 / len(frame))
    cell_size = frame.groupby(by, sort=False)[by[0]].transform("size").to_numpy(dtype=float)
    weights = cell_size**-power
    return weights / weights.sum()


class StepBatchSampler(Sampler[list[int]]):
    """Yields, for steps ``start_step .. num_steps - 1``, this process's slice of the step's batch."""

    def __init__(self, weights: np.ndarray, batch_size: int, seed: int, start_step: int, num_steps: int,
                 rank: int = 0, world_size: int = 1):
        if batch_size % world_size:
            raise ValueError(f"batch size {batch_size} is not divisible by {world_size} processes")
        self.weights, self.batch_size, self.seed = weights, batch_size, seed
        self.start_step, self.num_steps, self.rank, self.world_size = start_step, num_steps, rank, world_size

    def indices(self, step: int) -> np.ndarray:
        rng = np.random.default_rng(step_seed(self.seed, step))
        return rng.choice(len(self.weights), size=self.batch_size, replace=True, p=self.weights)

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start_step, self.num_steps):
            yield self.indices(step)[self.rank :: self.world_size].tolist()

    def __len__(self) -> int:
        return max(0, self.num_steps - self.start_step)


class ManifestImages(Dataset):
    """Images of a manifest as tensors in [-1, 1] at ``resolution``, with their prompt."""

    def __init__(self, frame: pd.DataFrame, root: Path, resolution: int, prompts: list[str]):
        self.paths = [Path(root) / p for p in frame["path"]]
        self.prompts = prompts
        self.resolution = resolution

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        with Image.open(self.paths[index]) as image:
            rgb = image.convert("RGB").resize((self.resolution, self.resolution), Image.Resampling.BICUBIC)
        pixels = torch.from_numpy(np.asarray(rgb, dtype=np.float32)).permute(2, 0, 1) / 127.5 - 1.0
        return {"pixels": pixels, "prompt": self.prompts[index], "index": index}


def collate(items: list[dict]) -> dict:
    return {
        "pixels": torch.stack([item["pixels"] for item in items]),
        "prompts": [item["prompt"] for item in items],
        "indices": torch.tensor([item["index"] for item in items]),
    }


def hflip(pixels: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Mirror the images where ``flip`` is set (lesions and wounds have no handedness)."""
    return torch.where(flip[:, None, None, None].to(pixels.device), pixels.flip(-1), pixels)
