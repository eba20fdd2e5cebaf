"""The quality report of a synthetic image set against a real reference set: a flat dict keyed by
the DESIGN.md names, for quality.json and quality_detail.json, MLflow and `fairaug quality`.

Keys (``<e>`` an extractor: inception, evaluator, pixels; ``<net>`` the LPIPS backbone):
    quality/fid.<e>, quality/kid.<e>            Frechet / kernel distance of the feature sets
    quality/is.<e>                              Inception Score (inception logits, the classifier's classes)
    quality/precision.<e>, quality/recall.<e>   Kynkaanniemi et al.: fidelity and coverage
    quality/ssim                                SSIM of each synthetic image and its nearest real image
                                                (thumbnails, same label), mean
    quality/lpips.<net>                         LPIPS of the same pairs, mean
    quality/diversity.<e>                       mean pairwise feature distance within each (FST, label)
                                                cell, mean over cells; ``<e>_ratio``: over the real set's
    quality/diversity.lpips_<net>               the same with LPIPS on up to lpips_max_per_cell images
    quality/memorization.near_copy.<e>          share of synthetic images closer to a real image than the
                                                near_copy_quantile of real-to-nearest-other-real distances
    quality/memorization.nn_ratio.<e>           median synthetic-to-nearest-real distance over the median
                                                real-to-nearest-other-real distance (< 1: closer than
                                                real images are to each other)
    quality/memorization.ssim_near_copy         share of the generator's samples with SSIM >= near_copy_ssim
                                                to the nearest real image, before any filter (the generate
                                                filter rejects those: on its kept images this is 0 by design)
    quality/fst_fidelity                        share whose ITA-estimated FST is within one type of the
                                                requested FST, among the images the estimate did not
                                                abstain on; fst_fidelity.abstention: share it abstained on
    quality/realness_auc.<e>                    cross-validated AUROC of a linear probe telling real from
                                                synthetic features (0.5: indistinguishable)
    quality/label_confidence.evaluator          the evaluator's mean probability of the label each image
                                                was asked for; label_accuracy.evaluator: its argmax is that
                                                label (the evaluator never selected the images)
    quality/label_confidence_real.evaluator     the same for the held-out real images (the prepared test
                                                split, which the evaluator never trained on): how clearly
                                                real images of each group show their label to it
    quality/label_confidence_ratio.evaluator    label_confidence over label_confidence_real, per group too:
                                                1 means the synthetic images show their label as clearly as
                                                real ones, whatever the evaluator's own skill per group
Per group (synthetic sets with fst / label columns): ``.fst<k>`` (k = 1..6) and ``.label_<label>`` of
kid.<e>, diversity.<e>, ssim, lpips.<net>, label_confidence / label_accuracy / label_confidence_real /
label_confidence_ratio.evaluator, fst_fidelity (fst only), with group sizes
``quality/n_real.<group>``, ``quality/n_synthetic.<group>`` and ``quality/<group>.small_group`` (fewer
than min_group_size synthetic or real images; the values are still given: at small n trust KID, FID
is biased upwards, which is why groups get KID and no FID).
Beside each value: ``.n`` (synthetic images) and, with bootstrapping, ``.ci_low`` / ``.ci_high``
(percentile bootstrap, both sets resampled). A value that cannot be computed is NaN with
``<name>.reason`` (a string) saying why: missing weights, too few images, no requested FST.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from fairaug.config.quality import EvaluateQualityConfig
from fairaug.skin.types import FST_UNKNOWN, FST_VALUES, within_one_type
from fairaug.images import resized
from fairaug.metrics import functional as F
from fairaug.metrics.extractors import Extractor, Output, pixels_extractor, thumbnail_features
from fairaug.metrics.features import FeatureCache, ImageSet, extract
from fairaug.metrics.perceptual import Lpips
from fairaug.names import QUALITY_NAMESPACE
from fairaug.skin.ita import estimate_fst, set_abstention_reason
from fairaug.stats import ReportWriter, Rows, UndefinedMetricError, bootstrap_indices

Report = dict[str, float | int | bool | str]


def _writer(config: EvaluateQualityConfig) -> ReportWriter:
    """The report's writer: both sets of a statistic resampled independently, the draws seeded
    afresh for each statistic; an undefined value has only its reason."""

    def resamples(samples: Sequence[np.ndarray]) -> list[Rows]:
        return bootstrap_indices([len(sample) for sample in samples], config.n_bootstrap, config.seed,
                                 resample_by_resample=True)  # fmt: skip

    return ReportWriter(QUALITY_NAMESPACE, resamples if config.n_bootstrap else None, config.confidence)


def _mean(values: np.ndarray) -> float:
    if not len(values):
        raise UndefinedMetricError("no images")
    return float(np.mean(values))


class _PerImage:
    """Per synthetic image, batch by batch: nearest real image (thumbnails, same label), its SSIM and
    LPIPS, the ITA-estimated FST; and up to lpips_max_per_cell images per cell for LPIPS diversity."""

    def __init__(self, real: ImageSet, real_thumbnails: np.ndarray, lpips: Lpips | None, keep_per_cell: int):
        self.real, self.lpips, self.keep_per_cell = real, lpips, keep_per_cell
        labels = (real.rows["label"] if "label" in real.rows else pd.Series("", index=real.rows.index)).to_numpy()
        # per label once: positions in the real set and their thumbnails
        self.by_label = {label: (np.flatnonzero(labels == label), real_thumbnails[labels == label])
                         for label in np.unique(labels)}  # fmt: skip
        self.everything = (np.arange(len(real.rows)), real_thumbnails)
        self.ssim: list[float] = []
        self.lpips_values: list[float] = []
        self.estimated_fst: list[int] = []
        self.kept: dict[tuple, list[np.ndarray]] = {}

    def __call__(self, rows: pd.DataFrame, images: list[np.ndarray]) -> None:
        thumbnails = thumbnail_features(images)
        labels = rows["label"] if "label" in rows else pd.Series("", index=rows.index)
        nearest = []
        for thumbnail, label in zip(thumbnails, labels, strict=True):
            positions, candidates = self.by_label.get(label, self.everything)
            _, index = F.nearest_distances(thumbnail[None], candidates)
            nearest.append(self.real.image(self.real.rows["path"].iloc[positions[index[0]]]))
        nearest = [resized(real, image.shape) for real, image in zip(nearest, images, strict=True)]
        self.ssim += [F.ssim(image, real) for image, real in zip(images, nearest, strict=True)]
        if self.lpips is not None and self.lpips.distance is not None:
            self.lpips_values += list(self.lpips.distance(images, nearest))
            cells = zip(rows["fst"] if "fst" in rows else [None] * len(rows), labels, strict=True)
            for cell, image in zip(cells, images, strict=True):
                kept = self.kept.setdefault(cell, [])
                if len(kept) < self.keep_per_cell:
                    kept.append(image)
        if "fst" in rows:
            estimates = (estimate_fst(image)[0] for image in images)
            self.estimated_fst += [FST_UNKNOWN if fst is None else fst for fst in estimates]


def _cells(rows: pd.DataFrame) -> list[np.ndarray]:
    keys = [c for c in ("fst", "label") if c in rows]
    if not keys:
        return [np.arange(len(rows))]
    return [np.asarray(index) for index in rows.reset_index(drop=True).groupby(keys, sort=True).indices.values()]


def _diversity(features: np.ndarray, cells: list[np.ndarray], most: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    values = []
    for cell in cells:
        if len(cell) >= 2:
            sample = cell if len(cell) <= most else rng.choice(cell, most, replace=False)
            values.append(F.mean_pairwise_distance(features[sample]))
    if not values:
        raise UndefinedMetricError("needs a cell of at least 2 images")
    return float(np.mean(values))


def _groups(real_rows: pd.DataFrame, synthetic_rows: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``fst<k>`` and ``label_<label>``: the (real, synthetic) row positions of each group."""
    groups = {}
    if "fst" in synthetic_rows and "fst" in real_rows:
        for k in FST_VALUES:
            groups[f"fst{k}"] = (np.flatnonzero(real_rows["fst"].to_numpy() == k),
                                 np.flatnonzero(synthetic_rows["fst"].to_numpy() == k))  # fmt: skip
    if "label" in synthetic_rows and "label" in real_rows:
        for label in sorted(set(real_rows["label"]) | set(synthetic_rows["label"])):
            groups[f"label_{label}"] = (np.flatnonzero(real_rows["label"].to_numpy() == label),
                                        np.flatnonzero(synthetic_rows["label"].to_numpy() == label))  # fmt: skip
    return groups


