"""LoRA fine-tuning of a Stable Diffusion UNet with peft and accelerate.

Exact resume: every random draw of a step comes from (seed, step) (see data.py and loss.py), and a
checkpoint holds everything else that evolves: LoRA weights, EMA, optimizer, lr scheduler, the
selected validation's weights and every validation's scores (step 0's, the base model's, among them).
A run killed after checkpoint k and resumed ends with the same LoRA as an uninterrupted run. Under
`accelerate launch` each process takes a slice of every global batch; gradients are averaged, so N
processes train like one.

Selection (``train_lora.select_by``, `selection_key`): each validation scores the LoRA, and the best
validation's weights are shipped (``LORA_WEIGHTS``), the last step's beside them (``LATEST_WEIGHTS``).
The sample scores come from a callback (``on_validation``): the judge is a classifier, which lives
above this package. Only the main process samples and scores; every process gets its scores, so all
take the same decision (and stop early together).
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list, set_seed
from diffusers import StableDiffusionPipeline
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from diffusers.utils import convert_state_dict_to_diffusers, convert_state_dict_to_kohya
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader

from fairaug.config.diffusion import TrainLoraConfig
from fairaug.diffusion import checkpoints
from fairaug.diffusion.data import ManifestImages, StepBatchSampler, collate, hflip, step_seed
from fairaug.diffusion.files import EMA_WEIGHTS, KOHYA_WEIGHTS, LATEST_WEIGHTS, LORA_WEIGHTS, WEIGHTS_RECORD
from fairaug.diffusion.loss import (PosteriorCache, decode_latents, denoise, denoising_loss, draw_step_noise,
                                   encode_latents, encode_prompts, predicted_original, weighted_mse)
from fairaug.diffusion.optim import lora_optimizer
from fairaug.diffusion.speed import require_cuda, speed_up
from fairaug.errors import ConfigError, DataError
from fairaug.io import sha256_file, temp_path, write_json
from fairaug.progress import progress_bar

CHECKPOINTS = "checkpoints"
VALIDATION_STREAM = 7  # seed stream of the fixed validation noise, apart from training steps
DROPOUT_STREAM = 2
ENCODE_BATCH = 64  # images per VAE call when caching latents
# a validation's scores, also their MLflow names: the loss here, the sample scores from on_validation
VAL_LOSS = "val/loss"
LABEL_CONFIDENCE = "val/label_confidence"  # the judge's mean probability of the requested label
KID = "val/kid"  # between the grid and the real validation split, in the judge's feature space
FST_FIDELITY = "val/fst_fidelity"


@dataclass
class TrainingState:
    step: int = 0
    best_step: int | None = None  # the selected validation's; its weights are best_state
    validations_without_improvement: int = 0
    stopped_early: bool = False
    history: list[dict] = field(default_factory=list)
    validations: list[dict] = field(default_factory=list)  # step and scores; step 0 (the base model) first


OnValidation = Callable[[int], Mapping[str, float] | None]


@dataclass
class LoraData:
    train: ManifestImages
    weights: np.ndarray  # sampling probability of each train image
    val: ManifestImages | None = None


def add_lora(unet, config: TrainLoraConfig) -> list[torch.nn.Parameter]:
    """Freeze the UNet and add a LoRA adapter; return the trainable parameters."""
    unet.requires_grad_(False)
    # LoRA's initial weights come from torch's global generator; numpy's and Python's are seeded too,
    # so that the RNG states a checkpoint saves, and with them its bytes, are the same run to run
    set_seed(config.seed)
    try:
        unet.add_adapter(LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                                    init_lora_weights="gaussian", target_modules=list(config.target_modules)))
    except ValueError as err:  # peft: a target naming no module, or a module type LoRA cannot wrap
        lines = str(err).splitlines()  # the second kind spans lines (the module's repr): keep its ends
        reason = lines[0] if len(lines) == 1 else f"{lines[0]}...{lines[-1]}"
        raise ConfigError(f"train_lora.target_modules {list(config.target_modules)}: {reason}") from None
    return [p for p in unet.parameters() if p.requires_grad]


def check_device_options(config: TrainLoraConfig, device: torch.device | str) -> None:
    """One line, before anything loads, for an option that this device cannot run."""
    if config.mixed_precision == "fp16":
        require_cuda("train_lora.mixed_precision: fp16", device, instead="bf16 (CPU too) or fp32")
    if config.use_8bit_adam:
        require_cuda("train_lora.use_8bit_adam", device, instead="false")


def lora_state(unet) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().contiguous() for k, v in get_peft_model_state_dict(unet).items()}


def save_lora(state: dict[str, torch.Tensor], out_dir: Path, weight_name: str) -> Path:
    """Diffusers-format LoRA (loadable by StableDiffusionPipeline.load_lora_weights), written atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp_dir = temp_path(out_dir / weight_name)  # a directory: diffusers writes the file into one
    StableDiffusionPipeline.save_lora_weights(tmp_dir, unet_lora_layers=convert_state_dict_to_diffusers(state),
                                              weight_name=weight_name, safe_serialization=True)
    target = out_dir / weight_name
    (tmp_dir / weight_name).replace(target)
    tmp_dir.rmdir()
    return target


