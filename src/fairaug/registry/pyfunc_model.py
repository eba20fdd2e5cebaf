"""An MLflow pyfunc model (logged from code) that carries a local base pipeline and its LoRA.

`mlflow.diffusers` references its base model by hub id or path; a base built here (tiny profile) or
on local disk would be missing on another machine, so this model carries it as an artifact and
loads from the tracking store alone. Same interface as `mlflow.diffusers`' pyfunc: prompts in (a
list, a string, or a DataFrame with a ``prompt`` column), PNG bytes out, one per prompt; params
``num_inference_steps``, ``guidance_scale``, ``height``, ``width``, ``negative_prompt`` and ``seed``
(image i gets seed + i: the same call gives the same images).

Imports only diffusers, torch and mlflow, so it loads where fairaug is not installed; torch and
diffusers when the model loads, so the registry reads the artifact names without them.
"""

from __future__ import annotations

import io

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

BASE_ARTIFACT = "base"
LORA_ARTIFACT = "lora"
GENERATION_PARAMS = ("num_inference_steps", "guidance_scale", "height", "width", "negative_prompt")


def prompts_of(model_input) -> list[str]:
    if isinstance(model_input, pd.DataFrame):
        column = "prompt" if "prompt" in model_input.columns else model_input.columns[0]
        model_input = model_input[column].tolist()
    prompts = [model_input] if isinstance(model_input, str) else list(model_input)
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise ValueError("give one or more prompt strings")
    return prompts


class LoraPipelineModel(PythonModel):
    _skip_type_hint_validation = True  # the logged signature validates inputs (MLflow nags without hints)

    def load_context(self, context) -> None:
        from pathlib import Path

        import torch
        from diffusers import StableDiffusionPipeline

        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.pipeline = StableDiffusionPipeline.from_pretrained(
            context.artifacts[BASE_ARTIFACT], safety_checker=None, requires_safety_checker=False, use_safetensors=True
        )
        lora = Path(context.artifacts[LORA_ARTIFACT])
        self.pipeline.load_lora_weights(lora.parent, weight_name=lora.name)
        self.pipeline.set_progress_bar_config(disable=True)
        self.pipeline.to(device)

    def predict(self, context, model_input, params: dict | None = None) -> list[bytes]:
        import torch

        params = params or {}
        prompts = prompts_of(model_input)
        seed = int(params.get("seed", 0))
        generators = [torch.Generator(device="cpu").manual_seed(seed + i) for i in range(len(prompts))]
        kwargs = {key: params[key] for key in GENERATION_PARAMS if params.get(key) not in (None, "")}
        images = self.pipeline(prompts, generator=generators, **kwargs).images
        encoded = []
        for image in images:
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            encoded.append(buffer.getvalue())
        return encoded


mlflow.models.set_model(LoraPipelineModel())
