"""Group-disjoint, label-stratified splits and cross-split near-duplicate detection."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.model_selection import StratifiedGroupKFold

from fairaug.config.models import SplitConfig
from fairaug.errors import DataError
from fairaug.skin.types import FST_VALUES


def _hold_out(strata: list[np.ndarray], groups: np.ndarray, share: float, seed: int) -> np.ndarray:
    """Boolean mask of about ``share`` of the groups (one fold of K = 1/share).

    Stratified by the finest of ``strata`` that has a stratum of at least K rows (sklearn refuses
    otherwise), else by nothing: small data sets still get a group-disjoint split.
    """
    n_folds = max(2, round(1.0 / share))
    n_groups = len(np.unique(groups))
    if n_groups < n_folds:
        raise DataError(f"{n_groups} groups are too few for a {share:.0%} split (need at least {n_folds})")
    usable = [s for s in strata if np.unique(s, return_counts=True)[1].max() >= n_folds]
    y = usable[0] if usable else np.zeros(len(groups), dtype=int)
    folds = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # sklearn warns when a stratum has fewer rows than folds; the split stays valid, just less stratified
        warnings.simplefilter("ignore", UserWarning)
        _, held_out = next(folds.split(np.zeros(len(groups)), y, groups))
    mask = np.zeros(len(groups), dtype=bool)
    mask[held_out] = True
    return mask


def assign_splits(
    strata: list[pd.Series], groups: pd.Series, shares: SplitConfig, seed: int, fst: pd.Series | None = None
) -> pd.Series:
    """'train' / 'val' / 'test' per row; every group lies in exactly one split.

    ``strata`` are per-row keys whose proportions each split should keep, finest first (e.g. label
    and FST joined, then label alone): each hold-out uses the finest one the data is large enough for.
    With ``shares.min_test_per_fst``, ``fst`` (per row) is required and the test split is then
    topped up to that many images of every FST present (`top_up_test`).
    """
    strata_arr = [s.to_numpy() for s in strata]
    groups_arr = groups.to_numpy()
    split = np.full(len(groups_arr), "train", dtype=object)
    test = _hold_out(strata_arr, groups_arr, shares.test, seed)
    split[test] = "test"
    rest = ~test
    val_share = shares.val / (shares.train + shares.val)
    val = _hold_out([s[rest] for s in strata_arr], groups_arr[rest], val_share, seed + 1)
    split[np.flatnonzero(rest)[val]] = "val"
    if shares.min_test_per_fst is not None:
        if fst is None:
            raise ValueError("min_test_per_fst needs the rows' fst")
        split = top_up_test(split, fst.to_numpy(), groups_arr, shares.min_test_per_fst, seed)
    return pd.Series(split, index=groups.index, name="split")


def top_up_test(split: np.ndarray, fst: np.ndarray, groups: np.ndarray, minimum: int, seed: int) -> np.ndarray:
    """``split`` with whole train / val groups moved into test until every FST 1-6 present has at
    least ``minimum`` test images; FST_UNKNOWN is exempt. Groups are drawn at random (seeded) among
    those holding images of the short FST, so the moved images keep the train / val mix of labels;
    a train group is never moved when it holds the last train images of one of its FSTs. Nothing
    moves out of test. A DataError names the first FST that cannot reach ``minimum``."""
    names, group_of_row = np.unique(groups, return_inverse=True)
    per_group = np.zeros((len(names), max(FST_VALUES) + 1), dtype=np.int64)  # column k: FST k images (0: unknown)
    np.add.at(per_group, (group_of_row, fst.astype(np.int64)), 1)
    group_split = np.empty(len(names), dtype=object)
    group_split[group_of_row] = split  # group-disjoint: every row of a group has its split
    in_test = per_group[group_split == "test"].sum(axis=0)
    in_train = per_group[group_split == "train"].sum(axis=0)
    rng = np.random.default_rng([seed, minimum])
    known = list(FST_VALUES)
    for k in FST_VALUES:
        candidates = np.flatnonzero((per_group[:, k] > 0) & (group_split != "test"))
        for g in rng.permutation(candidates):
            if in_test[k] >= minimum:
                break
            if group_split[g] == "train":
                if np.any((per_group[g, known] > 0) & (in_train[known] == per_group[g, known])):
                    continue  # the last train group of one of its FSTs stays
                in_train -= per_group[g]
            in_test += per_group[g]
            group_split[g] = "test"
        if 0 < per_group[:, k].sum() and in_test[k] < minimum:
            holding = per_group[:, k] > 0
            raise DataError(
                f"prepare.split.min_test_per_fst is {minimum} but FST {k} has {int(per_group[:, k].sum())} "
                f"images in {int(holding.sum())} groups: too few for {minimum} test images while keeping "
                "at least one train group of it (lower prepare.split.min_test_per_fst)"
            )
    return group_split[group_of_row]


def stratified_subsample(frame: pd.DataFrame, max_images: int, seed: int) -> pd.DataFrame:
    """About ``max_images`` rows with the label proportions kept (at least one row per label)."""
    if len(frame) <= max_images:
        return frame
    fraction = max_images / len(frame)
    keep = [
        rows.sample(n=max(1, round(len(rows) * fraction)), random_state=seed)
        for _, rows in frame.groupby("label", sort=True)
    ]
    return pd.concat(keep).sort_index()


def _hash_bits(hex_hashes: pd.Series) -> np.ndarray:
    return np.array([int(h, 16) for h in hex_hashes], dtype=np.uint64)


def near_duplicate_pairs(phashes: pd.Series, max_distance: int, chunk: int = 2048) -> np.ndarray:
    """(i, j, distance) rows, i < j, of every pair of images whose pHash Hamming distance is <= ``max_distance``."""
    hashes = _hash_bits(phashes)
    found = []
    for start in range(0, len(hashes), chunk):
        distance = np.bitwise_count(hashes[start : start + chunk, None] ^ hashes[None, :])
        rows, cols = np.nonzero(distance <= max_distance)
        keep = rows + start < cols
        found.append(np.stack([rows[keep] + start, cols[keep], distance[rows[keep], cols[keep]]], axis=1))
    return np.concatenate(found).astype(np.int64) if found else np.zeros((0, 3), dtype=np.int64)


def near_duplicates_across_splits(manifest: pd.DataFrame, max_distance: int, chunk: int = 2048) -> list[dict]:
    """Pairs of images in different splits whose pHash Hamming distance is <= ``max_distance``.

    Same-split pairs are expected (several images of one lesion) and not reported.
    """
    splits = manifest["split"].to_numpy()
    paths = manifest["path"].to_numpy()
    return [{"path_a": paths[i], "split_a": splits[i], "path_b": paths[j], "split_b": splits[j], "distance": int(d)}
            for i, j, d in near_duplicate_pairs(manifest["phash"], max_distance, chunk)
            if splits[i] != splits[j]]  # fmt: skip


def split_groups(records: pd.DataFrame, max_distance: int) -> tuple[pd.Series, dict]:
    """The groups the split keeps together: ``group_id`` with groups merged wherever two of their
    images have identical bytes (sha256) or are near duplicates (pHash distance <= ``max_distance``),
    so that no image has a copy across splits. A merged group is named after its smallest group id.

    Returns the per-row split group and a report: how many groups were merged, by which rule.
    """
    groups, group_index = np.unique(records["group_id"].astype(str).to_numpy(), return_inverse=True)
    by_sha = records.groupby("sha256", sort=False).indices.values()
    identical = np.array([(rows[0], other) for rows in by_sha for other in rows[1:]], dtype=np.int64).reshape(-1, 2)
    near = near_duplicate_pairs(records["phash"], max_distance)[:, :2]
    edges = {"identical": identical, "near_duplicate": near}
    merged_by = {}
    for rule, pairs in edges.items():
        crossing = group_index[pairs[:, 0]] != group_index[pairs[:, 1]]
        merged_by[rule] = int(len({tuple(sorted(p)) for p in group_index[pairs[crossing]].tolist()}))
    pairs = np.concatenate(list(edges.values()))
    graph = coo_matrix((np.ones(len(pairs)), (group_index[pairs[:, 0]], group_index[pairs[:, 1]])),
                       shape=(len(groups), len(groups)))  # fmt: skip
    n_components, component = connected_components(graph, directed=False)
    name = pd.Series(groups).groupby(component).transform("min").to_numpy()  # groups are sorted: min = first
    report = {"groups_before": int(len(groups)), "groups_after": int(n_components),
              "merged_pairs": merged_by}  # fmt: skip
    return pd.Series(name[group_index], index=records.index, name="split_group"), report