def quality_report(
    real: ImageSet,
    synthetic: ImageSet,
    extractors: Sequence[Extractor],
    config: EvaluateQualityConfig,
    cache: FeatureCache,
    lpips: Lpips | None = None,
    sampled_ssim: Sequence[float] | None = None,
    held_out: ImageSet | None = None,
) -> Report:
    """The report (module docstring) of ``synthetic`` against ``real``: real features from ``cache``
    (computed once), synthetic ones in one streaming pass with the per-image metrics.
    ``sampled_ssim``: SSIM to the nearest real image of every image the generator sampled, when a
    filter chose ``synthetic`` among them (memorization.ssim_near_copy is measured on those).
    ``held_out``: labelled real images the evaluator did not train on, for label_confidence_real."""
    available = [e for e in extractors if e.available]
    matcher = next((e for e in available if e.name == "pixels"), None) or pixels_extractor()
    needed = available + ([matcher] if matcher not in available else [])
    real_out = cache.features(real, needed, config.batch_size)
    per_image = _PerImage(real, real_out[matcher.name].features, lpips, config.lpips_max_per_cell)
    synthetic_rows, synthetic_out = extract(synthetic, available, config.batch_size, on_batch=per_image,
                                            desc="synthetic features")  # fmt: skip
    writer = _writer(config)
    cells, real_cells = _cells(synthetic_rows), _cells(real.rows)
    groups = _groups(real.rows, synthetic_rows)
    n = len(synthetic_rows)
    writer.set("n_real", len(real.rows))
    writer.set("n_synthetic", n)
    for group, (real_rows, rows) in groups.items():
        writer.set(f"n_real.{group}", len(real_rows))
        writer.set(f"n_synthetic.{group}", len(rows))
        writer.set(f"{group}.small_group", bool(min(len(real_rows), len(rows)) < config.min_group_size))

    labels = synthetic_rows["label"].to_numpy() if "label" in synthetic_rows else None
    for extractor in extractors:
        _extractor_metrics(writer, extractor, real_out.get(extractor.name), synthetic_out.get(extractor.name),
                           cells, real_cells, groups, config)  # fmt: skip
        if extractor.name == "evaluator":
            confidence = _label_metrics(writer, extractor, synthetic_out.get(extractor.name), labels, groups)
            if confidence is not None:
                _real_label_metrics(writer, extractor, confidence, synthetic_rows, held_out, cache, config)

    ssim = np.asarray(per_image.ssim)
    writer.put("ssim", _mean, [ssim], n)
    sampled = ssim if sampled_ssim is None else np.asarray(sampled_ssim, dtype=float)
    writer.put("memorization.ssim_near_copy", _mean, [(sampled >= config.near_copy_ssim).astype(float)],
               len(sampled))
    for group, (_, rows) in groups.items():
        writer.put(f"ssim.{group}", _mean, [ssim[rows]], len(rows))
    if lpips is not None:
        _lpips_metrics(writer, lpips, np.asarray(per_image.lpips_values), per_image.kept, groups)
    if per_image.estimated_fst:
        estimated = np.asarray(per_image.estimated_fst)
        estimated_rows = np.flatnonzero(estimated != FST_UNKNOWN)
        within = within_one_type(estimated, synthetic_rows["fst"]).astype(float)
        writer.put("fst_fidelity.abstention", _mean, [(estimated == FST_UNKNOWN).astype(float)], n)
        if (void_reason := set_abstention_reason(estimated)) is not None:
            writer.unavailable("fst_fidelity", void_reason)
        else:
            writer.put("fst_fidelity", _mean, [within[estimated_rows]], len(estimated_rows))
            for group, (_, rows) in groups.items():
                if group.startswith("fst"):
                    rows = np.intersect1d(rows, estimated_rows)
                    writer.put(f"fst_fidelity.{group}", _mean, [within[rows]], len(rows))
    else:
        writer.unavailable("fst_fidelity", "the synthetic images have no requested FST (an 'fst' column)")
    return writer.report


