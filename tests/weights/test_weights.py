"""`fairaug weights fetch / check` and the loaders' preflight, with a local directory standing in for the
hub and the download server: only the transfer is swapped, resolve / verify / lock / load are real."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
import torchvision
from typer.testing import CliRunner

from fairaug.config import Params, render_params
from fairaug.config.loader import merge_overlay, params_from_dict, resolve_profile
from fairaug.errors import DataError
from fairaug.weights import spec as spec_module
from fairaug.weights.require import hub_cache, snapshot_dir
from fairaug.weights.spec import weight_plan
from fairaug.weights.store import LOCK_FILE, check_weights, fetch_weights, matches

from conftest import REPO_ROOT, dvc_repo, run

HUB_ID, REVISION = "someone/tiny-sd", "0123456789abcdef0123456789abcdef01234567"
INCEPTION = "weights-inception-2015-12-05-6726825d.pth"
SQUEEZE = "squeezenet1_1-b8a52dc0.pth"
EFFNET = "efficientnet_b0_rwightman-7f5810bc.pth"


class LocalTransport:
    """The hub and download.pytorch.org as a local directory: <root>/hub/<hub_id>/..., <root>/<file name>.
    The hub copy writes the hub cache's layout, as snapshot_download does."""

    def __init__(self, root: Path):
        self.root, self.calls = root, []

    def snapshot(self, hub_id, revision, allow_patterns, cache):
        self.calls.append(hub_id)
        source, snapshot = self.root / "hub" / hub_id, snapshot_dir(cache, hub_id, revision)
        for path in source.rglob("*"):
            name = path.relative_to(source).as_posix()
            if path.is_file() and matches(name, allow_patterns) and not (snapshot / name).exists():
                (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, snapshot / name)
        return snapshot

    def download(self, url, dest):
        self.calls.append(Path(url).name)
        shutil.copy2(self.root / Path(url).name, dest)


@pytest.fixture(autouse=True)
def _name_prefix_as_data(monkeypatch):
    """The stand-ins are random: their sha256 cannot start with torchvision's name prefix. Pin none, so
    that the fetch records them; test_tampered_* checks the prefix itself."""
    monkeypatch.setattr(spec_module.WeightSpec, "sha256_prefix", property(lambda self: None))


@pytest.fixture(scope="module")
def server(tiny_base, tmp_path_factory) -> Path:
    """What the hub and the download server hold: a tiny SD pipeline (plus files a fetch must skip),
    an Inception stand-in, and random squeezenet / efficientnet ImageNet-layout state dicts."""
    root = tmp_path_factory.mktemp("server")
    shutil.copytree(tiny_base, root / "hub" / HUB_ID)
    (root / "hub" / HUB_ID / "v1-5-pruned.safetensors").write_bytes(b"a 7 GB single-file checkpoint")
    (root / "hub" / HUB_ID / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"a pickle")
    (root / INCEPTION).write_bytes(b"inception stand-in")
    torch.save(torchvision.models.squeezenet1_1().state_dict(), root / SQUEEZE)
    torch.save(torchvision.models.efficientnet_b0().state_dict(), root / EFFNET)
    return root


@pytest.fixture
def project(tmp_path, server, monkeypatch) -> tuple[Path, Params]:
    """A project whose params load a hub base, Inception, LPIPS (squeeze) and an efficientnet backbone,
    the Inception stand-in pinned like the real file is."""
    pin = hashlib.sha256((server / INCEPTION).read_bytes()).hexdigest()
    monkeypatch.setattr(spec_module, "URL_SHA256", {INCEPTION: pin})
    cache = ".fairaug-weights/torch/hub/checkpoints"
    params = params_from_dict(merge_overlay(Params().model_dump(mode="json"), {
        "profile": "real",
        "base": {"source": "hub", "hub_id": HUB_ID, "revision": REVISION},
        "evaluate_quality": {"inception_weights": f"{cache}/{INCEPTION}", "lpips_net": "squeeze",
                             "lpips_weights": f"{cache}/{SQUEEZE}", "require_weights": True},
        "train_classifier": {"arch": "efficientnet_b0", "weights_path": ".fairaug-weights/classifier/effnet.safetensors"},
    }))  # fmt: skip
    (tmp_path / "params.yaml").write_text(render_params(params))
    return tmp_path, params


