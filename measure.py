"""Measure a fixture's difficulty: write it, prepare it (split, ITA agreement), train the tiny
profile's real-only classifier on its train split, and report balanced accuracy / AUROC overall and
for FST I-II vs V-VI on the test split and on a larger held-out fixture (another seed), with
bootstrap intervals. Prints one JSON object.

    python measure.py derm --n 2000 --seed 0 --heldout 1500
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from fairaug.config import load_params
from fairaug.config.models import DatasetConfig
from fairaug.data.fixtures import write_derm_fixture, write_wound_fixture
from fairaug.data.prepare import prepare_dataset
from fairaug.fairness import functional as F
from fairaug.fairness.data import ManifestDataset, make_loader, split_datasets
from fairaug.fairness.training import predict, train_classifier
from fairaug.stats import percentile_interval, stratified_indices

GROUPS = {"I-II": (1, 2), "III-IV": (3, 4), "V-VI": (5, 6)}


def write(domain: str, out: Path, n: int, seed: int) -> DatasetConfig:
    if domain == "derm":
        write_derm_fixture(out, n=n, seed=seed)
        return DatasetConfig(format="ham10000", root=str(out), domain="derm")
    write_wound_fixture(out, n=n, seed=seed, layout="csv")
    return DatasetConfig(format="csv", root=str(out), domain="wound", labels=["I", "P", "R"])


def summarise(predictions: pd.DataFrame, classes: list[str], n_bootstrap: int = 500) -> dict:
    y = predictions["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    scores = predictions[[f"score_{c}" for c in classes]].to_numpy()
    group = predictions["fst"].map({k: g for g, ks in GROUPS.items() for k in ks}).to_numpy()
    resamples = stratified_indices(group, n_bootstrap, seed=0)
    out = {}
    for name, metric in (("balanced_accuracy", F.balanced_accuracy), ("auroc", F.auroc)):
        def value(rows, g=None):
            kept = rows if g is None else rows[group[rows] == g]
            try:
                return metric(y[kept], scores[kept])
            except ValueError:
                return np.nan
        entry = {"all": [value(np.arange(len(y))), *percentile_interval([value(r) for r in resamples]), len(y)]}
        for g in GROUPS:
            entry[g] = [value(np.arange(len(y)), g), *percentile_interval([value(r, g) for r in resamples]),
                        int((group == g).sum())]
        deficit = [value(r, "I-II") - value(r, "V-VI") for r in resamples]
        entry["deficit I-II minus V-VI"] = [entry["I-II"][0] - entry["V-VI"][0], *percentile_interval(deficit)]
        out[name] = {k: [round(float(x), 3) for x in v] for k, v in entry.items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("domain", choices=["derm", "wound"])
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--heldout", type=int, default=0, help="images of a held-out fixture (seed + 100)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/fixture_measure"))
    parser.add_argument("--data", type=Path, help="an existing fixture directory instead of writing one")
    args = parser.parse_args()
    params = load_params()
    work = args.work / args.domain
    result: dict = {"domain": args.domain, "n": args.n}

    started = time.perf_counter()
    config = write(args.domain, work / "data", args.n, args.seed) if args.data is None else DatasetConfig(
        format="ham10000" if args.domain == "derm" else "csv", root=str(args.data), domain=args.domain,
        labels=None if args.domain == "derm" else ["I", "P", "R"])
    result["fixture_s"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    manifest, report = prepare_dataset(args.domain, config, params.prepare)
    result["prepare_s"] = round(time.perf_counter() - started, 1)
    agreement = report["ita_agreement"]
    result["ita"] = {k: agreement.get(k) for k in ("n", "abstained", "agreement", "within_one")}
    result["fst_counts"] = report["fst_counts"]

    classes = config.allowed_labels() or sorted(manifest["label"].unique())
    train_config = params.train_classifier
    splits = split_datasets(config.root, manifest, classes, train_config)
    started = time.perf_counter()
    model, history = train_classifier(splits["train"], splits["val"], train_config)
    result["train_s"] = round(time.perf_counter() - started, 1)
    result["best_epoch"] = history.best_epoch
    result["test"] = summarise(predict(model, make_loader(splits["test"], train_config)), classes)

    if args.heldout:
        held_config = write(args.domain, work / "heldout", args.heldout, args.seed + 100)
        held_manifest, _ = prepare_dataset(args.domain, held_config, params.prepare)
        held = ManifestDataset(held_config.root, held_manifest, classes, train_config.image_size)
        result["heldout"] = summarise(predict(model, make_loader(held, train_config)), classes)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