def _extractor_metrics(
    writer: ReportWriter,
    extractor: Extractor,
    real: Output | None,
    fake: Output | None,
    cells: list[np.ndarray],
    real_cells: list[np.ndarray],
    groups: dict[str, tuple[np.ndarray, np.ndarray]],
    config: EvaluateQualityConfig,
) -> None:
    e = extractor.name
    names = [f"fid.{e}", f"kid.{e}", f"precision.{e}", f"recall.{e}", f"diversity.{e}", f"diversity.{e}_ratio",
             f"memorization.near_copy.{e}", f"memorization.nn_ratio.{e}", f"realness_auc.{e}"] + (
        [f"is.{e}"] if e != "pixels" else [])  # fmt: skip
    if real is None or fake is None:
        for name in names:
            writer.unavailable(name, extractor.reason or "unavailable")
        return
    n = len(fake.features)

    def kid(r: np.ndarray, f: np.ndarray) -> float:
        return F.kid(r, f, config.kid_subset_size, config.kid_subsets, config.seed)

    def kid_resample(r: np.ndarray, f: np.ndarray) -> float:  # sets over subset_size: one subset per resample
        return F.kid(r, f, config.kid_subset_size, 1, config.seed)

    # FID has no interval: its resamples sit above it (upward bias at finite n), KID's do not
    writer.put(f"fid.{e}", F.fid, [real.features, fake.features], n, interval=False)
    writer.put(f"kid.{e}", kid, [real.features, fake.features], n, resample=kid_resample, distinct=True)
    if fake.logits is not None:
        writer.put(f"is.{e}", lambda logits: F.inception_score(logits, config.is_splits, config.seed),
                   [fake.logits], n, interval=False)  # fmt: skip
    try:
        precision, recall = F.precision_recall(real.features, fake.features, config.pr_k)
    except UndefinedMetricError as err:
        writer.unavailable(f"precision.{e}", str(err))
        writer.unavailable(f"recall.{e}", str(err))
    else:  # k-NN radii of a resample with duplicates are 0: no bootstrap
        writer.put(f"precision.{e}", lambda: precision, [], n, interval=False)
        writer.put(f"recall.{e}", lambda: recall, [], n, interval=False)

    def diversity(features: np.ndarray, groups_of: list[np.ndarray]) -> float:
        return _diversity(features, groups_of, config.diversity_max_per_cell, config.seed)

    def diversity_ratio() -> float:
        if (real_diversity := diversity(real.features, real_cells)) == 0:
            raise UndefinedMetricError("the real images of every cell are identical (diversity 0)")
        return diversity(fake.features, cells) / real_diversity

    writer.put(f"diversity.{e}", lambda: diversity(fake.features, cells), [], n, interval=False)
    writer.put(f"diversity.{e}_ratio", diversity_ratio, [], n, interval=False)

    real_nn, _ = F.nearest_distances(real.features, real.features, exclude_self=True)
    fake_nn, _ = F.nearest_distances(fake.features, real.features)
    threshold = np.quantile(real_nn, config.near_copy_quantile)
    writer.put(f"memorization.near_copy.{e}", _mean, [(fake_nn < threshold).astype(float)], n)
    writer.put(f"memorization.nn_ratio.{e}", lambda: float(np.median(fake_nn) / np.median(real_nn)), [], n,
               interval=False)  # fmt: skip

    # cross-validated: the probe's folds are its resamples, no bootstrap on top
    writer.put(f"realness_auc.{e}", lambda: F.realness_auc(real.features, fake.features, config.realness_folds,
                                                           config.seed), [], n, interval=False)  # fmt: skip

    for group, (real_rows, rows) in groups.items():
        writer.put(f"kid.{e}.{group}", kid, [real.features[real_rows], fake.features[rows]], len(rows),
                   resample=kid_resample, distinct=True)  # fmt: skip
        group_cells = [cell[np.isin(cell, rows)] for cell in cells]
        writer.put(f"diversity.{e}.{group}", lambda c=group_cells: diversity(fake.features, c), [], len(rows),
                   interval=False)  # fmt: skip


