"""Generation: per-image seeds, resumable sharded sampling (also after SIGKILL), reuse of sampled
images by a changed plan, process sharding, and the filter."""

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor2_0
from PIL import Image
from skimage.metrics import structural_similarity

from fairaug.config import Params
from fairaug.config.generation import FilterConfig, GenerateConfig
from fairaug.data import storage
from fairaug.errors import exit_on_user_error
from fairaug.data.files import MANIFEST
from fairaug.fairness.files import WEIGHTS
from fairaug.fairness.model import build_classifier, save_classifier
from fairaug.generation import sampler
from fairaug.generation.filter import RealNeighbours, select
from fairaug.generation.plan import build_plan, image_seed
from fairaug.generation.sampler import load_sampler, sample_batch
from fairaug.generation.stage import generate_synthetic, kept_grid, sampling_fingerprint

from synthetic_set import write_synthetic_set

TEMPLATE = "fitzpatrick skin type {fst}, dermoscopic image of {label_name}"
WORKER = '''
import sys
from pathlib import Path
from accelerate import PartialState
from fairaug.config.generation import GenerateConfig
from fairaug.data import storage
from fairaug.generation.plan import build_plan
from fairaug.generation.sampler import generate_shards, load_sampler

config = GenerateConfig(fsts=[1, 6], per_cell=int(sys.argv[3]), overgenerate=1.0, steps=3, batch_size=2,
                        shard_size=4)
plan = build_plan(config, sys.argv[4], "derm", ["mel", "nv"])
state = PartialState()
if state.is_main_process:
    storage.prepare_resume(Path(sys.argv[2]), "fp", plan)
state.wait_for_everyone()
generate_shards(load_sampler(Path(sys.argv[1]), None, config), plan, Path(sys.argv[2]), config, "fp",
                rank=state.process_index, world_size=state.num_processes)
'''


def test_seeds_are_per_image_and_counts_follow_the_target():
    config = GenerateConfig(fsts=[1, 6], per_cell=4, overgenerate=1.5, batch_size=2, shard_size=4)
    plan = build_plan(config, TEMPLATE, "derm", ["mel", "nv"])
    assert plan.groupby(["fst", "label"]).size().tolist() == [6, 6, 6, 6]  # ceil(4 x 1.5)
    wider = build_plan(config, TEMPLATE, "derm", ["bkl", "mel", "nv"]).set_index("id")
    assert (wider.loc[plan["id"], "seed"].to_numpy() == plan["seed"].to_numpy()).all()  # other cells change nothing
    assert plan["seed"].nunique() == len(plan)
    assert plan.loc[0, "seed"] == image_seed(0, 1, "mel", 0)
    assert plan["shard"].tolist() == [i // 4 for i in range(len(plan))]
    assert plan.loc[plan["fst"] == 6, "prompt"].iloc[0] == "fitzpatrick skin type VI, dermoscopic image of melanoma"

    top_up = GenerateConfig(fsts=[1, 6], per_cell=None, top_up_to=10, overgenerate=1.0)
    real = pd.Series({(1, "mel"): 7, (1, "nv"): 12, (6, "mel"): 1})
    counts = build_plan(top_up, TEMPLATE, "derm", ["mel", "nv"], real).groupby(["fst", "label"]).size()
    assert counts.to_dict() == {(1, "mel"): 3, (6, "mel"): 9, (6, "nv"): 10}  # (1, nv) is already full


def test_select_keeps_exact_counts_and_never_a_near_copy():
    pool = pd.DataFrame({
        "fst": [1] * 5 + [2] * 3, "label": ["a"] * 8, "index": [0, 1, 2, 3, 4, 0, 1, 2], "target": [2] * 8,
        "confidence": [0.9, 0.1, 0.8, 0.7, 0.99, 0.1, 0.2, 0.9], "ssim_to_real": [0.5, 0.5, 0.99, 0.5, 0.5, 0.5, 0.5, 0.98],
    })
    chosen = select(pool, FilterConfig(min_confidence=0.3, max_ssim_to_real=0.95))
    assert chosen.groupby("fst")["kept"].sum().tolist() == [2, 2]
    assert chosen.loc[chosen["kept"] & (chosen["fst"] == 1), "index"].tolist() == [0, 3]  # plan order
    assert not chosen.loc[chosen["ssim_to_real"] >= 0.95, "kept"].any()
    assert chosen.loc[5, "reason"] == "kept below min_confidence to fill the cell"
    assert chosen.loc[4, "reason"] == "passed, cell already full"


def test_nearest_real_finds_a_copy(tmp_path):
    rng = np.random.default_rng(0)
    real = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(5)]
    paths = [tmp_path / f"{i}.png" for i in range(5)]
    for image, path in zip(real, paths, strict=True):
        Image.fromarray(image).save(path)
    neighbours = RealNeighbours(paths, batch_size=2)  # features built in several batches
    unrelated = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    nearest, ssim = neighbours.query([real[3].copy(), unrelated])
    assert nearest[0] == 3 and ssim[0] == pytest.approx(1.0)
    reference = structural_similarity(unrelated, real[nearest[1]], channel_axis=2, data_range=255)
    assert ssim[1] == pytest.approx(reference) and ssim[1] < 0.2


