"""LoRA training pieces: step randomness, balanced sampling, checkpoints, selection, and the saved LoRA."""

import json
import os
import random
import shutil
from dataclasses import replace
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from diffusers import StableDiffusionPipeline
from diffusers.models.attention_processor import AttnProcessor2_0
from safetensors.torch import load_file
from torch.utils.data import Dataset

from fairaug.config import DatasetConfig, Params, PrepareConfig, load_params, render_params
from fairaug.config.diffusion import BaseConfig, PerceptualLossConfig, TrainLoraConfig
from fairaug.config.generation import GenerateConfig
from fairaug.data.files import MANIFEST
from fairaug.data.prepare import prepare_dataset
from fairaug.diffusion import checkpoints
from fairaug.diffusion.base import build_tiny_pipeline
from fairaug.diffusion.data import ManifestImages, StepBatchSampler, balanced_weights, hflip
from fairaug.diffusion.files import (EMA_WEIGHTS, KOHYA_WEIGHTS, LATEST_WEIGHTS, LORA_WEIGHTS, WEIGHTS_RECORD,
                                    trained_weights)
from fairaug.diffusion.lora import (CHECKPOINTS, KID, LABEL_CONFIDENCE, VAL_LOSS, LoraTrainer, TrainingState, lora_state,
                                   selection_record)
from fairaug.diffusion.loss import PosteriorCache, draw_step_noise, encode_latents
from fairaug.diffusion.perceptual import PerceptualLoss
from fairaug.diffusion.prompts import all_prompts
from fairaug.diffusion.stage import MODEL_CARD, SAMPLES, VALIDATION_PLOT, lora_data, train_lora
from fairaug.diffusion.tokenizer import build_tokenizer
from fairaug.errors import ConfigError, DataError, exit_on_user_error
from fairaug.fairness.files import WEIGHTS
from fairaug.fairness.model import build_classifier, save_classifier
from fairaug.generation.sampler import load_sampler
from fairaug.generation.validation import validation_judge
from fairaug.io import sha256_file


def test_balanced_weights_make_cells_equally_likely():
    frame = pd.DataFrame({"fst": [1] * 6 + [2] * 3 + [6], "label": ["a"] * 4 + ["b"] * 2 + ["a"] * 3 + ["b"]})
    weights = balanced_weights(frame, ["fst", "label"], power=1.0)
    cell_mass = pd.Series(weights).groupby([frame["fst"], frame["label"]]).sum()
    np.testing.assert_allclose(cell_mass.to_numpy(), 1 / 4)  # 4 cells, each 1/4 of the probability
    natural = balanced_weights(frame, ["fst", "label"], power=0.0)
    np.testing.assert_allclose(natural, 1 / len(frame))


def test_processes_slice_the_same_global_batch():
    weights = np.full(50, 1 / 50)
    single = list(StepBatchSampler(weights, 8, seed=3, start_step=0, num_steps=4))
    ranks = [list(StepBatchSampler(weights, 8, 3, 0, 4, rank=r, world_size=2)) for r in (0, 1)]
    for step in range(4):
        assert sorted(ranks[0][step] + ranks[1][step]) == sorted(single[step])
    resumed = list(StepBatchSampler(weights, 8, seed=3, start_step=2, num_steps=4))
    assert resumed == single[2:]  # a resumed run sees the batches the uninterrupted one saw


def test_step_noise_slices_recombine():
    full = draw_step_noise(seed=1, step=5, batch_size=6, latent_shape=(4, 8, 8), num_train_timesteps=1000,
                           noise_offset=0.1, prompt_dropout=0.5)
    again = draw_step_noise(1, 5, 6, (4, 8, 8), 1000, 0.1, 0.5)
    assert torch.equal(full.noise, again.noise) and torch.equal(full.timesteps, again.timesteps)
    halves = [full.slice(r, 2) for r in (0, 1)]
    assert torch.equal(torch.cat([halves[0].noise[:1], halves[1].noise[:1]]), full.noise[:2])
    other = draw_step_noise(1, 6, 6, (4, 8, 8), 1000, 0.1, 0.5)
    assert not torch.equal(full.noise, other.noise)


