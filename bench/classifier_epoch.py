"""The classifier's augmented training batches: `make_loader` over a `ManifestDataset` (each image
decoded and resized once, each batch flipped and rotated in one `grid_sample`) vs the plain
torchvision pipeline (decode, resize, flip, rotate and normalise every image every epoch, as the
classifier's loader did before).

Both run side by side in this process on the same fixture images; the ratio is our time over plain
time for the epochs after the first (below 1 means ours is faster). Augmentation draws differ, so
the tensors are compared by shape only; `flip_and_rotate` equals torchvision's per-image result
(tests/fairness/test_classifier.py).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from fairaug.config.fairness import ClassifierConfig
from fairaug.data.fixtures import write_derm_fixture
from fairaug.fairness.data import IMAGENET_MEAN, IMAGENET_STD, MAX_ROTATION_DEGREES, ManifestDataset, make_loader
from _report import report
from _smoke import sizes

N_IMAGES, SIZE, IMAGE_SIZE, EPOCHS = sizes((300, 64, 32, 3), (40, 64, 32, 1))


class PlainDataset(ManifestDataset):
    """Decodes and transforms every image on every access."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.plain_transform = v2.Compose([
            v2.ToImage(), v2.Resize((IMAGE_SIZE, IMAGE_SIZE), antialias=True),
            v2.RandomHorizontalFlip(), v2.RandomVerticalFlip(), v2.RandomRotation(MAX_ROTATION_DEGREES),
            v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ])  # fmt: skip

    def __getitem__(self, index: int):
        return self.plain_transform(self.load_image(index)), int(self.targets[index]), index


def epochs_seconds(loader: DataLoader) -> tuple[float, torch.Size]:
    for _ in loader:  # the first epoch decodes for both
        pass
    start = time.perf_counter()
    for _ in range(EPOCHS):
        for images, _, _ in loader:
            shape = images.shape
    return time.perf_counter() - start, shape


def main() -> None:
    config = ClassifierConfig()
    with tempfile.TemporaryDirectory() as tmp:
        root = write_derm_fixture(Path(tmp) / "derm", n=N_IMAGES, seed=0, size=SIZE)
        metadata = pd.read_csv(root / "HAM10000_metadata.csv")
        rows = pd.DataFrame({"path": [str(next(root.glob(f"*/{i}.jpg")).relative_to(root)) for i in metadata["image_id"]],
                             "label": metadata["dx"]})  # fmt: skip
        classes = sorted(rows["label"].unique())
        ours_s, ours_shape = epochs_seconds(make_loader(ManifestDataset(root, rows, classes, IMAGE_SIZE, augment=True), config, shuffle=True))
        plain = PlainDataset(root, rows, classes, IMAGE_SIZE)
        plain_s, plain_shape = epochs_seconds(DataLoader(plain, batch_size=config.batch_size, shuffle=True))
        assert ours_shape == plain_shape, (ours_shape, plain_shape)
    ratio = ours_s / plain_s
    print(f"{N_IMAGES} images, {EPOCHS} epochs: plain torchvision {plain_s:.2f} s, ours {ours_s:.2f} s")
    report("classifier_epoch", ratio, "ours/plain epoch time", "<= 0.50")


if __name__ == "__main__":
    main()