def shard_bytes(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((out / "shards").glob("*.parquet"))}


def images_of(out: Path) -> dict[str, bytes]:
    frame = storage.read_shards(out)
    return dict(zip(frame["id"], frame["png"], strict=True))


def run_worker(tmp_path: Path, tiny_base: Path, out: Path, per_cell: int, launcher: list[str] | None = None,
               background: bool = False, env: dict | None = None):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    cmd = [*(launcher or [sys.executable]), str(script), str(tiny_base), str(out), str(per_cell), TEMPLATE]
    env = {**os.environ, **(env or {})}
    if background:
        return subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=env)
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    return result


def test_rerun_samples_only_missing_shards(tiny_base, tmp_path):
    out = tmp_path / "synthetic"
    run_worker(tmp_path, tiny_base, out, per_cell=2)
    first = shard_bytes(out)
    assert len(first) == 2  # 8 images in shards of 4
    removed = sorted((out / "shards").glob("*.parquet"))[1]
    removed.unlink()
    killed_writes = [out / "shards" / ".shard-000009.parquet.tmp", out / ".manifest.parquet.k3x9a1.tmp"]
    for path in killed_writes:
        path.write_bytes(b"half a write")
    plan = build_plan(GenerateConfig(fsts=[1, 6], per_cell=2, overgenerate=1.0, batch_size=2, shard_size=4),
                      TEMPLATE, "derm", ["mel", "nv"])
    storage.prepare_resume(out, "fp", plan)
    assert not any(path.exists() for path in killed_writes)  # a persist out: DVC would cache them
    assert storage.done_shards(out, "fp", plan) == {0}
    run_worker(tmp_path, tiny_base, out, per_cell=2)
    assert shard_bytes(out) == first  # the missing shard came back byte for byte
    assert storage.done_shards(out, "another fingerprint", plan) == set()


def test_sigkill_then_rerun_equals_uninterrupted(tiny_base, tmp_path):
    reference = tmp_path / "reference"
    run_worker(tmp_path, tiny_base, reference, per_cell=6)
    killed = tmp_path / "killed"
    process = run_worker(tmp_path, tiny_base, killed, per_cell=6, background=True)
    deadline = time.monotonic() + 300
    while not list((killed / "shards").glob("shard-*.parquet")) if (killed / "shards").exists() else True:
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert len(list((killed / "shards").glob("shard-*.parquet"))) < len(shard_bytes(reference))
    run_worker(tmp_path, tiny_base, killed, per_cell=6)
    assert images_of(killed) == images_of(reference)
    assert shard_bytes(killed) == shard_bytes(reference)


def test_a_changed_plan_samples_only_the_images_it_lacks(tiny_base, tmp_path, monkeypatch):
    """Raising per_cell samples only the new images, lowering it or changing batch and shard sizes
    samples nothing; the shards are byte for byte those of a run from nothing (at the batch size
    the images were sampled with: kernels may round differently at another)."""
    sampled = []

    def counting(pipeline, rows, *args, **kwargs):
        sampled.extend(rows["id"])
        return sample_batch(pipeline, rows, *args, **kwargs)

    monkeypatch.setattr(sampler, "sample_batch", counting)
    small = GenerateConfig(fsts=[1, 6], per_cell=2, overgenerate=1.0, steps=2, batch_size=3, shard_size=3)
    pipeline = sampler.load_sampler(tiny_base, None, small)

    def generate(out: Path, config: GenerateConfig) -> list[str]:
        """The generate stage's sampling: set aside, sample what is missing, drop what is left."""
        sampled.clear()
        plan = build_plan(config, TEMPLATE, "derm", ["mel", "nv"])
        storage.prepare_resume(out, "fp", plan)
        sampler.generate_shards(pipeline, plan, out, config, "fp")
        storage.drop_reusable(out)
        return sorted(sampled)

    out = tmp_path / "synthetic"
    assert len(generate(out, small)) == 8
    more = small.model_copy(update={"per_cell": 3, "shard_size": 6})
    assert generate(out, more) == ["fst1-mel-00002", "fst1-nv-00002", "fst6-mel-00002", "fst6-nv-00002"]
    assert len(generate(tmp_path / "more_from_nothing", more)) == 12
    assert shard_bytes(out) == shard_bytes(tmp_path / "more_from_nothing") and len(shard_bytes(out)) == 2
    assert not (out / storage.REUSABLE).exists()

    images = images_of(out)
    assert generate(out, more.model_copy(update={"batch_size": 2, "shard_size": 4})) == []
    assert images_of(out) == images and len(shard_bytes(out)) == 3

    fewer = small.model_copy(update={"per_cell": 1})
    assert generate(out, fewer) == []  # a subset of what is there
    assert len(generate(tmp_path / "fewer_from_nothing", fewer)) == 4
    assert shard_bytes(out) == shard_bytes(tmp_path / "fewer_from_nothing")

    assert len(generate(out, fewer.model_copy(update={"seed": 1}))) == 4  # other seeds: nothing to reuse