def _label_metrics(
    writer: ReportWriter,
    extractor: Extractor,
    fake: Output | None,
    labels: np.ndarray | None,
    groups: dict[str, tuple[np.ndarray, np.ndarray]],
) -> np.ndarray | None:
    """label_confidence.<e> and label_accuracy.<e>, overall and per group: does the evaluator see the
    label each synthetic image was asked for? Returns each image's confidence (None: unavailable)."""
    e = extractor.name
    names = [f"label_confidence.{e}", f"label_accuracy.{e}"]
    reason = extractor.reason if fake is None else None
    if reason is None and labels is None:
        reason = "the synthetic images have no requested label (a 'label' column)"
    if reason is None:
        try:
            confidence, correct = F.label_scores(fake.logits, extractor.classes, labels)
        except UndefinedMetricError as err:
            reason = str(err)
    if reason is not None:
        for name in [*names, f"label_confidence_real.{e}", f"label_confidence_ratio.{e}"]:
            writer.unavailable(name, reason)
        return None
    for name, values in zip(names, (confidence, correct), strict=True):
        writer.put(name, _mean, [values], len(values))
        for group, (_, rows) in groups.items():
            writer.put(f"{name}.{group}", _mean, [values[rows]], len(rows))
    return confidence


def _ratio_of_means(synthetic: np.ndarray, real: np.ndarray) -> float:
    if (reference := _mean(real)) == 0:
        raise UndefinedMetricError("the evaluator gives the real images' labels probability 0")
    return _mean(synthetic) / reference