def test_checkpoints_are_fingerprinted_atomic_and_pruned(tmp_path):
    write = lambda d: (d / "payload").write_text("x")  # noqa: E731
    for step in (2, 4, 6):
        checkpoints.write_checkpoint(tmp_path, step, {"fingerprint": "a"}, write, limit=2)
    assert [p.name for p in checkpoints.complete_checkpoints(tmp_path)] == ["checkpoint-000004", "checkpoint-000006"]
    (tmp_path / ".checkpoint-000008.tmp").mkdir()  # a write killed half way
    (tmp_path / "checkpoint-000010").mkdir()  # no state.json: incomplete
    assert checkpoints.find_checkpoint(tmp_path, "latest", "a").name == "checkpoint-000006"
    assert checkpoints.find_checkpoint(tmp_path, "latest", "b") is None  # other params: never resumed
    assert checkpoints.find_checkpoint(tmp_path, None, "a") is None
    removed = checkpoints.remove_stale(tmp_path, "b")
    assert len(removed) == 4 and not any(tmp_path.iterdir())
    with pytest.raises(ConfigError, match="no such directory"):
        checkpoints.find_checkpoint(tmp_path, tmp_path / "nope", "a")


def test_checkpoints_of_an_older_layout_are_never_resumed(tmp_path):
    old = checkpoints.write_checkpoint(tmp_path, 2, {"fingerprint": "a"}, lambda d: None, limit=2)
    state = checkpoints.read_state(old)
    assert state["layout"] == checkpoints.LAYOUT
    del state["layout"]  # as fairaug wrote them before the EMA was saved through EMAModel.state_dict()
    (old / checkpoints.STATE_FILE).write_text(json.dumps(state))
    assert checkpoints.find_checkpoint(tmp_path, "latest", "a") is None
    with pytest.raises(ConfigError, match="written by an older fairaug .layout 1, this one reads 2.; start over"):
        checkpoints.find_checkpoint(tmp_path, old, "a")
    assert checkpoints.remove_stale(tmp_path, "a") == [old]


@pytest.fixture(scope="module")
def derm_manifest(fixture_data) -> pd.DataFrame:
    manifest, _ = prepare_dataset("ham10000", DatasetConfig(format="ham10000", root=str(fixture_data / "ham10000"),
                                                            domain="derm"), PrepareConfig())
    return manifest


def tiny_params(fixture_data, **overrides) -> Params:
    params = Params()
    datasets = {"ham10000": DatasetConfig(format="ham10000", root=str(fixture_data / "ham10000"), domain="derm")}
    lora = TrainLoraConfig(**{"batch_size": 4, "max_steps": 6, "checkpoint_every": 3, "validate_every": 3,
                              "validation_images": 8, "select_by": "val_loss", **overrides})
    return params.model_copy(update={"datasets": datasets, "train_lora": lora})


def fresh_tiny_pipeline(params: Params) -> StableDiffusionPipeline:
    tokenizer = build_tokenizer(all_prompts(params.prompts.templates, {"derm": ["mel", "nv"]}))
    return build_tiny_pipeline(BaseConfig(), tokenizer)


def test_trained_lora_loads_in_a_stock_pipeline(fixture_data, derm_manifest, tmp_path):
    params = tiny_params(fixture_data, lr=1e-2)
    pipeline = fresh_tiny_pipeline(params)
    base_dir = tmp_path / "base"
    pipeline.save_pretrained(base_dir)
    trainer = LoraTrainer(pipeline, lora_data(params, "ham10000", derm_manifest), params.train_lora,
                          tmp_path / "lora", "fp", Accelerator(cpu=True))
    state = trainer.train()
    assert state.step == 6 and [h["step"] for h in state.history] == list(range(1, 7))
    assert "val/loss" in state.history[2] and "val/loss" in state.history[5]
    trainer.save_final()
    assert (tmp_path / "lora" / LORA_WEIGHTS).exists() and (tmp_path / "lora" / EMA_WEIGHTS).exists()

    stock = StableDiffusionPipeline.from_pretrained(base_dir, safety_checker=None)
    stock.set_progress_bar_config(disable=True)

    def generate():
        return stock("fitzpatrick skin type vi, dermoscopic image of melanoma", num_inference_steps=3,
                     generator=torch.Generator().manual_seed(0), output_type="np").images

    before = generate()
    stock.load_lora_weights(tmp_path / "lora", weight_name=LORA_WEIGHTS)
    with_lora = generate()
    stock.unload_lora_weights()
    assert np.abs(with_lora - before).max() > 1e-3  # the LoRA changes what the model makes
    np.testing.assert_allclose(generate(), before, atol=1e-6)  # and unloading it restores the base