def test_the_fingerprint_covers_what_changes_pixels_and_not_the_plan(tmp_path):
    base, lora = tmp_path / "base", tmp_path / "lora"
    for folder in (base, lora):
        folder.mkdir()
        (folder / "weights").write_bytes(b"w")
    params = Params()

    def fingerprint(**generate) -> str:
        return sampling_fingerprint(params.model_copy(update={"generate": params.generate.model_copy(update=generate)}),
                                    base, lora)  # fmt: skip

    same = {fingerprint(), fingerprint(per_cell=40), fingerprint(per_cell=None, top_up_to=9),
            fingerprint(overgenerate=3), fingerprint(batch_size=4, shard_size=8), fingerprint(labels=["mel"], fsts=[5]),
            fingerprint(filter=FilterConfig(min_confidence=0.9)),
            fingerprint(vae_slicing=True, channels_last=True, compile=True)}  # fmt: skip
    assert len(same) == 1
    assert fingerprint(steps=3) not in same and fingerprint(guidance_scale=2) not in same
    assert fingerprint(vae_tiling=True) not in same  # blended tiles are other pixels
    (lora / "weights").write_bytes(b"other LoRA")
    assert fingerprint() not in same


def test_speed_options_sample_what_the_defaults_sample(tiny_base, monkeypatch):
    config = GenerateConfig(fsts=[1, 6], per_cell=1, overgenerate=1.0, steps=2, batch_size=2, shard_size=2)
    rows = build_plan(config, TEMPLATE, "derm", ["mel"])

    def sample(**options):
        pipeline = load_sampler(tiny_base, None, config.model_copy(update=options))
        return pipeline, np.stack(sample_batch(pipeline, rows, config)).astype(int)

    pipeline, default = sample()
    # defaults touch nothing; attention is torch's SDPA (diffusers' default on torch 2)
    assert not pipeline.vae.use_slicing and not pipeline.vae.use_tiling and pipeline.unet._compiled_call_impl is None
    assert pipeline.unet.conv_in.weight.is_contiguous()
    assert {type(p) for p in pipeline.unet.attn_processors.values()} == {AttnProcessor2_0}

    pipeline, fast = sample(vae_slicing=True, vae_tiling=True, channels_last=True)
    assert pipeline.vae.use_slicing and pipeline.vae.use_tiling
    assert all(module.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
               for module in (pipeline.unet, pipeline.vae.decoder))  # fmt: skip
    # one image at a time, in channels-last layout: the same images up to rounding (tiling acts only
    # above the VAE's sample size, here 32 px)
    assert np.abs(fast - default).max() <= 1

    compiled = []
    monkeypatch.setattr(torch, "compile", lambda fn, *args, **kwargs: compiled.append(fn) or fn)
    pipeline, same = sample(compile=True)
    assert len(compiled) == 1 and pipeline.unet._compiled_call_impl is not None
    assert np.array_equal(same, default)


@pytest.mark.slow
def test_two_processes_write_what_one_writes(tiny_base, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    # accelerate gives each of the 2 processes 1 CPU thread; the thread count changes float summation
    # order (a pixel can round the other way), so the single process runs with 1 thread too
    run_worker(tmp_path, tiny_base, one, per_cell=3, env={"OMP_NUM_THREADS": "1"})
    launcher = ["accelerate", "launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29523"]
    run_worker(tmp_path, tiny_base, two, per_cell=3, launcher=launcher)
    assert images_of(two) == images_of(one)
    assert len(images_of(one)) == 12


def test_read_synthetic_yields_the_kept_images_shard_by_shard(tmp_path):
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(6)]
    plan = pd.DataFrame({"id": [f"img{i}" for i in range(6)], "fst": [1, 1, 1, 6, 6, 6], "label": ["mel"] * 6})
    for shard, first in enumerate((0, 3)):
        rows = plan.iloc[first : first + 3]
        storage.write_shard(storage.shard_path(tmp_path, shard), rows,
                            [storage.png_bytes(i) for i in images[first : first + 3]], "fp")
    manifest = plan.assign(path=[f"shards/shard-{i // 3:06d}.parquet#img{i}" for i in range(6)],
                           kept=[True, False, True, False, True, True])
    manifest.to_parquet(tmp_path / MANIFEST)

    batches = list(storage.read_synthetic(tmp_path))
    assert [rows["id"].tolist() for rows, _ in batches] == [["img0", "img2"], ["img4", "img5"]]
    read = [image for _, decoded in batches for image in decoded]
    assert all((a == b).all() for a, b in zip(read, [images[i] for i in (0, 2, 4, 5)], strict=True))
    (rows, decoded), = storage.read_synthetic(tmp_path, manifest[manifest["id"] == "img1"])  # any rows
    assert rows["id"].tolist() == ["img1"] and (decoded[0] == images[1]).all()


