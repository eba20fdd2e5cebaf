"""The tiny base: built from config, pretrained deterministically, saved as a stock diffusers pipeline;
hub and local bases recorded with their weights' hashes; the base_model stage end to end."""

import json
import shutil

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from diffusers import StableDiffusionPipeline
from PIL import Image

from fairaug.config import load_params
from fairaug.config.diffusion import DEFAULT_TEMPLATES, BaseConfig, PretrainConfig
from fairaug.config.loader import render_params
from fairaug.config.models import DatasetConfig
from fairaug.diffusion.base import build_tiny_pipeline, load_base_pipeline, resolve_base, save_tiny_base
from fairaug.diffusion.base import weight_hashes
from fairaug.diffusion.files import BASE_FILE
from fairaug.diffusion.loss import encode_latents
from fairaug.diffusion.pretrain import pretrain_tiny, pretraining_images
from fairaug.diffusion.prompts import all_prompts
from fairaug.diffusion.stage import BASE_SAMPLES, base_samples
from fairaug.diffusion.tokenizer import build_tokenizer
from fairaug.errors import ConfigError, exit_on_user_error
from fairaug.labels import HAM10000_DX
from fairaug.tracking.lineage import dvc_md5

from conftest import run

PROMPT = "fitzpatrick skin type V, dermoscopic image of melanoma"
FEW_STEPS = PretrainConfig(vae_steps=16, vae_batch_size=8, unet_steps=16, unet_batch_size=8, generic_skin_images=12,
                           perceptual_net_steps=24)


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(all_prompts(DEFAULT_TEMPLATES, {"derm": list(HAM10000_DX)}))


def derm_train_split(fixture_data, n: int) -> tuple[pd.DataFrame, DatasetConfig]:
    """The first ``n`` images of the derm fixture as a train split, and its data set config."""
    root = fixture_data / "ham10000"
    metadata = pd.read_csv(root / "HAM10000_metadata.csv")
    paths = {p.stem: p.relative_to(root).as_posix() for p in root.glob("*/*.jpg")}
    train = pd.DataFrame({"path": metadata["image_id"].map(paths), "label": metadata["dx"],
                          "fst": metadata["fitzpatrick"]}).head(n)  # fmt: skip
    return train, DatasetConfig(format="ham10000", root=str(root), domain="derm")


@pytest.fixture(scope="module")
def train_images(fixture_data):
    """The derm fixture as a train split, plus generic skin images."""
    train, config = derm_train_split(fixture_data, 48)
    images = pretraining_images({"ham10000": train}, {"ham10000": config}, 32, DEFAULT_TEMPLATES, FEW_STEPS)
    assert len(images) == 48 + FEW_STEPS.generic_skin_images
    return images


def test_pretraining_images_hold_every_data_set_prompted_by_its_domain(fixture_data):
    derm, derm_config = derm_train_split(fixture_data, 5)
    labels = pd.read_csv(fixture_data / "wound" / "labels.csv").head(4)
    wound = pd.DataFrame({"path": labels["image"], "label": labels["label"], "fst": labels["fst"]})
    wound_config = DatasetConfig(format="csv", root=str(fixture_data / "wound"), domain="wound")
    images = pretraining_images({"ham10000": derm, "wound": wound}, {"ham10000": derm_config, "wound": wound_config},
                                32, DEFAULT_TEMPLATES, FEW_STEPS)  # fmt: skip
    prompts = [images[i]["prompt"] for i in range(len(images))]
    assert len(prompts) == 5 + 4 + FEW_STEPS.generic_skin_images
    assert all("dermoscopic image of" in prompt for prompt in prompts[:5])
    assert all("photo of a wound in the" in prompt for prompt in prompts[5:9])
    assert all(prompt.endswith("photo of healthy skin") for prompt in prompts[9:])
    assert images[5]["pixels"].shape == images[0]["pixels"].shape == (3, 32, 32)


