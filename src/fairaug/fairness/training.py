"""Training the classifier and predicting with it.

`train_classifier` trains on the manifest's train split with inverse-frequency class weights, AdamW
and early stopping on the validation loss. `predict` writes the prediction-table format of
`fairaug.fairness.predictions`.

Optional fairness-aware training (``fst_confusion_weight`` > 0, FairDisCo-style skin-type
confusion): a linear branch on the features learns to predict the FST (on detached features, its
own optimiser), and the backbone gets an extra loss, the branch's cross-entropy against the uniform
distribution over the six types, so that the features carry less skin-type information. The branch
is for training only: the saved classifier and its predictions have no trace of it.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from fairaug.config.fairness import ClassifierConfig
from fairaug.skin.types import FST_UNKNOWN, FST_VALUES
from fairaug.errors import DataError
from fairaug.fairness.data import ManifestDataset, make_loader
from fairaug.fairness.model import Classifier, build_classifier
from fairaug.fairness.predictions import score_column
from fairaug.progress import progress_bar

PREDICTION_ID_COLUMNS = ("path", "label", "fst", "group_id")



@dataclass
class TrainingHistory:
    """Per-epoch mean (class-weighted) losses; ``best_epoch`` (from 1) is the epoch whose weights were kept."""

    train_loss: list[float] = field(default_factory=list)
    fst_branch_loss: list[float] = field(default_factory=list)  # with the FST confusion branch only
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = 0
    pretrain_loss: list[float] = field(default_factory=list)  # mix mode pretrain_finetune: the synthetic phase


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


def _class_weights(dataset: ManifestDataset, config: ClassifierConfig, device: torch.device) -> torch.Tensor | None:
    if not config.class_weighting:
        return None
    return inverse_frequency_weights(dataset.targets, len(dataset.classes)).to(device)


def _fst_branch(model: Classifier, dataset: ManifestDataset, config: ClassifierConfig) -> FstBranch | None:
    return FstBranch.for_training(model, dataset, config) if config.fst_confusion_weight > 0 else None


def _pretrain(
    model: Classifier, dataset: ManifestDataset, config: ClassifierConfig, epochs: int, device: torch.device
) -> list[float]:
    """``epochs`` epochs on ``dataset`` alone with its own class weights and optimizer; no early
    stopping (the validation split is real: the real phase that follows stops early on it).
    Returns the per-epoch training loss."""
    class_weights = _class_weights(dataset, config, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    loader, fst_branch = make_loader(dataset, config, shuffle=True), _fst_branch(model, dataset, config)
    progress = progress_bar(range(epochs), desc="pretrain classifier on synthetic images", unit="epoch")
    return [_run_epoch(model, loader, class_weights, device, optimizer, fst_branch) for _ in progress]


def train_classifier(
    train_set: ManifestDataset,
    val_set: ManifestDataset,
    config: ClassifierConfig,
    pretrain_set: ManifestDataset | None = None,
    pretrain_epochs: int = 0,
) -> tuple[Classifier, TrainingHistory]:
    """Train on ``train_set`` and keep the weights of the epoch with the lowest validation loss,
    stopping after ``config.patience`` epochs without a new lowest. Same config and data, same
    weights (on CPU).

    With ``pretrain_set`` (mix mode pretrain_finetune: the chosen synthetic images) the model first
    trains ``pretrain_epochs`` epochs on it alone, then on ``train_set`` as above with a fresh
    optimizer."""
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
    pretrain_loss = [] if pretrain_set is None else _pretrain(model, pretrain_set, config, pretrain_epochs, device)
    class_weights = _class_weights(train_set, config, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    train_loader = make_loader(train_set, config, shuffle=True)
    fst_branch = _fst_branch(model, train_set, config)
    val_loader = make_loader(val_set, config)

    history = TrainingHistory(pretrain_loss=pretrain_loss)
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