def test_a_manifest_path_out_of_the_synthetic_set_or_to_an_absent_id_is_one_line_and_exit_2(tmp_path, capsys):
    out = tmp_path / "synthetic"
    manifest = write_synthetic_set(out, {(1, "mel"): (2, 0), (6, "mel"): (2, 0)}, ["mel"], shard_size=2)
    outside = tmp_path / "outside.parquet"
    shutil.copy(out / "shards" / "shard-000000.parquet", outside)
    read_kept = exit_on_user_error(lambda: list(storage.read_synthetic(out)))
    assert len(read_kept()) == 2  # two shards, as written

    def refused(path: str) -> str:
        manifest.assign(path=manifest["path"].where(manifest.index != 1, path)).to_parquet(out / MANIFEST)
        with pytest.raises(SystemExit) as exit_info:
            read_kept()
        message = capsys.readouterr().err.strip()
        assert exit_info.value.code == 2 and "\n" not in message and "row 1, column 'path'" in message, message
        return message

    assert "path escapes the synthetic set's root" in refused("shards/../../outside.parquet#syn-1-mel-000")
    assert "path escapes the synthetic set's root" in refused(f"{outside}#syn-1-mel-000")
    absent_id = refused("shards/shard-000000.parquet#syn-1-mel-009")
    assert "no image 'syn-1-mel-009' in shards/shard-000000.parquet" in absent_id
    (out / "shards" / "shard-000001.parquet").unlink()
    (out / "shards" / "shard-000001.parquet").symlink_to(outside)
    assert "(through a symbolic link)" in refused("shards/shard-000001.parquet#syn-1-mel-000")


@pytest.mark.parametrize(("generate", "classes", "fragments"), [
    ({"labels": ["mel", "bcc"]}, ["mel", "nv"],
     [f"classifier/real/{WEIGHTS}", "the filter's classifier does not know the generate labels bcc"]),
    ({"labels": ["mel", "xyz"]}, ["bcc", "mel", "nv"],
     ["generate.labels: xyz not among the labels of the train split of ham10000 (bcc, mel, nv)"]),
    ({"fsts": [1], "per_cell": None, "top_up_to": 1}, ["bcc", "mel", "nv"],
     ["generate.top_up_to: nothing to sample", "already has 1 real images or more"]),
])  # fmt: skip
def test_labels_the_stage_cannot_generate_are_one_line_and_exit_2_before_any_run(
    tmp_path, mlflow_uri, capsys, generate, classes, fragments
):
    prepared, classifier, out = tmp_path / "prepared", tmp_path / "classifier" / "real", tmp_path / "synthetic"
    prepared.mkdir()
    pd.DataFrame({"path": [f"{label}.jpg" for label in ["bcc", "mel", "nv"]], "label": ["bcc", "mel", "nv"],
                  "fst": 1, "split": "train"}).to_parquet(prepared / MANIFEST)  # fmt: skip
    save_classifier(build_classifier("small_cnn", classes, 32), classifier / WEIGHTS)
    params = Params()
    params = params.model_copy(update={"generate": params.generate.model_copy(update=generate)})

    with pytest.raises(SystemExit) as exit_info:  # base and LoRA are never reached: they do not exist
        exit_on_user_error(generate_synthetic)(params, "ham10000", prepared, tmp_path / "base", tmp_path / "lora",
                                               classifier, out)  # fmt: skip
    message = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and message.startswith("error: ") and "\n" not in message, message
    assert all(fragment in message for fragment in fragments), message
    mlflow.set_tracking_uri(mlflow_uri)  # where a run would have gone (an earlier test may have pointed it elsewhere)
    assert not out.exists() and mlflow.search_runs(search_all_experiments=True).empty


def test_the_kept_grid_of_a_set_that_keeps_nothing_is_none(tmp_path):
    manifest = write_synthetic_set(tmp_path, {(1, "mel"): (0, 2)}, ["mel"])
    assert kept_grid(manifest, tmp_path) is None
    assert kept_grid(manifest.assign(kept=True), tmp_path).size == (4 * 32, 32)
