import numpy as np
import pandas as pd
import pytest

from fairaug.config import SplitConfig
from fairaug.errors import DataError
from fairaug.data.splits import assign_splits, near_duplicates_across_splits, stratified_subsample, split_groups


@pytest.fixture
def grouped() -> pd.DataFrame:
    """300 groups of 1-4 rows with three unbalanced labels (a group has one label, like a lesion)."""
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 5, size=300)
    group_labels = rng.choice(["a", "b", "c"], p=[0.6, 0.3, 0.1], size=300)
    return pd.DataFrame(
        {"group_id": np.repeat([f"g{i}" for i in range(300)], sizes), "label": np.repeat(group_labels, sizes)}
    )


def test_splits_are_group_disjoint_stratified_and_sized(grouped):
    shares = SplitConfig(train=0.7, val=0.15, test=0.15)
    split = assign_splits([grouped["label"]], grouped["group_id"], shares, seed=3)
    frame = grouped.assign(split=split)
    assert frame.groupby("group_id")["split"].nunique().max() == 1
    group_share = frame.drop_duplicates("group_id")["split"].value_counts(normalize=True)
    for name in ("train", "val", "test"):
        assert group_share[name] == pytest.approx(getattr(shares, name), abs=0.05)
    overall = frame["label"].value_counts(normalize=True)
    for _, rows in frame.groupby("split"):
        assert set(rows["label"]) == {"a", "b", "c"}
        assert (rows["label"].value_counts(normalize=True) - overall).abs().max() < 0.1


def test_splits_are_seeded(grouped):
    shares = SplitConfig()
    first = assign_splits([grouped["label"]], grouped["group_id"], shares, seed=1)
    assert first.equals(assign_splits([grouped["label"]], grouped["group_id"], shares, seed=1))
    assert not first.equals(assign_splits([grouped["label"]], grouped["group_id"], shares, seed=2))


def test_too_fine_strata_fall_back_and_stay_group_disjoint():
    # 30 singleton groups, every stratum unique: sklearn cannot stratify on it, nor on a 3-row label
    frame = pd.DataFrame({"group_id": [f"g{i}" for i in range(30)], "label": ["a"] * 27 + ["b"] * 3})
    unique = frame["group_id"] + "|x"
    split = assign_splits([unique, frame["label"]], frame["group_id"], SplitConfig(), seed=0)
    assert set(split) == {"train", "val", "test"}
    assert split.value_counts()["test"] == pytest.approx(30 / 7, abs=1)


def test_stratified_subsample_keeps_proportions(grouped):
    sample = stratified_subsample(grouped, 200, seed=0)
    assert abs(len(sample) - 200) <= 3
    expected = grouped["label"].value_counts(normalize=True)
    assert (sample["label"].value_counts(normalize=True) - expected).abs().max() < 0.02
    tiny = stratified_subsample(grouped, 2, seed=0)
    assert set(tiny["label"]) == {"a", "b", "c"}  # every label keeps at least one image


def test_near_duplicates_match_brute_force():
    rng = np.random.default_rng(5)
    base = rng.integers(0, 2**63, size=40, dtype=np.uint64)
    # perturb copies by a few bits so that some pairs are close
    flips = np.array([1 << int(b) for b in rng.integers(0, 64, size=40)], dtype=np.uint64)
    hashes = np.concatenate([base, base ^ flips, base[:10] ^ flips[:10] ^ np.uint64(0b111000)])
    manifest = pd.DataFrame(
        {
            "path": [f"img{i}.jpg" for i in range(len(hashes))],
            "split": rng.choice(["train", "val", "test"], size=len(hashes)),
            "phash": [f"{int(h):016x}" for h in hashes],
        }
    )
    for max_distance in (0, 1, 4):
        found = {(p["path_a"], p["path_b"], p["distance"]) for p in
                 near_duplicates_across_splits(manifest, max_distance, chunk=16)}
        expected = set()
        for i in range(len(hashes)):
            for j in range(i + 1, len(hashes)):
                distance = bin(int(hashes[i]) ^ int(hashes[j])).count("1")
                if distance <= max_distance and manifest.split[i] != manifest.split[j]:
                    expected.add((f"img{i}.jpg", f"img{j}.jpg", distance))
        assert found == expected
    assert len(expected) > 0  # the case is not vacuous


