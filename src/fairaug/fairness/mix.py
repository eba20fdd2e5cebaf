"""The augmented classifier's training set: the real train split plus kept synthetic images, with
FST-dependent synthetic ratios (`fairaug.config.fairness.MixConfig` defines the counts).

Only the train split is mixed: validation (early stopping) and test (the fairness report) stay
real-only, because they measure the effect on real patients. The synthetic set is read through
`fairaug.data.storage`: the choice needs only its manifest, and only the PNG bytes of the
chosen images are held (compressed, decoded one image at a time when the loader asks for it).
`augmented_train_sets` hands the chosen images to training by ``mix.mode``: in one mixed set
(concat), or as a synthetic-only set to pretrain on before the real train split (pretrain_finetune).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from fairaug.config.fairness import MixConfig
from fairaug.data import storage
from fairaug.data.files import MANIFEST
from fairaug.errors import DataError
from fairaug.fairness.data import ManifestDataset
from fairaug.skin.types import FST_VALUES

REAL, SYNTHETIC = "real", "synthetic"
SYNTHETIC_COLUMNS = ("path", "id", "fst", "label", "kept")


def round_half_up(value: float) -> int:
    # a relative tolerance keeps 2.4999999999999996 (float noise of an exact half) a half
    return math.floor(value + 0.5 + 1e-9)


def wanted_synthetic(n_real: int, ratio: float, target: int | None) -> int:
    """S_k before the cap by the images available (see `MixConfig`)."""
    if target is None:
        return round_half_up(n_real * ratio / (1 - ratio))
    return round_half_up(ratio * max(0, target - n_real))


def mix_counts(real_train: pd.DataFrame, synthetic: pd.DataFrame, config: MixConfig) -> pd.DataFrame:
    """Per FST group (index 1..6): real (R_k), available (A_k: kept synthetic images), ratio (r_k),
    wanted (uncapped S_k), synthetic (S_k) and share (S_k / (R_k + S_k), NaN for an empty group)."""
    kept = synthetic[synthetic["kept"]]
    rows = []
    for k in FST_VALUES:
        n_real, available = int((real_train["fst"] == k).sum()), int((kept["fst"] == k).sum())
        ratio = config.synthetic_ratio.of(k)
        wanted = wanted_synthetic(n_real, ratio, config.target_per_fst)
        chosen = min(wanted, available)
        share = chosen / (n_real + chosen) if n_real + chosen else float("nan")
        rows.append({"fst": k, "real": n_real, "available": available, "ratio": ratio, "wanted": wanted,
                     "synthetic": chosen, "share": share})  # fmt: skip
    return pd.DataFrame(rows).set_index("fst")


def mix_shortfall(counts: pd.DataFrame) -> str | None:
    """The FST groups `mix_counts` gave fewer synthetic images than their ratio wants (the generator
    kept too few of them), in one line for a warning; None when every group got what it wants."""
    short = counts[counts["synthetic"] < counts["wanted"]]
    if short.empty:
        return None
    groups = ", ".join(f"FST {k} {int(row['synthetic'])} of {int(row['wanted'])} (share {row['share']:.2f}, "
                       f"ratio {row['ratio']:g})" for k, row in short.iterrows())  # fmt: skip
    return (f"the mix got fewer synthetic images than mix.synthetic_ratio wants: {groups}; generate more of "
            "them (generate.per_cell, generate.top_up_to) or lower those ratios")


def select_synthetic(synthetic: pd.DataFrame, counts: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The chosen kept rows: ``counts.synthetic[k]`` of FST k, drawn without replacement by a
    generator seeded with (seed, k), from the group's kept rows in id order; in manifest order."""
    kept = synthetic[synthetic["kept"]]
    chosen = []
    for k in FST_VALUES:
        group = kept[kept["fst"] == k].sort_values("id", kind="stable")
        rng = np.random.default_rng([seed, k])
        chosen.append(group.iloc[np.sort(rng.permutation(len(group))[: int(counts.at[k, "synthetic"])])])
    rows = pd.concat(chosen)
    return synthetic.loc[synthetic.index.isin(rows.index)]


def mix_record(counts: pd.DataFrame) -> dict[str, float]:
    """mix.json and the MLflow metrics of the mix: ``mix/<column>.fst<k>`` and the totals."""
    record: dict[str, float] = {}
    for k, row in counts.iterrows():
        for column in ("real", "available", "ratio", "wanted", "synthetic", "share"):
            record[f"mix/{column}.fst{k}"] = float(row[column])
    total_real, total_synthetic = int(counts["real"].sum()), int(counts["synthetic"].sum())
    record |= {"mix/real": total_real, "mix/synthetic": total_synthetic,
               "mix/share": total_synthetic / max(1, total_real + total_synthetic)}  # fmt: skip
    return record