def save_kohya(state: dict[str, torch.Tensor], path: Path) -> Path:
    """The LoRA in kohya/webui key format (lora_unet_..., .lora_down/.lora_up, .alpha)."""
    # the converter reads PEFT keys (lora_A/lora_B) and maps the "unet." prefix to "lora_unet_"
    kohya = convert_state_dict_to_kohya({f"unet.{key}": value for key, value in state.items()})
    save_file({k: v.contiguous() for k, v in kohya.items()}, str(temp_path(path)))
    temp_path(path).replace(path)
    return path


def record_weights(out_dir: Path, written: list[Path], selection: Mapping | None = None) -> Path:
    """Write ``WEIGHTS_RECORD``: each written weights file's name and sha256, and the `selection`."""
    record = {"weights": {path.name: sha256_file(path) for path in written}}
    return write_json(Path(out_dir) / WEIGHTS_RECORD, record | ({"selection": dict(selection)} if selection else {}))


def _finite(value: float | None, worst: float) -> float:
    return worst if value is None or math.isnan(value) else value


def selection_key(select_by: str, scores: Mapping[str, float], reference: Mapping[str, float]) -> tuple[int, float]:
    """Orders validations under ``select_by``, the better one greater.

    samples: the validations whose KID is at most the base model's (``reference``: step 0's scores)
    by label confidence, above all others, which go by KID (the least drift first): a LoRA may not buy
    label confidence by drifting further from the real images than no LoRA at all. val_loss: by
    validation loss. A missing or NaN score (a diverged LoRA) is the worst.
    """
    if select_by == "val_loss":
        return 0, -_finite(scores.get(VAL_LOSS), math.inf)
    kid = _finite(scores.get(KID), math.inf)
    if kid <= _finite(reference.get(KID), math.inf):
        return 1, _finite(scores.get(LABEL_CONFIDENCE), -math.inf)
    return 0, -kid


def selection_record(select_by: str, state: TrainingState) -> dict:
    """Which step's weights ``LORA_WEIGHTS`` holds, by what rule and why, in words (lora.json, model card)."""
    chosen = next((v for v in state.validations if v["step"] == state.best_step), None)
    if chosen is None:
        return {"step": state.step, "rule": "latest", "reason": "no validation to select by (no validation split)"}
    reference = state.validations[0]
    if select_by == "val_loss":
        reason = f"the lowest validation loss ({chosen[VAL_LOSS]:.4f})"
    elif selection_key(select_by, chosen, reference)[0] == 1:
        reason = (f"the highest label confidence ({chosen[LABEL_CONFIDENCE]:.3f}) among the validations whose KID "
                  f"({chosen[KID]:.4g}) is at most the base model's ({reference[KID]:.4g}, step 0)")
    else:
        reason = (f"no validation's KID was at most the base model's ({reference[KID]:.4g}, step 0): the lowest KID "
                  f"({chosen[KID]:.4g})")
    return {"step": state.best_step, "rule": select_by, "reason": reason}