def _real_label_metrics(
    writer: ReportWriter,
    extractor: Extractor,
    confidence: np.ndarray,
    synthetic_rows: pd.DataFrame,
    held_out: ImageSet | None,
    cache: FeatureCache,
    config: EvaluateQualityConfig,
) -> None:
    """label_confidence_real.<e> and label_confidence_ratio.<e>, overall and per group: the evaluator
    on held-out real images, the reference that synthetic ``confidence`` is read against (an evaluator
    unsure of real FST VI lesions is unsure of synthetic ones too)."""
    e = extractor.name
    real_name, ratio_name = f"label_confidence_real.{e}", f"label_confidence_ratio.{e}"
    if held_out is None or "label" not in held_out.rows:
        for name in (real_name, ratio_name):
            writer.unavailable(name, "no held-out real images with labels to compare with")
        return
    logits = cache.features(held_out, [extractor], config.batch_size)[e].logits
    try:
        real_confidence, _ = F.label_scores(logits, extractor.classes, held_out.rows["label"].to_numpy())
    except UndefinedMetricError as err:
        for name in (real_name, ratio_name):
            writer.unavailable(name, f"held-out real images: {err}")
        return
    writer.put(real_name, _mean, [real_confidence], len(real_confidence))
    writer.put(ratio_name, _ratio_of_means, [confidence, real_confidence], len(confidence))
    for group, (real_rows, rows) in _groups(held_out.rows, synthetic_rows).items():
        writer.put(f"{real_name}.{group}", _mean, [real_confidence[real_rows]], len(real_rows))
        writer.put(f"{ratio_name}.{group}", _ratio_of_means, [confidence[rows], real_confidence[real_rows]],
                   len(rows))  # fmt: skip


def _lpips_metrics(
    writer: ReportWriter,
    lpips: Lpips,
    values: np.ndarray,
    kept: dict[tuple, list[np.ndarray]],
    groups: dict[str, tuple[np.ndarray, np.ndarray]],
) -> None:
    name, spread = f"lpips.{lpips.net}", f"diversity.lpips_{lpips.net}"
    if lpips.distance is None:
        writer.unavailable(name, lpips.reason or "unavailable")
        writer.unavailable(spread, lpips.reason or "unavailable")
        return
    writer.put(name, _mean, [values], len(values))
    for group, (_, rows) in groups.items():
        writer.put(f"{name}.{group}", _mean, [values[rows]], len(rows))
    cell_means = []
    for images in kept.values():
        pairs = [(i, j) for i in range(len(images)) for j in range(i + 1, len(images))]
        if pairs:
            cell_means.append(lpips.distance([images[i] for i, _ in pairs], [images[j] for _, j in pairs]).mean())
    writer.put(spread, lambda: _mean(np.asarray(cell_means)), [], sum(len(v) for v in kept.values()), interval=False)