class MixedDataset(ManifestDataset):
    """Real manifest rows (images under ``root``) followed by synthetic rows (their PNG bytes given,
    decoded lazily); ``rows.source`` says which. Same items as `ManifestDataset`."""

    def __init__(
        self,
        root: str | Path,
        real_rows: pd.DataFrame,
        synthetic_rows: pd.DataFrame,
        synthetic_png: Sequence[bytes],
        classes: Sequence[str],
        image_size: int,
        augment: bool = False,
    ):
        if len(synthetic_rows) != len(synthetic_png):
            raise ValueError(f"{len(synthetic_rows)} synthetic rows but {len(synthetic_png)} images")
        synthetic_part = synthetic_rows[["path", "label", "fst"]].assign(source=SYNTHETIC)
        rows = pd.concat([real_rows.assign(source=REAL), synthetic_part], ignore_index=True)
        super().__init__(root, rows, classes, image_size, augment)
        self.n_real = len(real_rows)
        self.synthetic_png = list(synthetic_png)

    def load_image(self, index: int) -> Image.Image:
        if index < self.n_real:
            return super().load_image(index)
        with Image.open(io.BytesIO(self.synthetic_png[index - self.n_real])) as image:
            return image.convert("RGB")


def read_synthetic_manifest(synthetic_dir: Path) -> pd.DataFrame:
    """The generate stage's manifest, checked: a DataError naming what is missing (also when it keeps
    no image)."""
    synthetic_dir = Path(synthetic_dir)
    manifest_path = synthetic_dir / MANIFEST
    if not synthetic_dir.is_dir():
        raise DataError("no synthetic set: the generate stage has not run", file=synthetic_dir)
    if not manifest_path.is_file():  # written last, after every shard
        raise DataError("missing: not a finished synthetic set of the generate stage", file=manifest_path)
    manifest = pd.read_parquet(manifest_path).reset_index(drop=True)
    missing = [c for c in SYNTHETIC_COLUMNS if c not in manifest.columns]
    if missing:
        raise DataError("missing column", file=manifest_path, column=missing[0])
    if not manifest["kept"].any():
        raise DataError(f"no kept synthetic image among {len(manifest)} sampled: nothing to add to the training set "
                        "(the 'reason' column says why each was left out)", file=manifest_path)  # fmt: skip
    return manifest


def _chosen_synthetic(
    train_set: ManifestDataset, synthetic_dir: Path, config: MixConfig
) -> tuple[pd.DataFrame, list[bytes], pd.DataFrame]:
    """The chosen synthetic rows for the real train split ``train_set``, their PNG bytes, and the
    counts per FST."""
    synthetic = read_synthetic_manifest(synthetic_dir)
    unknown = sorted(set(synthetic.loc[synthetic["kept"], "label"]) - set(train_set.classes))
    if unknown:
        raise DataError(f"synthetic labels {', '.join(map(str, unknown))} are not among the classes "
                        f"{', '.join(train_set.classes)}", file=Path(synthetic_dir) / MANIFEST)  # fmt: skip
    counts = mix_counts(train_set.rows, synthetic, config)
    chosen = select_synthetic(synthetic, counts, config.seed)
    return chosen, storage.read_synthetic_png(Path(synthetic_dir), chosen), counts


def mixed_train_set(
    train_set: ManifestDataset, synthetic_dir: Path, config: MixConfig
) -> tuple[MixedDataset, pd.DataFrame]:
    """The real train split ``train_set`` plus the chosen synthetic images, and the counts per FST."""
    chosen, png, counts = _chosen_synthetic(train_set, synthetic_dir, config)
    mixed = MixedDataset(train_set.root, train_set.rows, chosen, png, train_set.classes, train_set.image_size,
                         train_set.augment)  # fmt: skip
    return mixed, counts


def augmented_train_sets(
    train_set: ManifestDataset, synthetic_dir: Path, config: MixConfig
) -> tuple[MixedDataset | None, ManifestDataset, pd.DataFrame]:
    """What the augmented classifier trains on, by ``config.mode``: (pretrain set, train set, counts
    per FST). concat: no pretrain set, the `mixed_train_set`; pretrain_finetune: the chosen synthetic
    images alone, then the real train split ``train_set`` itself."""
    if config.mode == "concat":
        mixed, counts = mixed_train_set(train_set, synthetic_dir, config)
        return None, mixed, counts
    chosen, png, counts = _chosen_synthetic(train_set, synthetic_dir, config)
    if chosen.empty:
        raise DataError("mix.mode is pretrain_finetune but the mix chose no synthetic image (mix/wanted "
                        f"per FST: {counts['wanted'].to_dict()}): nothing to pretrain on",
                        file=Path(synthetic_dir) / MANIFEST)  # fmt: skip
    no_real = train_set.rows.iloc[:0]
    synthetic_only = MixedDataset(train_set.root, no_real, chosen, png, train_set.classes, train_set.image_size,
                                  train_set.augment)  # fmt: skip
    return synthetic_only, train_set, counts
