"""The mixed training set of the augmented classifier: counts per FST against a hand computation,
a seeded choice, lazy decoding, and real-only validation/test splits."""


import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from fairaug.config.fairness import ClassifierConfig, MixConfig
from fairaug.errors import DataError
from fairaug.fairness.data import ManifestDataset, split_datasets
from fairaug.fairness.mix import (
    MixedDataset,
    mix_counts,
    mix_record,
    mix_shortfall,
    mixed_train_set,
    read_synthetic_manifest,
    select_synthetic,
)
from fairaug.data import storage

from synthetic_set import synthetic_image, write_synthetic_set

CLASSES = ["a", "b"]
# real train images per FST (R_k) and kept synthetic images per FST (A_k)
REAL = {1: 12, 2: 7, 3: 5, 4: 3, 5: 1, 6: 0}
AVAILABLE = {1: 20, 2: 20, 3: 20, 4: 20, 5: 1, 6: 5}
# target null: S_k = min(A_k, round(R_k r_k / (1 - r_k))), r = 0.2 0.3 0.4 0.5 0.7 0.8
#   12*0.25 = 3; 7*0.3/0.7 = 3; 5*0.4/0.6 = 3.33 -> 3; 3*1 = 3; 1*0.7/0.3 = 2.33 -> 2, capped to A_5 = 1;
#   R_6 = 0 -> 0
HAND_WANTED = {1: 3, 2: 3, 3: 3, 4: 3, 5: 2, 6: 0}
HAND_SYNTHETIC = {1: 3, 2: 3, 3: 3, 4: 3, 5: 1, 6: 0}
# target 10: S_k = min(A_k, round(r_k max(0, 10 - R_k))):
#   0; 0.3*3 = 0.9 -> 1; 0.4*5 = 2; 0.5*7 = 3.5 -> 4 (halves up); 0.7*9 = 6.3 -> 6, capped to 1; 0.8*10 = 8 -> 5
HAND_WANTED_TARGET = {1: 0, 2: 1, 3: 2, 4: 4, 5: 6, 6: 8}
HAND_SYNTHETIC_TARGET = {1: 0, 2: 1, 3: 2, 4: 4, 5: 1, 6: 5}


def real_rows(counts=REAL) -> pd.DataFrame:
    return pd.DataFrame([{"path": f"real-{k}-{i}.png", "label": CLASSES[i % 2], "fst": k}
                         for k, n in counts.items() for i in range(n)])  # fmt: skip


