"""The classifier's data: manifest rows as normalised image tensors, the train / val / test
datasets of a manifest and their loaders."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset, default_collate
from torchvision.transforms import v2

from fairaug.config.fairness import ClassifierConfig
from fairaug.errors import DataError
from fairaug.progress import progress_bar

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_ROTATION_DEGREES = 15.0
DECODE_BATCH = 64  # images per batch a decoding worker returns


def image_transform(image_size: int) -> v2.Compose:
    """PIL image or HxWx3 uint8 array -> the normalised tensor the classifier takes."""
    return v2.Compose([_resize(image_size), _normalize()])


def _resize(image_size: int) -> v2.Compose:
    return v2.Compose([v2.ToImage(), v2.Resize((image_size, image_size), antialias=True)])


def _normalize() -> v2.Compose:
    return v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def flip_and_rotate(images: torch.Tensor, degrees: torch.Tensor, hflip: torch.Tensor, vflip: torch.Tensor) -> torch.Tensor:
    """Each image of a normalised N x 3 x H x W batch mirrored where ``hflip`` / ``vflip`` (N bools)
    say, then rotated counter-clockwise by its ``degrees`` (N floats) about its centre: nearest
    neighbour, corners black, as torchvision's `rotate`, in one `grid_sample` for the whole batch."""
    radians = torch.deg2rad(degrees.to(images.dtype))
    cos, sin, zero = radians.cos(), radians.sin(), torch.zeros_like(radians)
    # output pixel -> input pixel (normalised coordinates): undo the rotation, then the flips
    sign_x = 1.0 - 2.0 * hflip.to(images.dtype)
    sign_y = 1.0 - 2.0 * vflip.to(images.dtype)
    theta = torch.stack(
        [torch.stack([sign_x * cos, -sign_x * sin, zero], 1), torch.stack([sign_y * sin, sign_y * cos, zero], 1)], 1
    )
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    black = ((torch.zeros(3) - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)).to(images).view(1, 3, 1, 1)
    return F.grid_sample(images - black, grid, mode="nearest", padding_mode="zeros", align_corners=False) + black


def random_flips_and_rotations(images: torch.Tensor) -> torch.Tensor:
    """`flip_and_rotate` by a random horizontal and vertical flip (each with probability 1/2) and a
    rotation uniform in +-MAX_ROTATION_DEGREES per image, from torch's global generator."""
    n = len(images)
    degrees = (torch.rand(n) * 2 - 1) * MAX_ROTATION_DEGREES
    return flip_and_rotate(images, degrees, torch.rand(n) < 0.5, torch.rand(n) < 0.5)


def _collate_augmented(batch: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    images, targets, rows = default_collate(batch)
    return random_flips_and_rotations(images), targets, rows


class ManifestDataset(Dataset):
    """Images of manifest rows (``path`` relative to ``root``) as normalised tensors with their class
    position in ``classes`` and their row position. With ``augment``, `make_loader` flips and
    rotates each batch's images at random (lesions and wounds have no canonical orientation).

    Each image is decoded and resized once and kept as uint8 in one tensor (3 x image_size² bytes an
    image: 3 KB at 32 px, 150 KB at 224 px), so later epochs only normalise
    (bench/classifier_epoch.py). `decode_all` fills it in parallel before DataLoader workers start:
    a worker's own decodes would die with it at the end of each epoch."""

    def __init__(
        self, root: str | Path, rows: pd.DataFrame, classes: Sequence[str], image_size: int, augment: bool = False
    ):
        self.root, self.classes = Path(root), list(classes)
        self.rows = rows.reset_index(drop=True)
        unknown = sorted(set(self.rows["label"]) - set(self.classes))
        if unknown:
            raise DataError(f"labels {', '.join(map(str, unknown))} are not among the classes {', '.join(classes)}")
        self.targets = self.rows["label"].map({label: i for i, label in enumerate(self.classes)}).to_numpy(np.int64)
        self.image_size, self.augment = image_size, augment
        self.resize, self.normalize = _resize(image_size), _normalize()
        # memory is taken as images are written into it
        self.resized = torch.empty(len(self.rows), 3, image_size, image_size, dtype=torch.uint8)
        self.decoded = torch.zeros(len(self.rows), dtype=torch.bool)

    def __len__(self) -> int:
        return len(self.rows)

    def load_image(self, index: int) -> Image.Image:
        """The RGB image of row ``index``."""
        path = self.root / self.rows.at[index, "path"]
        try:
            with Image.open(path) as image:
                return image.convert("RGB")
        except OSError as err:
            raise DataError(f"cannot read image: {err}", file=path) from None

    def resized_image(self, index: int) -> torch.Tensor:
        """Row ``index``'s image as a 3 x image_size x image_size uint8 tensor, decoded on first use."""
        if not self.decoded[index]:
            self._keep(index, self.resize(self.load_image(index)))
        return self.resized[index]

    def _keep(self, index: int, image: torch.Tensor) -> None:
        self.resized[index], self.decoded[index] = image, True

    def decode_all(self, num_workers: int) -> None:
        """Decode and resize every image not decoded yet, in ``num_workers`` processes (0: this one)."""
        missing = torch.nonzero(~self.decoded).flatten().tolist()
        if not missing:
            return
        loader = DataLoader(_Decoder(self, missing), batch_size=DECODE_BATCH, num_workers=num_workers)
        for indices, images in progress_bar(loader, desc="decode images", unit="batch"):
            for index, image in zip(indices.tolist(), images, strict=True):
                self._keep(index, image)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        return self.normalize(self.resized_image(index)), int(self.targets[index]), index


class _Decoder(Dataset):
    """The ``indices`` of ``dataset`` as (index, resized uint8 image), decoded anew: DataLoader workers
    decode, the process that iterates keeps."""

    def __init__(self, dataset: ManifestDataset, indices: Sequence[int]):
        self.dataset, self.indices = dataset, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> tuple[int, torch.Tensor]:
        index = self.indices[position]
        return index, self.dataset.resize(self.dataset.load_image(index))


def split_datasets(
    root: str | Path, manifest: pd.DataFrame, classes: Sequence[str], config: ClassifierConfig
) -> dict[str, ManifestDataset]:
    """Train (augmented when ``config.augment``), val and test datasets of a manifest."""
    return {
        split: ManifestDataset(
            root,
            manifest[manifest["split"] == split],
            classes,
            config.image_size,
            augment=config.augment and split == "train",
        )
        for split in ("train", "val", "test")
    }


def make_loader(dataset: ManifestDataset, config: ClassifierConfig, shuffle: bool = False) -> DataLoader:
    """Batches of ``dataset``; with ``config.num_workers``, its images are decoded first by that many
    processes, and the same workers (persistent) then normalise and augment every epoch's batches."""
    if config.num_workers:
        dataset.decode_all(config.num_workers)
    # a seeded generator fixes the shuffling order and the workers' seeds
    generator = torch.Generator().manual_seed(config.seed)
    return DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=shuffle,
        num_workers=config.num_workers,
        persistent_workers=config.num_workers > 0,
        generator=generator,
        collate_fn=_collate_augmented if dataset.augment else None,
    )
