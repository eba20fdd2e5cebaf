"""generate@<dataset> as users run it: `dvc repro` through the real-only classifier to the synthetic
set (exact kept counts, lineage), and `dvc repro` killed mid-way and rerun (finished shards kept,
same manifest and bytes as the uninterrupted run)."""

import hashlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml

from fairaug.data.files import MANIFEST

from conftest import make_project, run, write_params

pytestmark = pytest.mark.slow
DATASET = "ham10000"
STAGE = f"generate@{DATASET}"
PER_CELL = 3
FSTS, LABELS = [1, 6], ["mel", "nv"]  # 4 cells x ceil(3 x 1.5) = 20 images: enough for many shards


@pytest.fixture(scope="module")
def generated(tmp_path_factory, fixture_data) -> Path:
    """A project with tiny limits where `dvc repro generate@ham10000` ran once, uninterrupted."""
    root = make_project(tmp_path_factory.mktemp("generate") / "project", fixture_data)
    write_params(
        root,
        base={"pretrain": {"vae_steps": 4, "unet_steps": 4, "generic_skin_images": 12, "perceptual_net_steps": 4}},
        train_lora={"max_steps": 4, "batch_size": 4, "checkpoint_every": 4, "validate_every": 4,
                    "validation_images": 4, "sample_steps": 2},
        train_classifier={"epochs": 1},
        # many small shards, so that a kill lands between the first and the last
        generate={"fsts": FSTS, "labels": LABELS, "per_cell": PER_CELL, "overgenerate": 1.5, "steps": 4,
                  "batch_size": 2, "shard_size": 4},
    )
    run(["dvc", "repro", STAGE], root)
    return root


def synthetic(root: Path) -> Path:
    return root / "outputs" / DATASET / "synthetic"


def shard_state(out: Path) -> dict[str, tuple[str, int]]:
    return {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted((out / "shards").glob("shard-*.parquet"))}


def test_kept_counts_are_exactly_the_plan_and_lineage_reaches_the_lora(generated):
    manifest = pd.read_parquet(synthetic(generated) / MANIFEST)
    kept = manifest[manifest["kept"]].groupby(["fst", "label"]).size()
    cells = pd.MultiIndex.from_product([FSTS, LABELS], names=["fst", "label"])
    assert kept.reindex(cells, fill_value=0).eq(PER_CELL).all(), kept
    assert len(manifest) == len(cells) * 5  # ceil(3 x 1.5) sampled per cell, every one scored
    assert manifest["path"].str.match(r"shards/shard-\d+\.parquet#fst\d-").all()
    assert len(list((synthetic(generated) / "shards").glob("shard-*.parquet"))) == 5
    assert not manifest.loc[manifest["reason"] == "near copy of a real image", "kept"].any()
    assert manifest["confidence"].between(0, 1).all()  # the real-only classifier scored every image

    mlflow.set_tracking_uri(f"sqlite:///{generated / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=[f"fairaug/{DATASET}"], output_format="list")
    by_stage = {r.data.tags["fairaug.stage"]: r for r in runs}
    lineage = by_stage["generate"].data.tags
    assert lineage["fairaug.upstream.train_lora"] == by_stage["train_lora"].info.run_id
    assert lineage["fairaug.upstream.train_classifier"] == by_stage["train_classifier"].info.run_id
    assert by_stage["generate"].data.metrics["generate/kept"] == PER_CELL * len(cells)
    lock = yaml.safe_load((generated / "dvc.lock").read_text())["stages"][STAGE]
    (out,) = lock["outs"]
    assert by_stage["generate"].data.tags[f"dvc.out_md5.{out['path']}"] == out["md5"]  # how downstream finds it


def test_killed_dvc_repro_keeps_finished_shards_and_ends_like_one_run(generated):
    out = synthetic(generated)
    reference = shard_state(out)
    reference_manifest = pd.read_parquet(out / MANIFEST)
    shutil.rmtree(out)

    process = subprocess.Popen(["dvc", "repro", STAGE], cwd=generated, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list(out.glob("shards/shard-*.parquet")):
        assert process.poll() is None, "generate ended before a shard was written"
        assert time.monotonic() < deadline, "no shard in time"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished = shard_state(out)
    assert 0 < len(finished) < len(reference)

    rerun = run(["dvc", "repro", STAGE], generated)
    assert "Running stage" in rerun.stdout and "'generate@" in rerun.stdout
    resumed = shard_state(out)
    assert {name: state[0] for name, state in resumed.items()} == {name: state[0] for name, state in reference.items()}
    assert all(resumed[name] == state for name, state in finished.items())  # not rewritten: same mtime
    pd.testing.assert_frame_equal(pd.read_parquet(out / MANIFEST), reference_manifest)
    again = run(["dvc", "repro", STAGE], generated)
    assert "Running stage" not in again.stdout
