"""train_lora as users run it: killed with SIGKILL and rerun (script and `dvc repro`), and under
`accelerate launch --cpu --num_processes 2`; each ends with the uninterrupted run's LoRA (the selected
one, the latest and the EMA) and validation scores."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from fairaug.diffusion.files import EMA_WEIGHTS, LATEST_WEIGHTS, LORA_WEIGHTS, WEIGHTS_RECORD
from fairaug.diffusion.lora import CHECKPOINTS
from fairaug.diffusion.stage import MODEL_CARD, PLOTS, VALIDATION_PLOT

from conftest import make_project, run, write_params

pytestmark = pytest.mark.slow
DATASET = "ham10000"
PREPARED, BASE = f"outputs/{DATASET}/prepared", "outputs/models/base"
STAGE_ARGS = ["pipelines/train_lora.py", "--dataset", DATASET, "--prepared", PREPARED, "--base", BASE,
              "--classifier", f"outputs/{DATASET}/classifier/real"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, fixture_data) -> Path:
    """A project with tiny limits, its base model and the filter's classifier (the judge of the
    validation grids) built by DVC, and an uninterrupted reference LoRA."""
    root = make_project(tmp_path_factory.mktemp("lora") / "project", fixture_data)
    write_params(
        root,
        base={"pretrain": {"vae_steps": 4, "unet_steps": 4, "generic_skin_images": 12, "perceptual_net_steps": 4}},
        train_lora={"max_steps": 8, "batch_size": 4, "checkpoint_every": 3, "validate_every": 4,
                    "validation_images": 8, "sample_steps": 2, "dropout": 0.1},
        train_classifier={"epochs": 1},
    )
    run(["dvc", "repro", "base_model", f"train_classifier@{DATASET}-real"], root)
    run([sys.executable, *STAGE_ARGS, "--out", "outputs/reference"], root)
    return root


def assert_same_lora(first: Path, second: Path, atol: float) -> None:
    for name in (LORA_WEIGHTS, LATEST_WEIGHTS, EMA_WEIGHTS):
        a, b = load_file(str(first / name)), load_file(str(second / name))
        assert a.keys() == b.keys() and len(a) > 0
        worst = max((a[k] - b[k]).abs().max().item() for k in a)
        assert worst <= atol, f"{name}: max abs difference {worst}"


def start_and_kill_after_checkpoint(cmd: list[str], cwd: Path, checkpoints: Path, timeout: float = 300) -> None:
    """Start ``cmd`` in its own process group and SIGKILL the whole group once a checkpoint exists."""
    process = subprocess.Popen(cmd, cwd=cwd, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while not list(checkpoints.glob("checkpoint-*/state.json")):
        assert process.poll() is None, f"{cmd} ended before writing a checkpoint"
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL


def test_sigkill_then_rerun_equals_uninterrupted(trained):
    out = trained / "outputs" / "killed"
    start_and_kill_after_checkpoint([sys.executable, *STAGE_ARGS, "--out", str(out)], trained, out / CHECKPOINTS)
    assert not (out / LORA_WEIGHTS).exists()
    resumed = run([sys.executable, *STAGE_ARGS, "--out", str(out)], trained)
    assert "train_lora: resuming from" in resumed.stderr
    reference = trained / "outputs" / "reference"
    assert_same_lora(reference, out, atol=1e-6)
    for name in (LORA_WEIGHTS, LATEST_WEIGHTS, VALIDATION_PLOT):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    assert json.loads((out / WEIGHTS_RECORD).read_text()) == json.loads((reference / WEIGHTS_RECORD).read_text())
    assert (out / MODEL_CARD).read_text().count("Not for") == 1  # model card with limits
    assert (out / PLOTS).read_text().startswith("step,train_loss,val_loss")
    assert (out / VALIDATION_PLOT).read_text().startswith("step,val_loss,label_confidence,kid,fst_fidelity,selected")


def test_killed_dvc_repro_resumes_and_matches(trained):
    stage = f"train_lora@{DATASET}"
    lora = trained / "outputs" / DATASET / "models" / "lora"
    start_and_kill_after_checkpoint(["dvc", "repro", stage], trained, lora / CHECKPOINTS)
    # what kills in the middle of other writes leave in this persist out (DVC keeps it for the rerun)
    killed_writes = [lora / "plots" / ".loss.csv.k3x9a1.tmp", lora / f".{LORA_WEIGHTS}.tmp" / LORA_WEIGHTS]
    for path in killed_writes:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half a write")
    rerun = run(["dvc", "repro", stage], trained)
    assert "train_lora: resuming from" in rerun.stderr + rerun.stdout
    assert_same_lora(trained / "outputs" / "reference", lora, atol=1e-6)
    assert list(lora.rglob("*.tmp")) == []  # nothing half-written in what DVC cached
    again = run(["dvc", "repro", stage], trained)
    assert "Running stage" not in again.stdout  # and a second repro is a no-op


def test_two_cpu_processes_train_like_one(trained):
    out = trained / "outputs" / "two_processes"
    run(["accelerate", "launch", "--cpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
         "--dynamo_backend", "no", "--main_process_port", "29517", *STAGE_ARGS, "--out", str(out)], trained)
    # gradients are averaged across the two halves of each batch: equal up to float summation order
    assert_same_lora(trained / "outputs" / "reference", out, atol=1e-4)
