"""The downstream classifier whose per-FST quality measures the effect of synthetic augmentation.

A small CNN (tiny profile, ~100k parameters, 32-64 px) or a torchvision backbone (resnet50,
efficientnet_b0) with a linear head, trained on the manifest's train split with inverse-frequency
class weights, AdamW and early stopping on the validation loss. Weights are safetensors with the
architecture, classes and image size in their metadata, so `load_classifier` needs nothing else.
`predict` writes the prediction-table format of `fairaug.fairness.metrics`.

Optional fairness-aware training (``fst_confusion_weight`` > 0, FairDisCo-style skin-type
confusion): a linear branch on the features learns to predict the FST (on detached features, its
own optimiser), and the backbone gets an extra loss, the branch's cross-entropy against the uniform
distribution over the six types, so that the features carry less skin-type information. The branch
is for training only: the saved classifier and its predictions have no trace of it.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import safetensors
import safetensors.torch
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from fairaug.config.fairness import ClassifierArch, ClassifierConfig
from fairaug.data.labels import FST_UNKNOWN, FST_VALUES
from fairaug.errors import DataError
from fairaug.fairness.metrics import score_column
from fairaug.io import atomic_write_bytes
from fairaug.progress import progress_bar
from fairaug.weights.require import require_file

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_ROTATION_DEGREES = 15.0
PREDICTION_ID_COLUMNS = ("path", "label", "fst", "group_id")


# --------------------------------------------------------------------------------------------------
# Networks


class SmallCNN(nn.Module):
    """Conv blocks (3x3 conv, batch norm, ReLU, 2x2 max-pool) and global average pooling: with the
    default widths ~97k parameters, a feature vector of ``widths[-1]`` values for 32-64 px images."""

    def __init__(self, widths: Sequence[int] = (16, 32, 64, 128)):
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for width in widths:
            layers += [
                nn.Conv2d(channels, width, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            channels = width
        self.layers = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out_features = channels

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images)


class Classifier(nn.Module):
    """A feature backbone and a linear head over ``classes``; remembers what rebuilds it."""

    def __init__(self, backbone: nn.Module, n_features: int, arch: str, classes: Sequence[str], image_size: int):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(n_features, len(classes))
        self.arch, self.classes, self.image_size = arch, list(classes), image_size

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))


def _torchvision_backbone(arch: str, pretrained: bool, weights_path: str | Path | None) -> tuple[nn.Module, int]:
    factory = {"resnet50": torchvision.models.resnet50, "efficientnet_b0": torchvision.models.efficientnet_b0}[arch]
    # downloads from download.pytorch.org: only where there is internet; offline, use weights_path
    network = factory(weights="IMAGENET1K_V1" if pretrained else None)
    if weights_path is not None:
        require_file(weights_path, f"{arch} ImageNet weights (train_classifier.weights_path)")
        _load_state(network, Path(weights_path), f"{arch} weights")
    if arch == "resnet50":
        n_features = network.fc.in_features
        network.fc = nn.Identity()
    else:
        n_features = network.classifier[-1].in_features
        network.classifier = network.classifier[:-1]  # keep EfficientNet's dropout, drop the ImageNet layer
    return network, n_features


def build_classifier(
    arch: ClassifierArch,
    classes: Sequence[str],
    image_size: int,
    *,
    pretrained: bool = False,
    weights_path: str | Path | None = None,
) -> Classifier:
    """A classifier over ``classes``. ``pretrained`` (download) or ``weights_path`` (a local
    safetensors file of the torchvision model) give a torchvision backbone its ImageNet weights."""
    if arch == "small_cnn":
        backbone: nn.Module = SmallCNN()
        n_features = backbone.out_features
    else:
        backbone, n_features = _torchvision_backbone(arch, pretrained, weights_path)
    return Classifier(backbone, n_features, arch, classes, image_size)


def _load_state(module: nn.Module, path: Path, what: str) -> None:
    if not path.is_file():
        raise DataError("file not found", file=path)
    try:
        state = safetensors.torch.load_file(path)
    except safetensors.SafetensorError as err:
        raise DataError(f"not a safetensors file: {err}", file=path) from None
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        # torch lists every missing/unexpected key: the first line of the list says enough
        lines = str(err).splitlines()
        first_problem = (lines[1] if len(lines) > 1 else lines[0]).strip()[:200]
        raise DataError(f"does not hold {what}: {first_problem}", file=path) from None


def save_classifier(model: Classifier, path: str | Path) -> Path:
    """Write the weights as safetensors (atomically), with arch, classes and image size as metadata."""
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    metadata = {"arch": model.arch, "classes": json.dumps(model.classes), "image_size": str(model.image_size)}
    return atomic_write_bytes(path, safetensors.torch.save(state, metadata=metadata))


def load_classifier(path: str | Path) -> Classifier:
    """Rebuild a classifier written by `save_classifier` (on the CPU, in eval mode)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", file=path)
    try:
        with safetensors.safe_open(path, framework="pt") as weights:
            metadata = weights.metadata() or {}
    except safetensors.SafetensorError as err:
        raise DataError(f"not a safetensors file: {err}", file=path) from None
    if not {"arch", "classes", "image_size"} <= metadata.keys():
        raise DataError("no classifier metadata (arch, classes, image_size): not written by fairaug", file=path)
    model = build_classifier(metadata["arch"], json.loads(metadata["classes"]), int(metadata["image_size"]))
    _load_state(model, path, f"a {metadata['arch']} classifier")
    return model.eval()


