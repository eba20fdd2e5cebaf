"""The LoRA as an MLflow model: prompts in, PNG images out, loadable from the tracking store alone.

- Hub base (real profiles): MLflow's own `mlflow.diffusers` flavor, the LoRA safetensors plus the
  base's hub id pinned at the revision `base_model` resolved (not the hub's latest).
- Tiny or local base: a pyfunc (`pyfunc_model.py`, logged from code, no pickle) carrying the base
  pipeline directory as an artifact, with the same interface.

Both record in their metadata what `fairaug generate` needs to build prompts (data set, domain,
prompt template, labels, resolution) and the candidate's digest.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema

from fairaug.config import Params
from fairaug.diffusion.files import BASE_FILE, trained_weights, verify_base_weights
from fairaug.errors import FairaugError
from fairaug.registry.pyfunc_model import BASE_ARTIFACT, LORA_ARTIFACT

PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")
MODEL_NAME = "lora"  # the logged model's name inside its run
PIP_REQUIREMENTS = ["diffusers", "transformers", "torch", "peft", "safetensors", "accelerate", "pillow", "pandas"]


@dataclass(frozen=True)
class Candidate:
    """A LoRA to register: the weights file generate sampled with, its base, and their digest."""

    dataset: str
    lora_file: Path
    base_dir: Path
    base_record: dict
    digest: str


def lora_candidate(params: Params, dataset: str, lora_dir: Path, base_dir: Path) -> Candidate:
    """The LoRA weights the synthetic set was sampled with (``generate.lora_weights``); the digest
    covers their bytes and the base's weights, so the same LoRA is one registry version."""
    lora_file = trained_weights(lora_dir, params.generate.lora_weights)
    base_file = Path(base_dir) / BASE_FILE
    if not base_file.is_file():
        raise FairaugError(f"{base_file}: not found; run `dvc repro train_lora@{dataset}` first")
    record = json.loads(base_file.read_text())
    digest = hashlib.sha256()
    with lora_file.open("rb") as handle:
        digest.update(hashlib.file_digest(handle, "sha256").digest())
    digest.update(json.dumps(record, sort_keys=True).encode())
    return Candidate(dataset, lora_file, Path(base_dir), record, digest.hexdigest())


def model_metadata(params: Params, candidate: Candidate, labels: list[str]) -> dict:
    domain = params.dataset(candidate.dataset).domain
    return {"fairaug": {"dataset": candidate.dataset, "domain": domain, "template": params.prompts.templates[domain],
                        "negative_prompt": params.prompts.negative, "labels": labels,
                        "resolution": params.base.resolution, "base": candidate.base_record,
                        "digest": candidate.digest}}  # fmt: skip


def signature(resolution: int, steps: int, guidance: float) -> ModelSignature:
    """mlflow.diffusers' signature (prompts in, PNG bytes out) at this model's size, plus ``seed``;
    the input column is unnamed so that a plain list of prompts is accepted."""
    return ModelSignature(
        inputs=Schema([ColSpec(DataType.string)]),
        outputs=Schema([ColSpec(DataType.binary)]),
        params=ParamSchema([
            ParamSpec("num_inference_steps", DataType.integer, steps),
            ParamSpec("guidance_scale", DataType.double, guidance),
            ParamSpec("height", DataType.integer, resolution),
            ParamSpec("width", DataType.integer, resolution),
            ParamSpec("negative_prompt", DataType.string, ""),
            ParamSpec("seed", DataType.integer, 0),
        ]),
    )  # fmt: skip


class _PinnedDiffusersFlavor:
    """`mlflow.diffusers` recording the base revision that base_model pinned: the flavor itself
    would ask the hub for its latest commit (or record none offline)."""

    __name__ = "mlflow.diffusers"

    def __init__(self, revision: str):
        self.revision = revision

    def save_model(self, path: str, mlflow_model, **kwargs) -> None:
        mlflow.diffusers.save_model(path=path, mlflow_model=mlflow_model, **kwargs)
        mlflow_model.flavors["diffusers"]["base_model_revision"] = self.revision
        mlflow_model.save(str(Path(path) / "MLmodel"))


def log_lora_model(params: Params, candidate: Candidate, labels: list[str]):
    """Log the candidate as a model of the active run; returns MLflow's ModelInfo."""
    common = {
        "name": MODEL_NAME,
        "signature": signature(params.base.resolution, params.generate.steps, params.generate.guidance_scale),
        "metadata": model_metadata(params, candidate, labels),
        "pip_requirements": PIP_REQUIREMENTS,
    }
    if candidate.base_record["source"] == "hub":
        return mlflow.models.Model.log(artifact_path=None, flavor=_PinnedDiffusersFlavor(candidate.base_record["revision"]),
                                       adapter_path=str(candidate.lora_file),
                                       base_model=candidate.base_record["hub_id"], **common)  # fmt: skip
    base = candidate.base_dir if candidate.base_record["source"] == "tiny" else candidate.base_record["local_path"]
    verify_base_weights(candidate.base_dir, candidate.base_record, Path(base))  # the model carries these bytes
    with warnings.catch_warnings():  # an input example would run the model at logging time; the signature serves
        warnings.filterwarnings("ignore", message=".*input example was not provided")
        return mlflow.pyfunc.log_model(python_model=str(PYFUNC_CODE),
                                       artifacts={BASE_ARTIFACT: str(base), LORA_ARTIFACT: str(candidate.lora_file)},
                                       **common)  # fmt: skip


def model_prompts(model_uri: str, fst: int, label: str, n: int) -> list[str]:
    """``n`` prompts for (fst, label) from the template the model was registered with."""
    from fairaug.diffusion.prompts import build_prompt

    info = mlflow.models.get_model_info(model_uri).metadata or {}
    meta = info.get("fairaug")
    if not meta:
        raise FairaugError(f"{model_uri}: not a fairaug LoRA model (no fairaug metadata)")
    if meta["labels"] and label not in meta["labels"]:
        raise FairaugError(f"--label {label}: the model knows {', '.join(meta['labels'])}")
    return [build_prompt(meta["template"], meta["domain"], label, fst)] * n