def test_posterior_cache_samples_what_encoding_each_step_samples():
    vae = fresh_tiny_pipeline(Params()).vae.eval()
    pixels = torch.rand(10, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    cache = PosteriorCache(vae, pixels.split(4), progress=False)  # batches of another size than the steps'
    assert len(cache) == 10
    indices, flip = torch.tensor([7, 2, 2, 9]), torch.tensor([True, False, True, False])
    latent_noise = torch.randn(4, *cache.mean.shape[2:], generator=torch.Generator().manual_seed(1))
    expected = encode_latents(vae, hflip(pixels[indices], flip), latent_noise)
    torch.testing.assert_close(cache.latents(indices, flip, latent_noise), expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(cache.latents(indices, ~flip, latent_noise), expected, atol=1e-3)  # mirrored differs


def test_cached_latents_train_the_same_lora(fixture_data, derm_manifest, tmp_path):
    params = tiny_params(fixture_data, max_steps=3, validate_every=10, checkpoint_every=10)
    data = lora_data(params, "ham10000", derm_manifest)
    states = {}
    for cache_latents in (True, False):
        config = params.train_lora.model_copy(update={"cache_latents": cache_latents})
        trainer = LoraTrainer(fresh_tiny_pipeline(params), data, config, tmp_path / str(cache_latents), "fp",
                              Accelerator(cpu=True))
        assert (trainer.posteriors is not None) == cache_latents
        trainer.train(resume=None)
        states[cache_latents] = trainer.final_states()[LORA_WEIGHTS]
    assert max_difference(states[True], states[False]) <= rounding_tolerance(states[False])


class ReaderLog(Dataset):
    """``images`` as they are, appending the id of the process that reads each item to ``log``."""

    def __init__(self, images: ManifestImages, log: Path):
        self.images, self.prompts, self.log = images, images.prompts, log

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        with self.log.open("a") as log:
            log.write(f"{os.getpid()}\n")
        return self.images[index]


@pytest.mark.parametrize("cache_latents", [True, False])
def test_dataloader_workers_decode_the_train_images_and_train_the_same_lora(cache_latents, fixture_data,
                                                                           derm_manifest, tmp_path):  # fmt: skip
    """Workers decode for the latent cache, or each step's batch when latents are not cached."""
    params = tiny_params(fixture_data, max_steps=3, validate_every=10, checkpoint_every=10, cache_latents=cache_latents)
    data = lora_data(params, "ham10000", derm_manifest)
    states = {}
    for workers in (0, 2):
        log = tmp_path / f"readers_{workers}.txt"
        config = params.train_lora.model_copy(update={"dataloader_num_workers": workers})
        trainer = LoraTrainer(fresh_tiny_pipeline(params), replace(data, train=ReaderLog(data.train, log)), config,
                              tmp_path / str(workers), "fp", Accelerator(cpu=True))  # fmt: skip
        trainer.train(resume=None)
        states[workers] = trainer.final_states()[LORA_WEIGHTS]
        readers, this_process = set(log.read_text().split()), str(os.getpid())
        assert readers == {this_process} if workers == 0 else readers and this_process not in readers
    assert all(torch.equal(states[0][name], states[2][name]) for name in states[0])


def test_checkpoints_are_byte_identical_run_to_run(fixture_data, derm_manifest, tmp_path):
    """A rerun with the same config writes the same files, so DVC sees an unchanged out and the
    stages after train_lora do not rerun: the global numpy and Python RNG states a checkpoint saves
    must not depend on what ran before in the process."""
    params = tiny_params(fixture_data, max_steps=2, validate_every=10, checkpoint_every=2)
    data = lora_data(params, "ham10000", derm_manifest)
    for run in ("first", "second"):
        np.random.random(), random.random()  # whatever ran before draws from them
        LoraTrainer(fresh_tiny_pipeline(params), data, params.train_lora, tmp_path / run, "fp",
                    Accelerator(cpu=True)).train(resume=None)
    files = sorted(path.relative_to(tmp_path / "first") for path in (tmp_path / "first").rglob("*") if path.is_file())
    assert any(path.name == "training_state.pt" for path in files)
    for path in files:
        assert (tmp_path / "first" / path).read_bytes() == (tmp_path / "second" / path).read_bytes(), path


def weights_scores(trainer: LoraTrainer):
    """A stub judge of the validation samples: label confidence high at step 3 and lower at step 6,
    KID equal to step 0's, each plus a term that follows the LoRA's weights (a resumed run that
    trained other weights scores differently)."""
    def score(step: int) -> dict[str, float]:
        assert not trainer.pipeline.unet.training  # sampled without LoRA dropout
        weights = sum(float(v.double().abs().sum()) for v in lora_state(trainer.pipeline.unet).values())
        return {LABEL_CONFIDENCE: {0: 0.1, 3: 0.5, 6: 0.3}[step] + weights * 1e-9, KID: 0.01}

    return score


def test_resume_from_checkpoint_equals_uninterrupted(fixture_data, derm_manifest, tmp_path):
    params = tiny_params(fixture_data, dropout=0.1, select_by="samples")
    data = lora_data(params, "ham10000", derm_manifest)

    def trainer(name: str, config: TrainLoraConfig = params.train_lora) -> LoraTrainer:
        return LoraTrainer(fresh_tiny_pipeline(params), data, config, tmp_path / name, "fp", Accelerator(cpu=True))

    full = trainer("full")
    full.train(on_validation=weights_scores(full))
    assert full.state.best_step == 3  # not the last step: the selected weights are checkpointed too
    # a second run is stopped after its first checkpoint (step 3), then a new trainer resumes it
    first = trainer("split", params.train_lora.model_copy(update={"max_steps": 3}))
    first.train(on_validation=weights_scores(first))
    resumed = trainer("split")
    assert resumed.resume("latest") == 3
    resumed.train(on_validation=weights_scores(resumed))
    full_states, resumed_states = full.final_states(), resumed.final_states()
    assert full_states.keys() == resumed_states.keys() == {LORA_WEIGHTS, LATEST_WEIGHTS, EMA_WEIGHTS}
    for name, state in full_states.items():
        other = resumed_states[name]
        assert state.keys() == other.keys()
        assert all(torch.equal(state[k], other[k]) for k in state), name
    assert not all(torch.equal(full_states[LORA_WEIGHTS][k], full_states[LATEST_WEIGHTS][k])
                   for k in full_states[LORA_WEIGHTS])
    assert resumed.state.history == full.state.history
    assert resumed.state.validations == full.state.validations and [v["step"] for v in full.state.validations] == [0, 3, 6]
    pd.testing.assert_frame_equal(resumed.validation_frame(), full.validation_frame())
    assert resumed.selection() == full.selection()


def test_samples_select_the_most_confident_validation_no_further_from_real_than_the_base(
        fixture_data, derm_manifest, tmp_path):
    # step 0 is the base model; 1 and 4 are the most confident but drift further (KID) than it: never
    # selected; 2 ties the base's KID ("no worse") and beats 3; 3 and 4 without improvement stop
    # training (patience 2) before step 5
    scores = {0: (0.2, 0.10), 1: (0.6, 0.15), 2: (0.4, 0.10), 3: (0.35, 0.05), 4: (0.9, 0.2), 5: (1.0, 0.0)}
    params = tiny_params(fixture_data, select_by="samples", max_steps=8, validate_every=1, checkpoint_every=10,
                         early_stopping_patience=2, cache_latents=False, batch_size=2)
    data = lora_data(params, "ham10000", derm_manifest)
    data.val = None  # no validation loss: the samples alone decide
    trainer = LoraTrainer(fresh_tiny_pipeline(params), data, params.train_lora, tmp_path / "lora", "fp",
                          Accelerator(cpu=True))
    weights = {}

    def judge(step: int) -> dict[str, float]:
        weights[step] = lora_state(trainer.pipeline.unet)
        return {LABEL_CONFIDENCE: scores[step][0], KID: scores[step][1]}

    with pytest.raises(ValueError, match="select_by: samples needs the scores of the validation samples"):
        trainer.train()
    state = trainer.train(on_validation=judge)
    assert state.best_step == 2 and state.stopped_early and state.step == 4
    assert state.validations_without_improvement == 2
    shipped = trainer.final_states()
    assert all(torch.equal(shipped[LORA_WEIGHTS][k], weights[2][k]) for k in weights[2])
    assert all(torch.equal(shipped[LATEST_WEIGHTS][k], weights[4][k]) for k in weights[4])
    frame = trainer.validation_frame()
    assert list(frame.columns) == ["step", "val_loss", "label_confidence", "kid", "fst_fidelity", "selected"]
    assert frame["step"].tolist() == [0, 1, 2, 3, 4] and frame["selected"].tolist() == [False, False, True, False, False]
    assert frame["kid"].tolist() == [scores[step][1] for step in range(5)]
    assert trainer.selection() == {"step": 2, "rule": "samples", "reason": (
        "the highest label confidence (0.400) among the validations whose KID (0.1) is at most the base model's "
        "(0.1, step 0)")}


def test_a_selection_without_a_validation_as_close_to_real_as_the_base_takes_the_closest():
    validations = [{"step": 0, VAL_LOSS: 0.5, LABEL_CONFIDENCE: 0.2, KID: 0.1},
                   {"step": 2, VAL_LOSS: 0.4, LABEL_CONFIDENCE: 0.9, KID: 0.3},
                   {"step": 4, VAL_LOSS: 0.3, LABEL_CONFIDENCE: 0.5, KID: 0.2}]
    state = TrainingState(step=4, best_step=4, validations=validations)
    assert selection_record("samples", state)["reason"] == (
        "no validation's KID was at most the base model's (0.1, step 0): the lowest KID (0.2)")
    assert selection_record("val_loss", state) == {"step": 4, "rule": "val_loss",
                                                   "reason": "the lowest validation loss (0.3000)"}
    assert selection_record("val_loss", TrainingState(step=6))["rule"] == "latest"


def test_early_stopping_and_kohya_export(fixture_data, derm_manifest, tmp_path):
    # a learning rate this high makes the validation loss get worse: training must stop early
    params = tiny_params(fixture_data, lr=5.0, max_steps=12, validate_every=1, early_stopping_patience=2,
                         export_kohya=True)
    trainer = LoraTrainer(fresh_tiny_pipeline(params), lora_data(params, "ham10000", derm_manifest),
                          params.train_lora, tmp_path / "lora", "fp", Accelerator(cpu=True))
    state = trainer.train()
    val_losses = np.nan_to_num([h["val/loss"] for h in state.history], nan=np.inf)  # diverged: never the best
    assert state.stopped_early and state.step < 12
    assert state.validations_without_improvement == 2
    best_step = int(np.argmin(val_losses)) + 1
    assert best_step == state.best_step == state.step - 2
    shipped = trainer.final_states()[LORA_WEIGHTS]
    assert all(torch.equal(shipped[k], trainer.best_state[k]) for k in shipped)  # the best, not the last
    written = trainer.save_final()
    kohya = load_file(str(tmp_path / "lora" / KOHYA_WEIGHTS))
    assert any(p.name.endswith("kohya.safetensors") for p in written)
    assert all(k.startswith("lora_unet_") for k in kohya)
    assert any(k.endswith(".alpha") for k in kohya) and any(k.endswith(".lora_down.weight") for k in kohya)


@pytest.fixture
def lora_stage(fixture_data, derm_manifest, tiny_base, tmp_path, mlflow_uri, monkeypatch):
    """Runs train_lora (two steps, one checkpoint per step, validation grids judged by an untrained
    classifier) into tmp_path/lora; returns the out."""
    monkeypatch.chdir(tmp_path)
    prepared, base = tmp_path / "prepared", shutil.copytree(tiny_base, tmp_path / "base")
    prepared.mkdir()
    derm_manifest.to_parquet(prepared / MANIFEST)
    classifier = tmp_path / "classifier" / "real"
    save_classifier(build_classifier("small_cnn", sorted(derm_manifest["label"].unique()), 32), classifier / WEIGHTS)
    out = tmp_path / "lora"

    def run(resume="latest", **overrides):
        params = tiny_params(fixture_data, **{"max_steps": 2, "checkpoint_every": 1, "validate_every": 2,
                                              "validation_images": 4, "sample_steps": 1, "select_by": "samples",
                                              **overrides})
        judge = validation_judge(params, "ham10000", prepared, classifier)
        return train_lora(params, "ham10000", prepared, base, out, resume, judge)

    run.out, run.base = out, base
    return run


def one_error_line(capsys, call) -> str:
    """``call`` under exit_on_user_error: exit code 2, no traceback, and the error as the last line of
    stderr (after the progress bars of what ran before it), returned."""
    capsys.readouterr()  # what earlier calls printed
    with pytest.raises(SystemExit) as exited:
        exit_on_user_error(call)()
    assert exited.value.code == 2
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr and stderr.count("error: ") == 1, stderr
    line = stderr[stderr.index("error: "):]
    assert line.count("\n") == 1 and line.endswith("\n"), stderr
    return line


def test_fresh_run_starts_from_an_empty_out_and_generate_loads_only_its_weights(lora_stage, capsys):
    out = lora_stage()
    record = json.loads((out / WEIGHTS_RECORD).read_text())
    assert set(record["weights"]) == {LORA_WEIGHTS, LATEST_WEIGHTS, EMA_WEIGHTS}
    assert record["selection"]["step"] == 2 and record["selection"]["rule"] == "samples"
    validations = pd.read_csv(out / VALIDATION_PLOT)
    assert validations["step"].tolist() == [0, 2] and validations["selected"].tolist() == [False, True]
    assert validations[["val_loss", "label_confidence", "kid"]].notna().all().all()  # fst_fidelity: NaN at 1 step
    run = mlflow.search_runs(experiment_names=["fairaug/ham10000"], output_format="list")[0]
    history = mlflow.MlflowClient().get_metric_history
    for name, column in [("val/label_confidence", "label_confidence"), ("val/kid", "kid"),
                         ("val/fst_fidelity", "fst_fidelity")]:
        logged = sorted((m.step, m.value) for m in history(run.info.run_id, name))
        assert [step for step, _ in logged] == [0, 2], name
        np.testing.assert_array_equal([value for _, value in logged], validations[column], err_msg=name)
    assert "fairaug.upstream_missing.train_classifier" in run.data.tags  # its lineage names the judge
    assert f"step 2's weights, selected by samples: {record['selection']['reason']};" in (out / MODEL_CARD).read_text()
    (out / "marker").write_text("left by hand")
    lora_stage()  # the same training: it resumes its own checkpoint and keeps the out
    assert (out / "marker").exists()

    lora_stage(ema={"enabled": False})  # another training: starts over
    assert not (out / "marker").exists() and not (out / EMA_WEIGHTS).exists()
    recorded = json.loads((out / WEIGHTS_RECORD).read_text())["weights"]
    assert recorded == {name: sha256_file(out / name) for name in (LORA_WEIGHTS, LATEST_WEIGHTS)}
    kept = checkpoints.complete_checkpoints(out / CHECKPOINTS)
    assert len({checkpoints.read_state(checkpoint)["fingerprint"] for checkpoint in kept}) == 1
    assert sorted(p.name for p in (out / SAMPLES).iterdir()) == ["step_000000.png", "step_000002.png"]
    assert "EMA" not in (out / MODEL_CARD).read_text()

    stderr = one_error_line(capsys, lambda: load_sampler(lora_stage.base, out, GenerateConfig(lora_weights="ema")))
    assert f"generate.lora_weights: ema: the LoRA run did not write {out / EMA_WEIGHTS}" in stderr
    assert load_sampler(lora_stage.base, out, GenerateConfig(lora_weights="final")) is not None
    assert load_sampler(lora_stage.base, out, GenerateConfig(lora_weights="latest")) is not None

    weights = out / LORA_WEIGHTS
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(DataError, match="sha256 differs from the one recorded in"):
        trained_weights(out, "final")
    (out / WEIGHTS_RECORD).unlink()  # weights no finished run vouches for
    with pytest.raises(DataError, match=f"{WEIGHTS_RECORD}: not found"):
        trained_weights(out, "final")


def test_bad_resume_and_lora_settings_are_one_line(lora_stage, tmp_path, capsys):
    not_a_checkpoint = tmp_path / "empty"
    not_a_checkpoint.mkdir()
    for resume, message in [(tmp_path / "nope", "no such directory"),
                            (not_a_checkpoint, "not a complete checkpoint (no state.json)")]:
        assert f"--resume {resume}: {message}" in one_error_line(capsys, lambda: lora_stage(resume))

    lora_stage(max_steps=1)
    checkpoint = lora_stage.out / CHECKPOINTS / "checkpoint-000001"
    stderr = one_error_line(capsys, lambda: lora_stage(checkpoint, lr=0.5))
    assert f"--resume {checkpoint}: a checkpoint of another training" in stderr

    elsewhere = shutil.copytree(checkpoint, tmp_path / "elsewhere")
    (elsewhere / checkpoints.EMA_STATE).unlink()
    stderr = one_error_line(capsys, lambda: lora_stage(elsewhere, max_steps=1))
    assert f"{elsewhere}: incomplete checkpoint, {checkpoints.EMA_STATE} missing" in stderr

    params_file = tmp_path / "params.yaml"
    params_file.write_text(render_params(Params()).replace("rank: 8", "rank: 0"))
    assert "train_lora.rank" in one_error_line(capsys, lambda: load_params(params_file))
    stderr = one_error_line(capsys, lambda: lora_stage(target_modules=["to_qq"]))
    assert "train_lora.target_modules ['to_qq']: Target modules {'to_qq'} not found in the base model" in stderr
    stderr = one_error_line(capsys, lambda: lora_stage(target_modules=["time_embedding"]))
    assert ("train_lora.target_modules ['time_embedding']: Target module TimestepEmbedding(...) is not supported"
            in stderr)  # the module's repr left out: one line


def small_feature_net(blind: bool = False) -> PerceptualLoss:
    """A two-layer conv net in VGG's place; ``blind``: all weights 0, so it sees nothing in any image."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(8, 8, 3, stride=2, padding=1), torch.nn.ReLU())  # fmt: skip
    if blind:
        torch.nn.init.zeros_(net[0].weight), torch.nn.init.zeros_(net[0].bias)
    return PerceptualLoss(net, taps=[1, 3])


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys() and len(a) > 0
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def rounding_tolerance(trained: dict[str, torch.Tensor]) -> float:
    """How far two trainings that differ only in float rounding may end apart: a tenth of how far
    training moved the weights (the largest LoRA B value; peft starts B at zero). Adam's first steps
    move every weight by about lr * g / |g|, so rounding decides the steps of near-zero gradients (a
    few percent of the move here); a different training differs by as much as the move itself."""
    return 0.1 * max(value.abs().max().item() for key, value in trained.items() if "lora_B" in key)


def test_perceptual_loss_trains_and_logs_its_parts(fixture_data, derm_manifest, tmp_path):
    params = tiny_params(fixture_data, max_steps=3, validate_every=10, checkpoint_every=10)
    data = lora_data(params, "ham10000", derm_manifest)

    def train(name: str, weight: float, net: PerceptualLoss | None, **options) -> LoraTrainer:
        config = params.train_lora.model_copy(update={"perceptual_loss": PerceptualLossConfig(weight=weight),
                                                      **options})
        trainer = LoraTrainer(fresh_tiny_pipeline(params), data, config, tmp_path / name, "fp", Accelerator(cpu=True),
                              perceptual=net)  # fmt: skip
        trainer.train(resume=None)
        return trainer

    plain = train("plain", 0.0, small_feature_net())  # weight 0: the network is not used
    assert plain.perceptual is None
    assert all(set(h) == {"step", "train/loss", "train/lr"} | ({"val/loss"} & set(h)) for h in plain.state.history)
    # a network that sees nothing: the term and its gradient are exactly 0, so turning the loss on
    # leaves the diffusion term, the data and the step randomness as they were, bit for bit
    blind = train("blind", 0.1, small_feature_net(blind=True))
    assert max_difference(blind.final_states()[LORA_WEIGHTS], plain.final_states()[LORA_WEIGHTS]) == 0
    assert [h["train/loss"] for h in blind.state.history] == [h["train/loss"] for h in plain.state.history]
    assert all(h["train/loss_perceptual"] == 0 for h in blind.state.history)

    seeing = train("seeing", 0.5, small_feature_net())
    for h in seeing.state.history:
        assert h["train/loss_perceptual"] > 0
        assert h["train/loss"] == pytest.approx(h["train/loss_diffusion"] + 0.5 * h["train/loss_perceptual"], rel=1e-6)
    # the first step starts from the same LoRA: the same diffusion loss; then the extra gradient moves it
    assert seeing.state.history[0]["train/loss_diffusion"] == plain.state.history[0]["train/loss"]
    assert max_difference(seeing.final_states()[LORA_WEIGHTS], plain.final_states()[LORA_WEIGHTS]) > 1e-4
    # gradient checkpointing then covers the VAE decoder too, and trains the same LoRA
    checkpointed = train("checkpointed", 0.5, small_feature_net(), gradient_checkpointing=True)
    assert checkpointed.pipeline.vae.is_gradient_checkpointing
    assert max_difference(checkpointed.final_states()[LORA_WEIGHTS], seeing.final_states()[LORA_WEIGHTS]) <= 1e-5
    with pytest.raises(ValueError, match="needs its feature network"):
        train("none", 0.1, None)


@pytest.fixture
def fresh_accelerate_state():
    """accelerate keeps one process-wide state that refuses another mixed precision: reset it around
    a test that changes it."""
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def test_speed_options_train_on_cpu_like_the_defaults(fixture_data, derm_manifest, tmp_path, monkeypatch,
                                                      fresh_accelerate_state):
    params = tiny_params(fixture_data, max_steps=2, validate_every=10, checkpoint_every=10)
    data = lora_data(params, "ham10000", derm_manifest)

    def train(name: str, mixed_precision: str = "no", **options) -> tuple[LoraTrainer, torch.nn.Module]:
        AcceleratorState._reset_state(reset_partial_state=True)
        config = params.train_lora.model_copy(update=options)
        trainer = LoraTrainer(fresh_tiny_pipeline(params), data, config, tmp_path / name, "fp",
                              Accelerator(cpu=True, mixed_precision=mixed_precision))
        unet = trainer.accelerator.unwrap_model(trainer.unet)
        dtypes = []
        unet.conv_in.register_forward_hook(lambda module, args, out: dtypes.append(out.dtype))
        trainer.train(resume=None)
        return trainer.final_states()[LORA_WEIGHTS], unet, set(dtypes)

    default, unet, dtypes = train("default")
    # defaults touch nothing: contiguous weights, not compiled, no checkpointing, fp32, and SDPA attention
    # (diffusers' default on torch 2), LoRA layers included
    assert unet.conv_in.weight.is_contiguous() and unet._compiled_call_impl is None
    assert not unet.is_gradient_checkpointing and dtypes == {torch.float32}
    assert {type(p) for p in unet.attn_processors.values()} == {AttnProcessor2_0}

    fast, unet, _ = train("fast", channels_last=True, gradient_checkpointing=True)
    assert unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last) and unet.is_gradient_checkpointing
    assert max_difference(fast, default) <= rounding_tolerance(default)  # the same training, up to float rounding

    compiled = []
    monkeypatch.setattr(torch, "compile", lambda fn, *args, **kwargs: compiled.append(fn) or fn)
    same, unet, _ = train("compiled", compile=True)
    assert len(compiled) == 1 and unet._compiled_call_impl is not None  # the UNet's call went through torch.compile
    assert max_difference(same, default) == 0

    # bf16 autocast (CPU has it) reaches the UNet through accelerate: other rounding, the same training
    bf16, _, dtypes = train("bf16", mixed_precision="bf16")
    assert dtypes == {torch.bfloat16}
    assert 0 < max_difference(bf16, default) < 1e-2


def test_cuda_only_options_and_missing_perceptual_weights_are_one_line(lora_stage, tmp_path, capsys,
                                                                       fresh_accelerate_state):
    stderr = one_error_line(capsys, lambda: lora_stage(mixed_precision="fp16"))
    assert "train_lora.mixed_precision: fp16 needs a CUDA device, this run is on cpu: set bf16 (CPU too) or fp32" in stderr
    AcceleratorState._reset_state(reset_partial_state=True)
    stderr = one_error_line(capsys, lambda: lora_stage(use_8bit_adam=True))
    assert "train_lora.use_8bit_adam needs a CUDA device, this run is on cpu: set false here" in stderr

    # the perceptual loss loads vgg16 from the weights cache (relative to the project, here tmp_path)
    weights = tmp_path / ".fairaug-weights/torch/hub/checkpoints/vgg16-397923af.pth"
    stderr = one_error_line(capsys, lambda: lora_stage(perceptual_loss={"weight": 0.1}))
    assert f"{weights.relative_to(tmp_path)}: missing perceptual loss network (vgg16" in stderr
    assert "fairaug weights fetch --profile" in stderr
    assert not lora_stage.out.exists()  # stopped before anything ran
    weights.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save({f"features.{k}": v for k, v in torchvision.models.vgg16().features.state_dict().items()}, weights)
    lora_stage(perceptual_loss={"weight": 0.1, "layers": ["relu1_2", "relu2_2"]})
    run = mlflow.search_runs(experiment_names=["fairaug/ham10000"], output_format="list")[0]
    logged = mlflow.MlflowClient().get_metric_history
    parts = {name: [m.value for m in logged(run.info.run_id, f"train/{name}")] for name in
             ("loss", "loss_diffusion", "loss_perceptual")}  # fmt: skip
    assert all(len(values) == 2 for values in parts.values()) and min(parts["loss_perceptual"]) > 0
    np.testing.assert_allclose(parts["loss"], np.add(parts["loss_diffusion"], np.multiply(0.1, parts["loss_perceptual"])),
                               rtol=1e-5)