def test_fetch_verifies_records_and_the_stages_load_offline(project, server, monkeypatch, tmp_path):
    from fairaug.diffusion.base import load_base_pipeline, resolve_base
    from fairaug.fairness.model import build_classifier
    from fairaug.metrics.perceptual import load_lpips

    root, params = project
    transport = LocalTransport(server)
    specs = weight_plan(params, root)
    assert [s.key for s in specs] == [f"{HUB_ID}@{REVISION}", INCEPTION, SQUEEZE, EFFNET]
    done = dict((s.key, how) for s, how in fetch_weights(specs, root, transport))
    assert "pinned in fairaug" in done[INCEPTION]
    assert "recorded on this first fetch" in done[SQUEEZE]
    lock = json.loads((root / LOCK_FILE).read_text())["weights"]
    base = lock[f"{HUB_ID}@{REVISION}"]
    assert base["revision"] == REVISION and "unet/diffusion_pytorch_model.safetensors" in base["files"]
    assert not any(name.endswith(".bin") or name.startswith("v1-5") for name in base["files"])  # safetensors only
    assert lock[EFFNET]["converted"]["path"] == ".fairaug-weights/classifier/effnet.safetensors"
    assert all(s.state == "ok" for s in check_weights(specs, root))

    # fetching again transfers nothing
    transport.calls.clear()
    fetch_weights(specs, root, transport)
    assert transport.calls == [HUB_ID]  # the hub is asked (snapshot_download skips what the cache has)

    # the stages' loaders, offline, from the cache
    monkeypatch.chdir(root)
    out = tmp_path / "base-out"
    out.mkdir()
    record = resolve_base(params.base, out, cache_dir=params.weights.cache_dir)
    assert record["cache_dir"] == ".fairaug-weights" and record["weights"]
    assert load_base_pipeline(out).unet is not None
    assert load_lpips("squeeze", weights=params.evaluate_quality.lpips_weights, required=True).distance is not None
    build_classifier("efficientnet_b0", ["a", "b"], 64, weights_path=params.train_classifier.weights_path)


def test_check_names_exactly_what_is_missing_and_the_fetch_command(project, server):
    root, params = project
    specs = weight_plan(params, root)
    fetch_weights(specs, root, LocalTransport(server))
    unet = snapshot_dir(hub_cache(root / ".fairaug-weights"), HUB_ID, REVISION) / "unet/diffusion_pytorch_model.safetensors"
    unet.unlink()
    (root / ".fairaug-weights/torch/hub/checkpoints" / SQUEEZE).unlink()
    from fairaug.cli import app

    result = CliRunner().invoke(app, ["weights", "check", "--project", str(root)])
    assert result.exit_code == 2
    output = " ".join(result.output.split())
    assert f"missing base model ({HUB_ID}@{REVISION}" in output and str(unet) in output
    assert f"missing LPIPS backbone (squeeze, ImageNet) ({SQUEEZE}" in output
    assert f"ok Inception-v3 FID weights (torch-fidelity) ({INCEPTION}" in output
    assert "2 of 4 weights not ready" in output and "fairaug weights fetch --profile real" in output


def test_missing_weights_stop_the_loaders_in_one_line(project, tmp_path):
    from fairaug.diffusion.base import resolve_base
    from fairaug.fairness.model import build_classifier
    from fairaug.metrics.extractors import inception_extractor
    from fairaug.metrics.perceptual import load_lpips

    root, params = project  # nothing fetched
    cache = root / ".fairaug-weights"
    with pytest.raises(DataError, match=r"model_index.json: missing base model someone/tiny-sd@0123456789ab: "
                                        r"fetch it once on a connected machine with `fairaug weights fetch"):
        resolve_base(params.base, tmp_path, cache_dir=cache)
    quality = params.evaluate_quality
    with pytest.raises(DataError, match=f"{INCEPTION}: missing Inception-v3 FID weights"):
        inception_extractor(root / quality.inception_weights, required=True)
    assert not inception_extractor(root / quality.inception_weights).available  # not required: unavailable
    with pytest.raises(DataError, match=f"{SQUEEZE}: missing LPIPS backbone"):
        load_lpips("squeeze", weights=root / quality.lpips_weights, required=True)
    with pytest.raises(DataError, match="effnet.safetensors: missing efficientnet_b0 ImageNet weights"):
        build_classifier("efficientnet_b0", ["a"], 64, weights_path=root / params.train_classifier.weights_path)


