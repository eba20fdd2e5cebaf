"""Pydantic models of params.yaml.

Defaults are the `tiny` profile; other profiles are overlays in profiles/<name>.yaml. Every model
forbids unknown keys so that a typo in params.yaml is an error naming the key, not a silent default.
Params are grouped per DVC stage (`prepare`, ...) like DVC's example-get-started.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from fairaug.config.base import StrictModel
from fairaug.config.diffusion import BaseConfig, PromptsConfig, TrainLoraConfig
from fairaug.config.fairness import ClassifierConfig, FairnessConfig, MixConfig
from fairaug.config.generation import GenerateConfig
from fairaug.config.quality import EvaluateQualityConfig
from fairaug.config.registry import PromoteConfig
from fairaug.config.weights import WeightsConfig
from fairaug.labels import HAM10000_DX, WOUND_PHASES
from fairaug.skin.ita import DEFAULT_MAX_ABSTENTION_SHARE, DEFAULT_MIN_SKIN_FRACTION

DatasetFormat = Literal["ham10000", "fitzpatrick17k", "ddi", "csv", "imagefolder"]


class DatasetConfig(StrictModel):
    format: DatasetFormat = Field(description="on-disk layout of the raw data set")
    root: str = Field(description="data set directory, relative to the project root (tracked by data.dvc)")
    domain: Literal["derm", "wound"] = Field(description="image domain: dermoscopy or wound photographs")
    labels: list[str] | None = Field(
        None, description="allowed labels, in order (wound phases are ordinal); null: the format's own set"
    )

    def allowed_labels(self) -> list[str] | None:
        if self.labels is not None:
            return self.labels
        return list(HAM10000_DX) if self.format == "ham10000" else None


class SplitConfig(StrictModel):
    train: float = Field(0.7, gt=0, lt=1, description="share of groups (lesions/patients) in the train split")
    val: float = Field(0.15, gt=0, lt=1, description="share in the validation split")
    test: float = Field(0.15, gt=0, lt=1, description="share in the test split")
    min_test_per_fst: int | None = Field(
        None, gt=0,
        description="least test images of every FST 1-6 present (whole groups move into test, one train group "
        "of each FST stays); null: the shares alone",
    )

    @model_validator(mode="after")
    def _shares_sum_to_one(self) -> SplitConfig:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"split shares must sum to 1, got {total:g}")
        return self


class PrepareConfig(StrictModel):
    fst_source: Literal["auto", "label", "ita"] = Field(
        "auto", description="auto: the FST label when the data has one, else ITA; label: require labels; ita: always ITA"
    )
    split: SplitConfig = Field(default_factory=SplitConfig)
    seed: int = Field(0, description="seed of the group-disjoint stratified split")
    max_images: int | None = Field(None, gt=0, description="label-stratified subsample of at most this many images")
    min_image_size: int = Field(32, gt=0, description="smallest accepted image side, in pixels")
    near_duplicate_distance: int = Field(
        4, ge=0, le=64,
        description="pHash Hamming distance at or below which two images count as near duplicates (kept in one split)",
    )
    allow_label_conflicts: bool = Field(
        False, description="keep identical images with different labels (reported) instead of stopping"
    )
    min_skin_fraction: float = Field(
        DEFAULT_MIN_SKIN_FRACTION, ge=0, le=1,
        description="least share of non-lesion skin in an image's field for an ITA estimate; less: FST unknown",
    )
    max_abstention_share: float = Field(
        DEFAULT_MAX_ABSTENTION_SHARE, ge=0, le=1,
        description="more images than this share without enough skin: a set of lesion crops, no ITA estimate for any",
    )


LAUNCHER_TOKEN = re.compile(r"^[A-Za-z0-9_.,:=/+-]+$")  # no shell metacharacters: dvc.yaml runs it in a shell


class ComputeConfig(StrictModel):
    launcher: str = Field(
        "python",
        description="how training stages start: python, or e.g. 'accelerate launch --multi_gpu --num_processes 4'",
    )

    @field_validator("launcher")
    @classmethod
    def _documented_launcher(cls, launcher: str) -> str:
        tokens = launcher.split()
        if tokens[:1] != ["python"] and tokens[:2] != ["accelerate", "launch"]:
            raise ValueError("must start with 'python' or 'accelerate launch' (the launchers the README documents)")
        if bad := [token for token in tokens if not LAUNCHER_TOKEN.match(token)]:
            raise ValueError(f"{bad[0]!r}: only letters, digits and _.,:=/+- (it is part of a shell command line)")
        return launcher


class TrackingConfig(StrictModel):
    experiment_prefix: str = Field("fairaug", description="MLflow experiment is <prefix>/<dataset>")


class DashboardConfig(StrictModel):
    allow_promotion: bool = Field(
        False, description="let the dashboard's Registry page promote a version (with a confirmation); off: read-only"
    )


def _fixture_datasets() -> dict[str, DatasetConfig]:
    return {
        "ham10000": DatasetConfig(format="ham10000", root="data/ham10000", domain="derm"),
        "wound": DatasetConfig(format="csv", root="data/wound", domain="wound", labels=list(WOUND_PHASES)),
    }


class Params(StrictModel):
    profile: str = Field("tiny", description="name of the profile these params came from (fairaug profile NAME)")
    datasets: dict[str, DatasetConfig] = Field(
        default_factory=_fixture_datasets, description="data sets the pipeline runs on (DVC foreach)"
    )
    prepare: PrepareConfig = Field(default_factory=PrepareConfig)
    prompts: PromptsConfig = Field(default_factory=PromptsConfig)
    base: BaseConfig = Field(default_factory=BaseConfig)
    train_lora: TrainLoraConfig = Field(default_factory=TrainLoraConfig)
    train_classifier: ClassifierConfig = Field(default_factory=ClassifierConfig)
    mix: MixConfig = Field(default_factory=MixConfig)
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    evaluate_quality: EvaluateQualityConfig = Field(default_factory=EvaluateQualityConfig)
    evaluate_fairness: FairnessConfig = Field(default_factory=FairnessConfig)
    promote: PromoteConfig = Field(default_factory=PromoteConfig)
    compute: ComputeConfig = Field(default_factory=ComputeConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    dashboard: DashboardConfig = Field(default_factory=DashboardConfig)
    weights: WeightsConfig = Field(default_factory=WeightsConfig)

    def dataset(self, name: str) -> DatasetConfig:
        from fairaug.errors import ConfigError

        if name not in self.datasets:
            raise ConfigError(f"params.yaml: datasets: no data set '{name}' (have: {', '.join(self.datasets)})")
        return self.datasets[name]