def test_copies_and_near_duplicates_are_merged_into_one_split_group():
    records = pd.DataFrame({
        "group_id": ["a", "b", "c", "d", "e", "e"],
        "sha256": ["s1", "s1", "s2", "s3", "s4", "s5"],  # a and b hold identical bytes
        "phash": ["0" * 16, "f" * 16, "00000000000000ff", "00000000000000fe", "1234" * 4, "4321" * 4],
        "label": ["x"] * 6,
    })  # c and d are one bit apart: near duplicates
    groups, report = split_groups(records, max_distance=1)
    assert list(groups) == ["a", "a", "c", "c", "e", "e"]
    assert report == {"groups_before": 5, "groups_after": 3, "merged_pairs": {"identical": 1, "near_duplicate": 1}}
    untouched, _ = split_groups(records, max_distance=0)
    assert list(untouched) == ["a", "a", "c", "d", "e", "e"]


@pytest.fixture
def skin_typed() -> pd.DataFrame:
    """400 groups of 1-3 rows, FST imbalanced like real data (few V-VI, some unknown); a group has one
    label and one FST, except a few groups holding two FSTs (several images of one patient)."""
    rng = np.random.default_rng(1)
    sizes = rng.integers(1, 4, size=400)
    group_fst = rng.choice([0, 1, 2, 3, 4, 5, 6], p=[0.05, 0.25, 0.3, 0.2, 0.12, 0.05, 0.03], size=400)
    frame = pd.DataFrame({"group_id": np.repeat([f"g{i}" for i in range(400)], sizes),
                          "label": np.repeat(rng.choice(["a", "b"], p=[0.7, 0.3], size=400), sizes),
                          "fst": np.repeat(group_fst, sizes)})  # fmt: skip
    mixed = frame.index[frame["group_id"].isin(["g0", "g1", "g2"])][::2]
    frame.loc[mixed, "fst"] = 6
    return frame


def _split_with_minimum(frame: pd.DataFrame, minimum: int | None, seed: int = 0) -> pd.Series:
    strata = [frame["label"] + "|" + frame["fst"].astype(str), frame["label"]]
    return assign_splits(strata, frame["group_id"], SplitConfig(min_test_per_fst=minimum), seed, fst=frame["fst"])


def test_min_test_per_fst_holds_group_disjoint_and_only_adds_to_test(skin_typed):
    plain = _split_with_minimum(skin_typed, None)
    fst_vi = skin_typed["fst"] == 6
    assert (plain[fst_vi] == "test").sum() < 10  # the shares alone leave FST VI short
    minimum = 10
    split = _split_with_minimum(skin_typed, minimum)
    frame = skin_typed.assign(split=split)
    assert frame.groupby("group_id")["split"].nunique().max() == 1
    test_counts = frame[frame["split"] == "test"]["fst"].value_counts()
    for k in range(1, 7):
        assert test_counts[k] >= minimum
        assert ((frame["fst"] == k) & (frame["split"] == "train")).any()  # a train group of every FST stays
    # the shares' assignment stands except for groups moved from train / val into test
    changed = plain != split
    assert changed.any() and (split[changed] == "test").all()
    assert (split[plain == "test"] == "test").all()
    # moved groups are drawn at random: the label mix of the test split stays near the data's
    overall = frame["label"].value_counts(normalize=True)
    assert (frame[frame["split"] == "test"]["label"].value_counts(normalize=True) - overall).abs().max() < 0.1
    assert split.equals(_split_with_minimum(skin_typed, minimum))  # seeded


def test_min_test_per_fst_already_met_or_null_changes_nothing(skin_typed):
    plain = _split_with_minimum(skin_typed, None)
    already = int(skin_typed[plain == "test"]["fst"].value_counts()[[1, 2, 3, 4, 5, 6]].min())
    assert _split_with_minimum(skin_typed, already).equals(plain)


def test_min_test_per_fst_too_few_images_names_the_fst(skin_typed):
    fst_vi = skin_typed[skin_typed["fst"] == 6]
    images, groups = len(fst_vi), fst_vi["group_id"].nunique()
    # every FST VI image but one group's would have to be in test: impossible
    expected = rf"min_test_per_fst is {images} but FST 6 has {images} images in {groups} groups"
    with pytest.raises(DataError, match=expected):
        _split_with_minimum(skin_typed, images)