def generate(pipeline, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return pipeline(PROMPT, num_inference_steps=2, generator=generator, output_type="np").images


@pytest.fixture(scope="module")
def pretrained(tokenizer, train_images):
    pipeline = build_tiny_pipeline(BaseConfig(pretrain=FEW_STEPS), tokenizer)
    curves = pretrain_tiny(pipeline, train_images, FEW_STEPS, progress=False)
    return pipeline, curves


def test_tiny_pipeline_generates_at_the_configured_resolution(tokenizer):
    pipeline = build_tiny_pipeline(BaseConfig(), tokenizer)
    assert pipeline.text_encoder.config.max_position_embeddings == tokenizer.model_max_length
    assert pipeline.unet.config.cross_attention_dim == pipeline.text_encoder.config.hidden_size
    assert pipeline.scheduler.config.beta_schedule == "scaled_linear"
    assert generate(pipeline).shape == (1, 32, 32, 3)


def test_pretraining_lowers_losses_and_is_deterministic(pretrained, tokenizer, train_images):
    pipeline, curves = pretrained
    assert list(curves) == ["perceptual_net_loss", "vae_loss", "unet_loss"]  # logged as pretrain/<name>
    for name, steps in (("perceptual_net_loss", 24), ("vae_loss", 16), ("unet_loss", 16)):
        losses = curves[name]
        assert len(losses) == steps
        assert np.mean(losses[-4:]) < np.mean(losses[:4]), name
    assert pipeline.vae.config.scaling_factor != 0.18215  # latents rescaled to unit variance

    again = build_tiny_pipeline(BaseConfig(pretrain=FEW_STEPS), tokenizer)
    assert pretrain_tiny(again, train_images, FEW_STEPS, progress=False) == curves
    for name in ("vae", "unet", "text_encoder"):
        first, second = getattr(pipeline, name).state_dict(), getattr(again, name).state_dict()
        assert all(torch.equal(first[key], second[key]) for key in first), name
    assert again.vae.config.scaling_factor == pipeline.vae.config.scaling_factor


def test_vae_perceptual_loss_adds_the_feature_distance_to_the_same_draws(tokenizer, train_images, pretrained):
    config = FEW_STEPS.model_copy(update={"vae_perceptual_weight": 0.0})
    pipeline = build_tiny_pipeline(BaseConfig(pretrain=config), tokenizer)
    curves = pretrain_tiny(pipeline, train_images, config, progress=False)
    assert list(curves) == ["vae_loss", "unet_loss"]  # off: no network trained
    # the first step's weights and batch are the same either way: only the feature distance differs
    with_distance = pretrained[1]["vae_loss"]
    assert with_distance[0] > curves["vae_loss"][0]
    assert all(ours > pixels for ours, pixels in zip(with_distance, curves["vae_loss"], strict=True))


def test_pretrained_latents_have_unit_variance(pretrained, train_images):
    """SD's convention, checked through the plain encode path rather than the cache that set it."""
    pipeline, _ = pretrained
    pixels = torch.stack([train_images[i]["pixels"] for i in range(len(train_images))])
    with torch.no_grad():
        latent_shape = pipeline.vae.encode(pixels[:1]).latent_dist.mean.shape[1:]
    latent_noise = torch.randn(len(pixels), *latent_shape, generator=torch.Generator().manual_seed(3))
    latents = encode_latents(pipeline.vae, pixels, latent_noise)
    assert latents.std().item() == pytest.approx(1.0, abs=0.05)


def test_saved_tiny_base_loads_with_the_stock_pipeline(pretrained, tmp_path):
    pipeline, _ = pretrained
    record = save_tiny_base(pipeline, tmp_path)
    assert json.loads((tmp_path / BASE_FILE).read_text()) == record
    assert record["source"] == "tiny" and "unet/diffusion_pytorch_model.safetensors" in record["weights"]
    assert not list(tmp_path.rglob("*.bin"))  # safetensors only
    stock = StableDiffusionPipeline.from_pretrained(tmp_path)
    assert stock.vae.config.scaling_factor == pipeline.vae.config.scaling_factor
    np.testing.assert_array_equal(generate(stock, seed=3), generate(pipeline, seed=3))
    np.testing.assert_array_equal(generate(load_base_pipeline(tmp_path), seed=3), generate(pipeline, seed=3))


def test_local_base_is_recorded_with_weight_hashes_not_copied(tokenizer, tmp_path):
    local = tmp_path / "local-sd"
    build_tiny_pipeline(BaseConfig(), tokenizer).save_pretrained(local)
    out = tmp_path / "base"
    out.mkdir()
    record = resolve_base(BaseConfig(source="local", local_path=str(local)), out)
    assert record == {"source": "local", "local_path": str(local), "weights": weight_hashes(local)}
    assert len(record["weights"]) == 3  # unet, vae, text encoder
    assert sorted(p.name for p in out.iterdir()) == [BASE_FILE]
    assert isinstance(load_base_pipeline(out), StableDiffusionPipeline)


def test_hub_base_is_loaded_at_its_pinned_revision(tokenizer, tmp_path, monkeypatch):
    import huggingface_hub.constants

    hub_id, revision = "someone/tiny-sd", "0123456789abcdef0123456789abcdef01234567"
    cache = tmp_path / "hub"
    snapshot = cache / "models--someone--tiny-sd" / "snapshots" / revision
    build_tiny_pipeline(BaseConfig(), tokenizer).save_pretrained(snapshot)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    calls = []

    def from_pretrained(name, **kwargs):
        assert kwargs["use_safetensors"] is True  # never a pickled .bin
        calls.append((name, kwargs.get("revision")))
        return "pipeline"

    monkeypatch.setattr(StableDiffusionPipeline, "from_pretrained", from_pretrained)
    out = tmp_path / "base"
    out.mkdir()
    record = resolve_base(BaseConfig(source="hub", hub_id=hub_id, revision=revision), out)
    assert calls == [(hub_id, revision)]
    assert record == {"source": "hub", "hub_id": hub_id, "revision": revision, "weights": weight_hashes(snapshot)}
    assert sorted(p.name for p in out.iterdir()) == [BASE_FILE]
    assert load_base_pipeline(out) == "pipeline" and calls[-1] == (hub_id, revision)


def test_tampered_base_weights_are_refused_in_one_line(tiny_base, tmp_path, capsys):
    base = shutil.copytree(tiny_base, tmp_path / "base")
    weights = base / "unet" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one bit of one tensor: still a valid safetensors file
    weights.write_bytes(bytes(data))
    with pytest.raises(SystemExit) as exited:
        exit_on_user_error(load_base_pipeline)(base)
    assert exited.value.code == 2
    stderr = capsys.readouterr().err
    assert stderr.count("\n") == 1 and "Traceback" not in stderr
    assert f"error: {weights}: sha256 differs from the one recorded in {base / BASE_FILE}" in stderr


def test_pickled_local_base_is_refused(tokenizer, tmp_path):
    local = tmp_path / "local-sd"
    build_tiny_pipeline(BaseConfig(), tokenizer).save_pretrained(local, safe_serialization=False)
    assert list(local.rglob("*.bin"))
    out = tmp_path / "base"
    out.mkdir()
    with pytest.raises(ConfigError, match=r"^base.local_path .*no file named diffusion_pytorch_model.safetensors"):
        resolve_base(BaseConfig(source="local", local_path=str(local)), out)
    assert not (out / BASE_FILE).exists()


@pytest.mark.slow
def test_base_model_stage_pretrains_one_base_for_every_data_set_with_a_run_in_each(project):
    for dataset in ("ham10000", "wound"):
        run(["python", "pipelines/prepare.py", "--dataset", dataset, "--out", f"outputs/{dataset}/prepared",
             "--base-train", f"outputs/base_train/{dataset}.parquet"], project)  # fmt: skip
    params = load_params(project / "params.yaml")
    few = params.base.pretrain.model_copy(update={"vae_steps": 5, "unet_steps": 5, "generic_skin_images": 12,
                                                   "perceptual_net_steps": 4})
    params = params.model_copy(update={"base": params.base.model_copy(update={"pretrain": few})})
    (project / "params.yaml").write_text(render_params(params))
    out = project / "outputs" / "models" / "base"
    run(["python", "pipelines/base_model.py", "--train-splits", "outputs/base_train",
         "--out", str(out.relative_to(project))], project)  # fmt: skip

    assert json.loads((out / BASE_FILE).read_text())["source"] == "tiny"
    pipeline = StableDiffusionPipeline.from_pretrained(out)
    vocabulary = pipeline.tokenizer.get_vocab()
    assert {"dermoscopic</w>", "wound</w>", "inflammatory</w>"} <= vocabulary.keys()  # both domains' words
    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    runs = {}
    for dataset in ("ham10000", "wound"):
        with Image.open(out / base_samples(dataset)) as grid:
            assert grid.height == 6 * 96  # one row per FST
        by_name = {run.info.run_name: run for run in client.search_runs(
            [client.get_experiment_by_name(f"fairaug/{dataset}").experiment_id])}
        tracked = runs[dataset] = by_name["base_model"]
        tags = tracked.data.tags
        assert tags["fairaug.stage"] == "base_model" and tags["fairaug.dataset"] == dataset
        assert tags["fairaug.upstream.prepare"] == by_name[f"prepare@{dataset}"].info.run_id
        assert tags["dvc.out_md5.outputs/models/base"] == dvc_md5(out)  # what downstream stages look up
        assert tracked.data.params["base.pretrain.unet_steps"] == "5"
        assert [m.step for m in client.get_metric_history(tracked.info.run_id, "pretrain/unet_loss")] == list(range(5))
        assert {a.path for a in client.list_artifacts(tracked.info.run_id)} >= {BASE_SAMPLES, BASE_FILE}
    # one process trained the base: the second data set's run is nested under the first's
    assert runs["wound"].data.tags["mlflow.parentRunId"] == runs["ham10000"].info.run_id
    assert all("base/fst_fidelity" in tracked.data.metrics for tracked in runs.values())  # NaN after 5 steps