def test_tampered_files_are_refused(project, server, tmp_path, monkeypatch):
    root, params = project
    specs = weight_plan(params, root)
    tampered = tmp_path / "tampered-server"
    shutil.copytree(server, tampered)
    (tampered / INCEPTION).write_bytes(b"something else")  # not the pinned bytes
    with pytest.raises(DataError, match=f"{INCEPTION}.partial: refused: sha256 .* is not the pinned"):
        fetch_weights(specs, root, LocalTransport(tampered))
    assert not list((root / ".fairaug-weights/torch/hub/checkpoints").glob("weights-inception*"))

    # a file altered in the cache after its fetch: check says so, the base loader refuses it
    fetch_weights(specs, root, LocalTransport(server))
    snapshot = snapshot_dir(hub_cache(root / ".fairaug-weights"), HUB_ID, REVISION)
    vae = snapshot / "vae/diffusion_pytorch_model.safetensors"
    data = bytearray(vae.read_bytes())
    data[-1] ^= 0xFF
    vae.write_bytes(bytes(data))
    (status,) = [s for s in check_weights(specs, root) if s.spec.kind == "hub"]
    assert status.state == "tampered" and str(vae) in status.detail
    # ... and a refetch replaces it with the locked bytes
    fetch_weights(specs, root, LocalTransport(server))
    assert all(s.state == "ok" for s in check_weights(specs, root))

    # a download whose name's sha256 prefix does not match is refused
    monkeypatch.setattr(spec_module.WeightSpec, "sha256_prefix", property(lambda self: "b8a52dc0"))
    (root / LOCK_FILE).unlink()
    (root / ".fairaug-weights/torch/hub/checkpoints" / SQUEEZE).unlink()
    with pytest.raises(DataError, match="refused: sha256 .* is not the file name's b8a52dc0"):
        fetch_weights([s for s in specs if s.key == SQUEEZE], root, LocalTransport(server))


@pytest.mark.parametrize(("profile", "dataset", "resolution", "perceptual"),
                         [("sd15-ham10000", "ham10000", 512, []), ("sd21-wound", "wound", 128, ["perceptual loss network"])])
def test_real_profiles_render_validate_and_plan_their_weights(profile, dataset, resolution, perceptual, tmp_path):
    for name in ("dvc.yaml", ".dvcignore", "params.yaml"):
        shutil.copy2(REPO_ROOT / name, tmp_path / name)
    shutil.copytree(REPO_ROOT / "profiles", tmp_path / "profiles")
    dvc_repo(tmp_path)
    run(["fairaug", "profile", profile], tmp_path)
    from fairaug.config import load_params

    params = load_params(tmp_path / "params.yaml")
    assert params == resolve_profile(profile, REPO_ROOT) and params.profile == profile
    assert list(params.datasets) == [dataset] and params.base.source == "hub" and len(params.base.revision) == 40
    assert params.base.resolution == resolution and params.train_classifier.arch != "small_cnn"
    kinds = [s.what.split(" (")[0] for s in weight_plan(params, tmp_path)]
    assert kinds == ["base model", "Inception-v3 FID weights", "LPIPS backbone", *perceptual, "classifier backbone"]
    assert all(str(s.path).startswith(str(tmp_path / ".fairaug-weights")) for s in weight_plan(params, tmp_path))
    # DVC sees the real pipeline: one data set, every stage (`dvc repro --dry` stops at the first stage
    # whose deps are not there yet, so the stage list is what can be checked without data)
    stages = run(["dvc", "stage", "list", "--name-only"], tmp_path).stdout.split()
    per_dataset = [stage for stage in stages if stage != "base_model"]  # the base serves every data set
    assert "base_model" in stages and all(stage.split("@")[1].startswith(dataset) for stage in per_dataset)
    assert len(per_dataset) == 9


def test_the_perceptual_loss_network_is_planned_once_beside_lpips_on_the_same_vgg16(tmp_path):
    from fairaug.diffusion.perceptual import WEIGHTS_URLS

    def plan(**sections):
        return weight_plan(params_from_dict(merge_overlay(Params().model_dump(mode="json"), sections)), tmp_path)

    assert plan() == []  # tiny: nothing to fetch
    (vgg,) = plan(train_lora={"perceptual_loss": {"weight": 0.1}})
    assert vgg.source == WEIGHTS_URLS["vgg16"] == torchvision.models.VGG16_Weights.IMAGENET1K_V1.url
    assert vgg.path == tmp_path / ".fairaug-weights/torch/hub/checkpoints/vgg16-397923af.pth"
    assert vgg.used_by == "train_lora" and vgg.pinned_sha256 is None  # its sha256 is recorded on the first fetch
    local = plan(train_lora={"perceptual_loss": {"weight": 0.1, "weights_path": "weights/vgg.pth"}})
    assert [s.path for s in local] == [tmp_path / "weights/vgg.pth"]
    (shared,) = plan(train_lora={"perceptual_loss": {"weight": 0.1}},
                     evaluate_quality={"lpips_net": "vgg", "require_weights": True, "extractors": ["evaluator"]})
    assert shared.path == vgg.path and shared.used_by == "evaluate_quality, train_lora"