@pytest.fixture
def synthetic_dir(tmp_path):
    out = tmp_path / "synthetic"
    # kept images split over both labels, plus 2 not-kept images per FST that must never be chosen
    cells = {}
    for k, n in AVAILABLE.items():
        cells[(k, "a")] = (n - n // 2, 1)
        cells[(k, "b")] = (n // 2, 1)
    write_synthetic_set(out, cells, CLASSES)
    return out


def test_counts_without_target_match_the_hand_computation(synthetic_dir):
    synthetic = read_synthetic_manifest(synthetic_dir)
    counts = mix_counts(real_rows(), synthetic, MixConfig())
    assert counts["real"].to_dict() == REAL
    assert counts["available"].to_dict() == AVAILABLE
    assert counts["wanted"].to_dict() == HAND_WANTED
    assert counts["synthetic"].to_dict() == HAND_SYNTHETIC
    # the share is r_k wherever the group is not capped by the images available
    assert counts.at[1, "share"] == pytest.approx(0.2) and counts.at[4, "share"] == pytest.approx(0.5)
    assert counts.at[5, "share"] == pytest.approx(0.5) and np.isnan(counts.at[6, "share"])

    record = mix_record(counts)
    assert record["mix/synthetic.fst5"] == 1 and record["mix/wanted.fst5"] == 2 and record["mix/real.fst6"] == 0
    assert record["mix/real"] == 28 and record["mix/synthetic"] == 13
    assert record["mix/share"] == pytest.approx(13 / 41)


def test_counts_with_a_target_match_the_hand_computation(synthetic_dir):
    synthetic = read_synthetic_manifest(synthetic_dir)
    counts = mix_counts(real_rows(), synthetic, MixConfig(target_per_fst=10))
    assert counts["wanted"].to_dict() == HAND_WANTED_TARGET
    assert counts["synthetic"].to_dict() == HAND_SYNTHETIC_TARGET
    # ratio 1 with a target: fill every group up to the target, as far as images exist
    full = MixConfig(target_per_fst=10, synthetic_ratio={f"fst{k}": 1.0 for k in range(1, 7)})
    assert mix_counts(real_rows(), synthetic, full)["synthetic"].to_dict() == {1: 0, 2: 3, 3: 5, 4: 7, 5: 1, 6: 5}


def test_the_shortfall_names_the_groups_given_fewer_than_their_ratio_wants(synthetic_dir):
    synthetic = read_synthetic_manifest(synthetic_dir)
    # no target: FST 5 wants 2 and has 1 kept image, FST 6 wants none (no real image)
    shortfall = mix_shortfall(mix_counts(real_rows(), synthetic, MixConfig()))
    assert "FST 5 1 of 2 (share 0.50, ratio 0.7)" in shortfall
    assert shortfall.count("FST") == 1
    # target 10: FST 5 wants 6 (1 kept), FST 6 wants 8 (5 kept); the others get what they want
    shortfall = mix_shortfall(mix_counts(real_rows(), synthetic, MixConfig(target_per_fst=10)))
    assert "FST 5 1 of 6" in shortfall and "FST 6 5 of 8 (share 1.00, ratio 0.8)" in shortfall
    assert shortfall.count("FST") == 2
    assert mix_shortfall(mix_counts(real_rows(), synthetic, MixConfig(synthetic_ratio={"fst5": 0.5}))) is None


def test_a_ratio_of_one_needs_a_target():
    with pytest.raises(ValidationError, match="synthetic_ratio.fst6 = 1"):
        MixConfig(synthetic_ratio={"fst6": 1.0})
    with pytest.raises(ValidationError, match="fst7"):
        MixConfig(synthetic_ratio={"fst7": 0.5})


def test_choice_is_seeded_kept_only_and_independent_across_groups(synthetic_dir):
    synthetic = read_synthetic_manifest(synthetic_dir)
    counts = mix_counts(real_rows(), synthetic, MixConfig())
    chosen = select_synthetic(synthetic, counts, seed=0)
    assert chosen["kept"].all()
    assert chosen.groupby("fst").size().reindex(range(1, 7), fill_value=0).to_dict() == HAND_SYNTHETIC
    assert chosen["id"].tolist() == select_synthetic(synthetic, counts, seed=0)["id"].tolist()
    assert set(chosen["id"]) != set(select_synthetic(synthetic, counts, seed=1)["id"])
    # more of FST II changes nothing in FST I
    more = mix_counts(real_rows(), synthetic, MixConfig(synthetic_ratio={"fst2": 0.6}))
    assert more.at[2, "synthetic"] > counts.at[2, "synthetic"]
    again = select_synthetic(synthetic, more, seed=0)
    assert again.loc[again["fst"] == 1, "id"].tolist() == chosen.loc[chosen["fst"] == 1, "id"].tolist()
    # the PNG bytes are the stored images of those ids
    png = storage.read_synthetic_png(synthetic_dir, chosen)
    stored = {r["id"]: image for rows, images in storage.read_synthetic(synthetic_dir)
              for r, image in zip(rows.to_dict("records"), images, strict=True)}  # fmt: skip
    assert all(np.array_equal(storage.decode(b), stored[i]) for b, i in zip(png, chosen["id"], strict=True))


def test_mixed_train_set_adds_synthetic_images_to_train_only(synthetic_dir, tmp_path):
    root = tmp_path / "real"
    root.mkdir()
    manifest = []
    rng = np.random.default_rng(0)
    splits = {"train": REAL, "val": {1: 2, 5: 2}, "test": {1: 2, 6: 2}}
    for split, counts in splits.items():
        for row in real_rows(counts).to_dict("records"):
            row["path"] = f"{split}-{row['path']}"
            Image.fromarray(synthetic_image(row["fst"], CLASSES.index(row["label"]), rng)).save(root / row["path"])
            manifest.append(row | {"split": split})
    manifest = pd.DataFrame(manifest)
    config = ClassifierConfig(image_size=16)
    datasets = split_datasets(root, manifest, CLASSES, config)

    mixed, counts = mixed_train_set(datasets["train"], synthetic_dir, MixConfig())
    assert isinstance(mixed, MixedDataset) and counts["synthetic"].to_dict() == HAND_SYNTHETIC
    assert len(mixed) == sum(REAL.values()) + sum(HAND_SYNTHETIC.values())
    assert (mixed.rows["source"] == "real").sum() == sum(REAL.values())
    assert mixed.rows.groupby(["fst", "source"]).size()[(1, "synthetic")] == 3
    assert mixed.augment == config.augment and mixed.image_size == 16
    image, target, index = mixed[len(mixed) - 1]  # a synthetic one, decoded on demand
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32 and index == len(mixed) - 1
    assert target == CLASSES.index(mixed.rows.at[index, "label"])
    assert np.bincount(mixed.targets, minlength=2).sum() == len(mixed)
    # val and test are the real split's rows, untouched
    for split in ("val", "test"):
        assert type(datasets[split]) is ManifestDataset
        assert datasets[split].rows["path"].str.startswith(split).all()


def test_a_synthetic_set_that_keeps_nothing_is_a_clean_error(tmp_path):
    out = tmp_path / "synthetic"
    write_synthetic_set(out, {(1, "a"): (0, 2), (6, "b"): (0, 1)}, CLASSES)
    with pytest.raises(DataError, match=r"manifest.parquet: no kept synthetic image among 3 sampled"):
        read_synthetic_manifest(out)


def test_a_missing_or_unfinished_synthetic_set_is_a_clean_error(tmp_path):
    with pytest.raises(DataError, match="the generate stage has not run"):
        read_synthetic_manifest(tmp_path / "synthetic")
    (tmp_path / "synthetic").mkdir()
    with pytest.raises(DataError, match=r"manifest.parquet: missing"):
        read_synthetic_manifest(tmp_path / "synthetic")