# --------------------------------------------------------------------------------------------------
# Data


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


# --------------------------------------------------------------------------------------------------
# Training and prediction


@dataclass
class TrainingHistory:
    """Per-epoch mean (class-weighted) losses; ``best_epoch`` (from 1) is the epoch whose weights were kept."""

    train_loss: list[float] = field(default_factory=list)
    fst_branch_loss: list[float] = field(default_factory=list)  # with the FST confusion branch only
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = 0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def inverse_frequency_weights(targets: np.ndarray, n_classes: int) -> torch.Tensor:
    """n / (C * n_c) per class c (scikit-learn's "balanced"): every class weighs the same in the loss."""
    counts = np.bincount(targets, minlength=n_classes)
    # a class absent from training never is a target, so its weight is unused: avoid dividing by zero
    return torch.tensor(len(targets) / (n_classes * np.maximum(counts, 1)), dtype=torch.float32)


def _loss_sums(
    logits: torch.Tensor, targets: torch.Tensor, class_weights: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of the weighted per-image losses and of their weights: sums over batches give the exact
    weighted mean of a whole split (CrossEntropyLoss(weight) of one batch is their ratio)."""
    losses = F.cross_entropy(logits, targets, reduction="none")
    weights = class_weights[targets] if class_weights is not None else torch.ones_like(losses)
    return (losses * weights).sum(), weights.sum()


_IGNORED_FST = -100  # cross_entropy's ignore_index for rows of unknown FST


@dataclass
class FstBranch:
    """The FairDisCo-style skin-type branch: ``head`` predicts FST (0..5) from the features, trained
    by ``optimizer``; ``fst`` holds every training row's FST - 1 (an unknown FST: ignored by the branch);
    ``weight`` scales the confusion loss."""

    head: nn.Linear
    optimizer: torch.optim.Optimizer
    fst: torch.Tensor
    weight: float
    loss_sum: float = 0.0
    batches: int = 0

    @classmethod
    def for_training(cls, model: Classifier, dataset: ManifestDataset, config: ClassifierConfig) -> FstBranch:
        head = nn.Linear(model.head.in_features, len(FST_VALUES)).to(next(model.parameters()).device)
        fst = dataset.rows["fst"].to_numpy(np.int64)
        fst = torch.as_tensor(np.where(fst == FST_UNKNOWN, _IGNORED_FST, fst - 1))
        optimizer = torch.optim.AdamW(head.parameters(), lr=config.fst_branch_lr)
        return cls(head, optimizer, fst, config.fst_confusion_weight)

    def confusion_loss(self, features: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """One step of the branch on the detached features, then the backbone's confusion loss: the
        branch's cross-entropy against the uniform distribution over the skin types."""
        target = self.fst[rows].to(features.device)
        if (target != _IGNORED_FST).any():
            branch_loss = F.cross_entropy(self.head(features.detach()), target, ignore_index=_IGNORED_FST)
            self.optimizer.zero_grad()
            branch_loss.backward()
            self.optimizer.step()
            self.loss_sum, self.batches = self.loss_sum + branch_loss.item(), self.batches + 1
        return -F.log_softmax(self.head(features), dim=1).mean()

    def epoch_loss(self) -> float:
        """Mean branch loss since the last call (high: the features say little about skin type)."""
        mean = self.loss_sum / max(1, self.batches)
        self.loss_sum, self.batches = 0.0, 0
        return mean


def _run_epoch(
    model: Classifier,
    loader: DataLoader,
    class_weights: torch.Tensor | None,
    device: torch.device,
    optimizer: torch.optim.Optimizer | None = None,
    fst_branch: FstBranch | None = None,
) -> float:
    """Mean weighted loss over the loader; one optimisation step per batch when ``optimizer`` is
    given (plus the confusion loss of ``fst_branch``, not part of the returned loss)."""
    model.train(optimizer is not None)
    loss_sum, weight_sum = 0.0, 0.0
    with torch.set_grad_enabled(optimizer is not None):
        for images, targets, rows in loader:
            features = model.backbone(images.to(device))
            batch_loss, batch_weight = _loss_sums(model.head(features), targets.to(device), class_weights)
            if optimizer is not None:
                loss = batch_loss / batch_weight
                if fst_branch is not None:
                    loss = loss + fst_branch.weight * fst_branch.confusion_loss(features, rows)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            loss_sum += batch_loss.item()
            weight_sum += float(batch_weight)
    return loss_sum / weight_sum


def train_classifier(
    train_set: ManifestDataset, val_set: ManifestDataset, config: ClassifierConfig
) -> tuple[Classifier, TrainingHistory]:
    """Train on ``train_set`` and keep the weights of the epoch with the lowest validation loss,
    stopping after ``config.patience`` epochs without a new lowest. Same config and data, same
    weights (on CPU)."""
    for name, dataset in (("train", train_set), ("val", val_set)):
        if not len(dataset):
            raise DataError(f"the {name} split has no images: cannot train the classifier")
    seed_everything(config.seed)
    device = torch.device(config.device)
    model = build_classifier(
        config.arch,
        train_set.classes,
        config.image_size,
        pretrained=config.pretrained,
        weights_path=config.weights_path,
    ).to(device)
    class_weights = None
    if config.class_weighting:
        class_weights = inverse_frequency_weights(train_set.targets, len(train_set.classes)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    train_loader = make_loader(train_set, config, shuffle=True)
    fst_branch = FstBranch.for_training(model, train_set, config) if config.fst_confusion_weight > 0 else None
    val_loader = make_loader(val_set, config)

    history = TrainingHistory()
    # a validation loss that is never finite (diverged) keeps the last weights
    best_loss, best_state, epochs_without_improvement = float("inf"), model.state_dict(), 0
    progress = progress_bar(range(1, config.epochs + 1), desc="train classifier", unit="epoch")
    for epoch in progress:
        history.train_loss.append(_run_epoch(model, train_loader, class_weights, device, optimizer, fst_branch))
        if fst_branch is not None:
            history.fst_branch_loss.append(fst_branch.epoch_loss())
        history.val_loss.append(_run_epoch(model, val_loader, class_weights, device))
        progress.set_postfix(train_loss=f"{history.train_loss[-1]:.3f}", val_loss=f"{history.val_loss[-1]:.3f}")
        if history.val_loss[-1] < best_loss:
            best_loss, history.best_epoch = history.val_loss[-1], epoch
            best_state, epochs_without_improvement = copy.deepcopy(model.state_dict()), 0
        else:
            epochs_without_improvement += 1
            if epochs_without_improvement >= config.patience:
                break
    progress.close()
    model.load_state_dict(best_state)
    return model.eval(), history


@torch.no_grad()
def predict(model: Classifier, loader: DataLoader) -> pd.DataFrame:
    """One row per image of the loader's `ManifestDataset`, in dataset order: its path, label, fst
    and group_id, and the softmax probability of each class as ``score_<label>``."""
    dataset: ManifestDataset = loader.dataset
    model.eval()
    device = next(model.parameters()).device
    scores = np.zeros((len(dataset), len(model.classes)), dtype=np.float64)
    for images, _, rows in progress_bar(loader, desc="predict", unit="batch"):
        scores[rows.numpy()] = torch.softmax(model(images.to(device)), dim=1).double().cpu().numpy()
    columns = [c for c in PREDICTION_ID_COLUMNS if c in dataset.rows.columns]
    frame = dataset.rows[columns].copy()
    for i, label in enumerate(model.classes):
        frame[score_column(label)] = scores[:, i]
    return frame
