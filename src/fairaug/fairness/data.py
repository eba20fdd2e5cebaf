"""The classifier's data: manifest rows as normalised image tensors, the train / val / test
datasets of a manifest and their loaders."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from fairaug.config.fairness import ClassifierConfig
from fairaug.errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_ROTATION_DEGREES = 15.0



def image_transform(image_size: int, augment: bool = False) -> v2.Compose:
    """PIL image or HxWx3 uint8 array -> the normalised tensor the classifier takes."""
    augmentation = [
        v2.RandomHorizontalFlip(),
        v2.RandomVerticalFlip(),
        v2.RandomRotation(MAX_ROTATION_DEGREES),
    ]
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize((image_size, image_size), antialias=True),
            *(augmentation if augment else []),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


class ManifestDataset(Dataset):
    """Images of manifest rows (``path`` relative to ``root``) as normalised tensors with their class
    position in ``classes`` and their row position; ``augment`` adds random flips and small rotations
    (lesions and wounds have no canonical orientation)."""

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
        self.transform = image_transform(image_size, augment)

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

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        return self.transform(self.load_image(index)), int(self.targets[index]), index


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
    # a seeded generator fixes the shuffling order and the workers' seeds
    generator = torch.Generator().manual_seed(config.seed)
    return DataLoader(
        dataset, batch_size=config.batch_size, shuffle=shuffle, num_workers=config.num_workers, generator=generator
    )
