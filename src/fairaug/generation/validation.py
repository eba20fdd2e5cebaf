"""The judge of train_lora's validation grids: which validation's LoRA is shipped (`train_lora.select_by`).

The judge is the filter's classifier (train_classifier@<d>-real, the weights generate filters with),
never the evaluator that grades the synthetic set in evaluate_quality: nothing is graded by the model
that selected it. For sampled images and the labels they were asked for it gives

    label confidence   the classifier's mean probability of the requested label
                       (`quality/label_confidence`'s measure, `label_scores`)
    KID                between the images and the real validation split, in the classifier's
                       feature space (its backbone, `evaluator_extractor` on these weights)

The grid is small (a few dozen images): its KID is the unbiased MMD^2 of the whole sets (a subset
size covering both), so that validations differ by their images, not by subset draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from fairaug.config import Params
from fairaug.data.files import MANIFEST
from fairaug.diffusion.lora import KID, LABEL_CONFIDENCE
from fairaug.errors import DataError
from fairaug.fairness.files import WEIGHTS
from fairaug.metrics.extractors import evaluator_extractor
from fairaug.metrics.features import ImageSet, extract, manifest_set
from fairaug.metrics.functional import kid, label_scores

REAL_SPLIT = "val"  # the grid's KID is to these real images: held out from the LoRA's training
FEATURE_BATCH = 64  # real images per classifier call


class ValidationJudge:
    """Scores sampled images with the classifier in ``source`` (`fairaug.diffusion.stage.SampleJudge`).

    The real split's features are computed at the first call, so that only the process that scores
    (the main one, under `accelerate launch`) reads the real images.
    """

    def __init__(self, source: Path, real: ImageSet, labels: Sequence[str]):
        weights = Path(source) / WEIGHTS
        if not weights.is_file():
            raise DataError("not found: the filter's classifier, the judge of train_lora's validation samples "
                            "(train_lora.select_by); run `dvc repro train_classifier` first", file=weights)
        self.source, self.real = Path(source), real
        self.extractor = evaluator_extractor(weights)  # any classifier's weights: here the filter's
        self.key = self.extractor.key
        if unknown := sorted(set(labels) - set(self.extractor.classes)):
            raise DataError(f"the filter's classifier does not know the train labels {', '.join(unknown)} (its "
                            f"classes: {', '.join(self.extractor.classes)}); rerun train_classifier", file=weights)

    @cached_property
    def real_features(self) -> np.ndarray:
        _, outputs = extract(self.real, [self.extractor], FEATURE_BATCH, desc=f"{REAL_SPLIT} features")
        return outputs[self.extractor.name].features

    def __call__(self, images: Sequence[np.ndarray], labels: Sequence[str]) -> dict[str, float]:
        output = self.extractor.extract(images)
        confidence, _ = label_scores(output.logits, self.extractor.classes, labels)
        real = self.real_features
        distance = kid(real, output.features, subset_size=max(len(real), len(images)))
        return {LABEL_CONFIDENCE: float(confidence.mean()), KID: distance}


def validation_judge(params: Params, dataset: str, prepared_dir: Path, classifier_dir: Path) -> ValidationJudge:
    """The judge of ``dataset``'s LoRA: the classifier in ``classifier_dir`` (outputs/<d>/classifier/real),
    the real images of the prepared manifest's validation split."""
    manifest = pd.read_parquet(Path(prepared_dir) / MANIFEST)
    labels = manifest.loc[manifest["split"] == "train", "label"].unique()
    return ValidationJudge(classifier_dir, manifest_set(manifest, params.dataset(dataset).root, REAL_SPLIT), labels)