class LoraTrainer:
    """Trains a LoRA on ``pipeline.unet``; text encoder and VAE stay frozen.

    ``perceptual`` (needed when ``config.perceptual_loss.weight`` > 0): a frozen module mapping (decoded
    images, real images), both in [-1, 1], to a scalar distance (`fairaug.diffusion.perceptual`).
    """

    def __init__(self, pipeline: StableDiffusionPipeline, data: LoraData, config: TrainLoraConfig,
                 out_dir: Path, fingerprint: str, accelerator: Accelerator, perceptual: torch.nn.Module | None = None):
        check_device_options(config, accelerator.device)
        if config.batch_size % (config.gradient_accumulation_steps * accelerator.num_processes):
            raise ValueError("train_lora.batch_size must be divisible by gradient_accumulation_steps x processes")
        if config.perceptual_loss.weight > 0 and perceptual is None:
            raise ValueError("train_lora.perceptual_loss.weight > 0 needs its feature network (perceptual=)")
        self.pipeline, self.data, self.config = pipeline, data, config
        self.out_dir, self.fingerprint, self.accelerator = Path(out_dir), fingerprint, accelerator
        self.checkpoint_root = self.out_dir / CHECKPOINTS
        self.micro_batch = config.batch_size // config.gradient_accumulation_steps
        device = accelerator.device
        for frozen in (pipeline.vae, pipeline.text_encoder):
            frozen.requires_grad_(False).to(device).eval()
        self.params = add_lora(pipeline.unet, config)
        self.perceptual = perceptual.to(device) if config.perceptual_loss.weight > 0 else None
        if config.gradient_checkpointing:
            pipeline.unet.enable_gradient_checkpointing()
            if self.perceptual is not None:  # the decoder runs with gradients, at full resolution
                pipeline.vae.enable_gradient_checkpointing()
        speed_up(pipeline.unet, config.channels_last, config.compile)  # after the adapter: LoRA layers compiled too
        optimizer = lora_optimizer(self.params, config.lr, config.weight_decay, config.use_8bit_adam)
        self.unet, self.optimizer = accelerator.prepare(pipeline.unet, optimizer)
        # after prepare: EMAModel copies the LoRA weights where they are, on the accelerator now
        self.ema = EMAModel(self.params, decay=config.ema.decay) if config.ema.enabled else None
        # stepped by hand once per optimizer step: accelerate's wrapper would step it once per process
        self.lr_scheduler = get_scheduler(config.lr_scheduler, self.optimizer.optimizer,
                                          num_warmup_steps=config.lr_warmup_steps, num_training_steps=config.max_steps)
        self.best_state: dict[str, torch.Tensor] | None = None
        self.state = TrainingState()
        unet_config = pipeline.unet.config
        self.latent_shape = (unet_config.in_channels, unet_config.sample_size, unet_config.sample_size)
        self.posteriors = self._encode_train_images() if config.cache_latents else None

    def _encode_train_images(self) -> PosteriorCache:
        loader = DataLoader(self.data.train, batch_size=ENCODE_BATCH, collate_fn=collate,
                            num_workers=self.config.dataloader_num_workers)
        return PosteriorCache(self.pipeline.vae, (batch["pixels"] for batch in loader), total=len(loader),
                              progress=self.accelerator.is_local_main_process)

    # ---------------------------------------------------------------- checkpoints
    def save_checkpoint(self) -> None:
        def write(tmp: Path) -> None:
            save_file(lora_state(self.accelerator.unwrap_model(self.unet)), str(tmp / checkpoints.LORA_STATE))
            if self.ema is not None:
                torch.save(self.ema.state_dict(), tmp / checkpoints.EMA_STATE)
            if self.best_state is not None:
                save_file(self.best_state, str(tmp / checkpoints.BEST_STATE))
            torch.save({"optimizer": self.optimizer.state_dict(), "lr_scheduler": self.lr_scheduler.state_dict(),
                        "rng": checkpoints.rng_states()}, tmp / checkpoints.TRAINING_STATE)

        if self.accelerator.is_main_process:
            state = {"fingerprint": self.fingerprint, **asdict(self.state)}
            checkpoints.write_checkpoint(self.checkpoint_root, self.state.step, state, write, self.config.checkpoint_limit)
        self.accelerator.wait_for_everyone()

    def resume(self, resume: str | Path | None) -> int:
        """Load the checkpoint to resume from (or clear stale ones); return the step to start at."""
        if self.accelerator.is_main_process:
            checkpoints.remove_stale(self.checkpoint_root, self.fingerprint)
        self.accelerator.wait_for_everyone()
        found = checkpoints.find_checkpoint(self.checkpoint_root, resume, self.fingerprint)
        if found is None:
            return 0
        needed = [checkpoints.LORA_STATE, checkpoints.TRAINING_STATE] + ([checkpoints.EMA_STATE] if self.ema is not None else [])
        missing = [name for name in needed if not (found / name).is_file()]
        if missing:
            raise DataError(f"incomplete checkpoint, {', '.join(missing)} missing; resume another one "
                            "(--resume DIR) or start over (--resume none)", file=found)
        saved = checkpoints.read_state(found)
        set_peft_model_state_dict(self.accelerator.unwrap_model(self.unet), load_file(str(found / checkpoints.LORA_STATE)))
        training = torch.load(found / checkpoints.TRAINING_STATE, weights_only=True)
        self.optimizer.load_state_dict(training["optimizer"])
        self.lr_scheduler.load_state_dict(training["lr_scheduler"])
        checkpoints.restore_rng_states(training["rng"])
        if self.ema is not None:
            self.ema.load_state_dict(torch.load(found / checkpoints.EMA_STATE, weights_only=True,
                                                map_location=self.accelerator.device))
        if (found / checkpoints.BEST_STATE).exists():
            self.best_state = load_file(str(found / checkpoints.BEST_STATE))
        fields_ = TrainingState.__dataclass_fields__
        self.state = TrainingState(**{k: v for k, v in saved.items() if k in fields_})
        if self.accelerator.is_main_process:
            print(f"train_lora: resuming from {found} (step {self.state.step})", file=sys.stderr)
        return self.state.step

    # ---------------------------------------------------------------- steps
    def _micro_batches(self, sampler: StepBatchSampler) -> Iterator[tuple[list[int], torch.Tensor | None]]:
        """This process's image indices of each micro-step, with their pixels where the step needs them
        (latents not cached, or the perceptual loss on), decoded ahead in dataloader_num_workers processes."""
        if self.posteriors is not None and self.perceptual is None:
            return ((indices, None) for indices in sampler)
        loader = DataLoader(self.data.train, batch_sampler=sampler, collate_fn=collate,
                            num_workers=self.config.dataloader_num_workers)
        return ((batch["indices"].tolist(), batch["pixels"]) for batch in loader)

    def _micro_step_loss(self, indices: list[int], pixels: torch.Tensor | None,
                         micro_step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:  # fmt: skip
        """The step's loss, and its parts when it has several (the perceptual loss on)."""
        config, pipeline, accelerator = self.config, self.pipeline, self.accelerator
        scheduler = pipeline.scheduler
        noise = draw_step_noise(config.seed, micro_step, self.micro_batch, self.latent_shape,
                                scheduler.config.num_train_timesteps, config.noise_offset, config.prompt_dropout)
        noise = noise.slice(accelerator.process_index, accelerator.num_processes)
        if pixels is not None:
            pixels = hflip(pixels, noise.flip).to(accelerator.device)
        if self.posteriors is not None:
            latents = self.posteriors.latents(indices, noise.flip, noise.latent_noise).to(accelerator.device)
        else:
            latents = encode_latents(pipeline.vae, pixels, noise.latent_noise)
        prompts = ["" if drop else self.data.train.prompts[i]
                   for i, drop in zip(indices, noise.drop_prompt.tolist(), strict=True)]
        states = encode_prompts(pipeline.tokenizer, pipeline.text_encoder, prompts)
        torch.manual_seed(step_seed(config.seed, micro_step, DROPOUT_STREAM))  # LoRA dropout masks
        with accelerator.autocast():
            noisy, prediction, target = denoise(self.unet, scheduler, latents, states, noise.noise, noise.timesteps)
            diffusion = weighted_mse(prediction, target, scheduler, noise.timesteps, config.snr_gamma)
            if self.perceptual is None:
                return diffusion, {}
            # what the prediction says the image is, against the real one, through the frozen decoder
            x0 = predicted_original(scheduler, noisy, prediction, noise.timesteps)
            perceptual = self.perceptual(decode_latents(self.pipeline.vae, x0), pixels)
        loss = diffusion + config.perceptual_loss.weight * perceptual
        return loss, {"train/loss_diffusion": diffusion.detach(), "train/loss_perceptual": perceptual.detach()}

    @torch.no_grad()
    def validation_loss(self) -> float | None:
        """Loss on a fixed set of validation images with fixed noise: comparable across steps."""
        val = self.data.val
        if val is None or len(val) == 0:
            return None
        count = min(self.config.validation_images, len(val))
        indices = np.linspace(0, len(val) - 1, count).round().astype(int)
        batch = collate([val[int(i)] for i in indices])
        scheduler = self.pipeline.scheduler
        noise = draw_step_noise(step_seed(self.config.seed, 0, VALIDATION_STREAM), 0, count, self.latent_shape,
                                scheduler.config.num_train_timesteps)
        unet = self.accelerator.unwrap_model(self.unet)
        unet.eval()
        latents = encode_latents(self.pipeline.vae, batch["pixels"].to(self.accelerator.device), noise.latent_noise)
        states = encode_prompts(self.pipeline.tokenizer, self.pipeline.text_encoder, batch["prompts"])
        loss = denoising_loss(unet, scheduler, latents, states, noise.noise, noise.timesteps, self.config.snr_gamma)
        unet.train()
        return float(loss)

    def _sample_scores(self, on_validation: OnValidation | None) -> dict[str, float]:
        """The callback's scores of this step's samples (UNet in eval mode: no LoRA dropout), computed by
        the main process alone and sent to every process."""
        if on_validation is None:
            return {}
        scores: list[dict | None] = [None]
        if self.accelerator.is_main_process:
            unet = self.accelerator.unwrap_model(self.unet)
            unet.eval()
            try:
                scores[0] = dict(on_validation(self.state.step) or {})
            finally:
                unet.train()
        return broadcast_object_list(scores)[0]

    def _validate(self, on_validation: OnValidation | None) -> dict[str, float]:
        """Score this step; after step 0 (the base model, the reference), apply the selection rule."""
        scores = {VAL_LOSS: loss} if (loss := self.validation_loss()) is not None else {}
        scores |= self._sample_scores(on_validation)
        select_by, state = self.config.select_by, self.state
        if select_by == "samples" and not {LABEL_CONFIDENCE, KID} <= scores.keys():
            raise ValueError(f"train_lora.select_by: samples needs {LABEL_CONFIDENCE} and {KID} from on_validation, "
                             f"which gave {sorted(scores)}")
        if state.step > 0 and (select_by == "samples" or VAL_LOSS in scores):
            reference = state.validations[0] if state.validations and state.validations[0]["step"] == 0 else {}
            best = next((v for v in state.validations if v["step"] == state.best_step), None)
            if best is None or selection_key(select_by, scores, reference) > selection_key(select_by, best, reference):
                state.best_step, state.validations_without_improvement = state.step, 0
                self.best_state = lora_state(self.accelerator.unwrap_model(self.unet))
            else:
                state.validations_without_improvement += 1
            patience = self.config.early_stopping_patience
            state.stopped_early = patience is not None and state.validations_without_improvement >= patience
        state.validations.append({"step": state.step, **scores})
        return scores

    def train(self, resume: str | Path | None = "latest", log: Callable[[dict, int], None] | None = None,
              on_validation: OnValidation | None = None) -> TrainingState:
        """Train to ``max_steps`` (or an early stop), resuming ``resume``. ``log(metrics, step)``: each
        step's metrics, on the main process. ``on_validation(step)``: called on the main process at
        each validation, step 0 (before any LoRA step) included, with the pipeline's UNet carrying the
        LoRA; returns the scores of its samples (``LABEL_CONFIDENCE``, ``KID``, ``FST_FIDELITY``),
        which select_by samples needs."""
        config, accelerator = self.config, self.accelerator
        if config.select_by == "samples" and on_validation is None:
            raise ValueError("train_lora.select_by: samples needs the scores of the validation samples (on_validation=)")
        accumulation = config.gradient_accumulation_steps
        start = self.resume(resume)
        sampler = StepBatchSampler(self.data.weights, self.micro_batch, config.seed, start * accumulation,
                                   config.max_steps * accumulation, accelerator.process_index, accelerator.num_processes)
        micro_batches = self._micro_batches(sampler)
        self.unet.train()
        if start == 0:  # the base model (a new LoRA is the identity): the reference the LoRA must beat
            metrics = self._validate(on_validation)
            if log is not None and accelerator.is_main_process and metrics:
                log(metrics, 0)
        progress = progress_bar(range(start, config.max_steps), initial=start, total=config.max_steps,
                                desc="train_lora", hide=not accelerator.is_local_main_process)
        for step in progress:
            if self.state.stopped_early:
                break
            losses, parts = [], []
            for micro in range(accumulation):
                last = micro == accumulation - 1
                with accelerator.no_sync(self.unet) if not last else contextlib.nullcontext():
                    loss, loss_parts = self._micro_step_loss(*next(micro_batches), step * accumulation + micro)
                    accelerator.backward(loss / accumulation)
                losses.append(loss.detach())
                parts.append(loss_parts)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.lr_scheduler.step()
            if self.ema is not None:
                self.ema.step(self.params)
            self.state.step = step + 1
            train_loss = float(accelerator.reduce(torch.stack(losses).mean(), reduction="mean"))
            metrics = {"train/loss": train_loss, "train/lr": self.lr_scheduler.get_last_lr()[0]}
            for name in parts[0]:
                metrics[name] = float(accelerator.reduce(torch.stack([p[name] for p in parts]).mean(), reduction="mean"))
            if self.state.step % config.validate_every == 0 or self.state.step == config.max_steps:
                metrics |= self._validate(on_validation)
            self.state.history.append({"step": self.state.step, **metrics})
            progress.set_postfix(loss=f"{train_loss:.4f}")
            if log is not None and accelerator.is_main_process:
                log(metrics, self.state.step)
            if self.state.step % config.checkpoint_every == 0 or self.state.stopped_early:
                self.save_checkpoint()
        return self.state

    # ---------------------------------------------------------------- results
    def final_states(self) -> dict[str, dict[str, torch.Tensor]]:
        """The LoRA to ship (the selected validation's; the last step's when nothing was validated), the
        last step's, and the EMA at the last step."""
        unet = self.accelerator.unwrap_model(self.unet)
        latest = lora_state(unet)
        states = {LORA_WEIGHTS: self.best_state if self.best_state is not None else latest, LATEST_WEIGHTS: latest}
        if self.ema is not None:
            self.ema.store(self.params)
            self.ema.copy_to(self.params)
            states[EMA_WEIGHTS] = lora_state(unet)
            self.ema.restore(self.params)
        return states

    def save_final(self) -> list[Path]:
        """Write the final weights files and, last, their record; return the weights files."""
        if not self.accelerator.is_main_process:
            return []
        states = self.final_states()
        written = [save_lora(state, self.out_dir, name) for name, state in states.items()]
        if self.config.export_kohya:
            written.append(save_kohya(states[LORA_WEIGHTS], self.out_dir / KOHYA_WEIGHTS))
        record_weights(self.out_dir, written, self.selection())
        return written

    def selection(self) -> dict:
        return selection_record(self.config.select_by, self.state)

    def history_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.state.history)

    def validation_frame(self) -> pd.DataFrame:
        """One row per validation (step 0 first): step, val_loss, label_confidence, kid, fst_fidelity, and
        whether its weights are the shipped ones (selected)."""
        columns = {"step": "step", VAL_LOSS: "val_loss", LABEL_CONFIDENCE: "label_confidence", KID: "kid",
                   FST_FIDELITY: "fst_fidelity"}
        frame = pd.DataFrame(self.state.validations, columns=list(columns)).rename(columns=columns)
        return frame.assign(selected=frame["step"] == self.state.best_step)
