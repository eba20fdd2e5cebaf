"""Registration and gated promotion against a temporary MLflow store (sqlite, and a real `mlflow
server`): pass, fail, missing metric, idempotence, the champion comparison, the override, an
interrupted registration, and the champion loading in a fresh process from the store alone."""

import io
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import requests
import torch
from diffusers import StableDiffusionPipeline
from mlflow import MlflowClient
from PIL import Image
from typer.testing import CliRunner

from fairaug.cli import app
from fairaug.config import Params, render_params
from fairaug.config.diffusion import TrainLoraConfig
from fairaug.diffusion.files import BASE_FILE, EMA_WEIGHTS, LORA_WEIGHTS
from fairaug.diffusion.lora import add_lora, lora_state, record_weights, save_lora
from fairaug.errors import ConfigError, DataError
from fairaug.fairness.files import FAIRNESS
from fairaug.fairness.evaluation import HEADLINE as FAIRNESS_HEADLINE
from fairaug.io import write_json
from fairaug.metrics.files import QUALITY
from fairaug.metrics.stage import HEADLINE as QUALITY_HEADLINE
from fairaug.metrics_files import write_metrics as write_metrics_files
from fairaug.registry import promote as registry
from fairaug.registry.model import lora_candidate, log_lora_model
from fairaug.registry.stage import PROMOTION
from fairaug.registry.stage import promote as promote_stage
from fairaug.tracking import stage_run

DATASET = "ham10000"
MODEL = "fairaug-ham10000-lora"
BASE = Path("outputs/models/base")  # one base for every data set (dvc.yaml)
GOOD = {
    "quality/memorization.near_copy.pixels": 0.0, "quality/fst_fidelity": 0.98, "quality/kid.pixels": 0.1,
    "quality/fid.inception": math.nan, "fairness/delta.auroc_gap": 0.0, "fairness/delta.balanced_accuracy": 0.01,
    **{f"fairness/augmented.auroc.fst{k}": 0.9 - 0.02 * k for k in range(1, 7)},
    **{f"fairness/augmented.fst{k}.small_group": k == 6 for k in range(1, 7)},
}  # worst FST AUROC: fst5 (fst6 is a small group) = 0.8
REASONS = {"quality/fid.inception.reason": "unavailable: Inception-v3 FID weights not found"}
LOAD_CHAMPION = """
import io, sys
import mlflow
from PIL import Image
model = mlflow.pyfunc.load_model(sys.argv[1])
images = model.predict(["fitzpatrick skin type vi, dermoscopic image of melanoma"] * 2,
                       params={"num_inference_steps": 2, "seed": 3})
print(len(images), *Image.open(io.BytesIO(images[0])).size)
"""


def write_lora(base_dir: Path, out_dir: Path, seed: int) -> Path:
    """A LoRA with non-zero weights (a fresh one is the identity), in train_lora's files."""
    pipeline = StableDiffusionPipeline.from_pretrained(base_dir, safety_checker=None)
    add_lora(pipeline.unet, TrainLoraConfig(seed=seed))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in pipeline.unet.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    written = [save_lora(lora_state(pipeline.unet), out_dir, name) for name in (LORA_WEIGHTS, EMA_WEIGHTS)]
    record_weights(out_dir, written)
    return out_dir


@pytest.fixture(scope="module")
def loras(tiny_base, tmp_path_factory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("loras")
    return {seed: write_lora(tiny_base, root / f"lora{seed}", seed) for seed in (1, 2, 3)}


@pytest.fixture
def project(tmp_path, tiny_base, loras, mlflow_uri, monkeypatch) -> Path:
    """A project root with params.yaml and outputs/ham10000 (base, LoRA 1, passing metrics)."""
    root = tmp_path / "project"
    (root / "outputs" / DATASET / "models").mkdir(parents=True)
    shutil.copytree(tiny_base, root / BASE)
    use_lora(root, loras[1])
    write_metrics(root, GOOD)
    (root / "params.yaml").write_text(render_params(Params()))
    monkeypatch.chdir(root)
    return root


def use_lora(root: Path, lora: Path) -> None:
    target = root / "outputs" / DATASET / "models" / "lora"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(lora, target)


def write_metrics(root: Path, metrics: dict, reasons: dict = REASONS) -> None:
    """As the evaluate stages write them: the per-FST values the worst_fst gate reads are in the
    detail files, not in quality.json / fairness.json."""
    out = root / "outputs" / DATASET / "metrics"
    for file, headline in ((QUALITY, QUALITY_HEADLINE), (FAIRNESS, FAIRNESS_HEADLINE)):
        numbers = {k: v for k, v in metrics.items() if k.startswith(f"{Path(file).stem}/")}
        write_metrics_files(out / file, numbers, reasons if file == QUALITY else {}, headline)


def promote(root: Path, params: Params | None = None, **options) -> registry.Outcome:
    outputs = root / "outputs" / DATASET
    return promote_stage(params or Params(), DATASET, outputs / "metrics" / QUALITY, outputs / "metrics" / FAIRNESS,
                         outputs / "models" / "lora", root / BASE, outputs / "metrics" / PROMOTION,
                         root=root, **options)


def with_gate(**changes) -> Params:
    params = Params()
    gates = dict(params.promote.gates)
    for name, update in changes.items():
        gates[name] = gates[name].model_copy(update=update)
    return params.model_copy(update={"promote": params.promote.model_copy(update={"gates": gates})})


def versions() -> list:
    return sorted(MlflowClient().search_model_versions(f"name = '{MODEL}'"), key=lambda v: int(v.version))


def aliases(client: MlflowClient | None = None) -> dict[str, int]:
    """The model's aliases (versions are ints from sqlite, strings from a server)."""
    return {alias: int(v) for alias, v in (client or MlflowClient()).get_registered_model(MODEL).aliases.items()}


def champion() -> int | None:
    return aliases().get("champion")


def test_passing_lora_becomes_champion_with_its_gates_recorded(project):
    outcome = promote(project)
    assert outcome.registered and outcome.version == 1 and outcome.verdict.decision == "promoted"
    (version,) = versions()
    tags = version.tags
    assert tags["fairaug.decision"] == "promoted" and tags["fairaug.forced"] == "false"
    assert tags["gate.fst_fidelity.value"] == "0.98" and tags["gate.fst_fidelity.threshold"] == "0.9"
    assert tags["gate.worst_fst_auroc.value"] == "0.8" and tags["gate.worst_fst_auroc.passed"] == "true"
    fairness_json = project / "outputs" / DATASET / "metrics" / FAIRNESS  # read from its detail file
    assert "fairness/augmented.auroc.fst5" not in json.loads(fairness_json.read_text())
    assert tags["fairaug.lora_sha256"] == lora_candidate(Params(), DATASET, project / "outputs" / DATASET / "models" / "lora",
                                                          project / BASE).digest
    assert champion() == 1
    promotion = json.loads((project / "outputs" / DATASET / "metrics" / PROMOTION).read_text())
    assert promotion["promotion/version"] == 1 and promotion["promotion/promoted"] == 1
    assert promotion["promotion/champion_version"] == 1
    assert promotion["promotion/kernel_distance.value"] == 0.1 and promotion["promotion/kernel_distance.passed"] == 1
    decision_run = MlflowClient().get_run(tags["fairaug.decision_run"])
    assert decision_run.data.tags["fairaug.stage"] == "promote" and decision_run.data.tags["fairaug.decision"] == "promoted"
    assert decision_run.data.metrics["promotion/promoted"] == 1.0


def test_version_names_the_runs_that_trained_the_lora_or_why_it_cannot(project, loras):
    """The LoRA in the workspace came from a logged train_lora run: the promote run links to it and
    the version records it; LoRA bytes no run in the store wrote (outputs from `dvc pull`): the
    link is left out with a reason, the promotion still goes through."""
    lora = project / "outputs" / DATASET / "models" / "lora"
    outcome = promote(project)
    run = MlflowClient().get_run(versions()[0].tags["fairaug.decision_run"])
    assert "fairaug.upstream.train_lora" not in run.data.tags and outcome.registered
    assert run.data.tags["fairaug.upstream_missing.train_lora"].startswith(
        "no finished run in this tracking store wrote outputs/ham10000/models/lora as it is now")
    assert "fairaug.run.train_lora" not in versions()[0].tags

    with stage_run("train_lora", DATASET, Params(), {}, root=project, outs=[lora]) as trained:
        use_lora(project, loras[2])
    assert promote(project).version == 2
    run = MlflowClient().get_run(versions()[-1].tags["fairaug.decision_run"])
    assert run.data.tags["fairaug.upstream.train_lora"] == trained.run_id
    assert versions()[-1].tags["fairaug.run.train_lora"] == trained.run_id


def test_champion_loads_in_a_fresh_process_from_the_store_alone(project, tmp_path):
    promote(project)
    shutil.move(project / "outputs", tmp_path / "outputs-moved-away")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = elsewhere / "load.py"
    script.write_text(LOAD_CHAMPION)
    env = {"PATH": os.environ["PATH"], "MLFLOW_TRACKING_URI": os.environ["MLFLOW_TRACKING_URI"],
           "HOME": str(elsewhere)}
    result = subprocess.run([sys.executable, str(script), f"models:/{MODEL}@champion"], cwd=elsewhere, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-3:] == ["2", "32", "32"]  # two images at the base's resolution


def test_same_lora_is_one_version_and_every_decision_is_kept(project):
    first, second = promote(project), promote(project)
    assert first.registered and not second.registered and second.version == first.version == 1
    assert len(versions()) == 1
    history = registry.decision_history(Params(), DATASET, root=project)
    assert list(history["version"]) == ["1", "1"] and list(history["decision"]) == ["promoted", "promoted"]
    assert history["time"].is_monotonic_increasing


def test_tighter_threshold_flips_the_decision_and_the_champion_alias_goes(project):
    promote(project)
    tightened = promote(project, with_gate(fst_fidelity={"threshold": 0.99}))
    assert tightened.verdict.decision == "rejected" and tightened.version == 1
    assert "quality/fst_fidelity = 0.98, needs >= 0.99" in tightened.verdict.reason
    (version,) = versions()
    assert version.tags["fairaug.decision"] == "rejected" and version.tags["gate.fst_fidelity.passed"] == "false"
    assert "no longer the champion" in version.tags["fairaug.decision_reason"] and champion() is None
    promotion = json.loads((project / "outputs" / DATASET / "metrics" / PROMOTION).read_text())
    assert promotion["promotion/promoted"] == 0 and promotion["promotion/fst_fidelity.passed"] == 0
    assert list(registry.decision_history(Params(), DATASET, root=project)["decision"]) == ["promoted", "rejected"]


def test_missing_metric_rejects_with_its_reason(project):
    params = with_gate(kernel_distance={"metric": "quality/fid.inception"})
    outcome = promote(project, params)
    assert outcome.verdict.decision == "rejected" and champion() is None
    assert "Inception-v3 FID weights not found" in versions()[0].tags["gate.kernel_distance.reason"]
    assert versions()[0].tags["gate.kernel_distance.value"] == ""


def test_champion_comparison_challenger_then_replacement(project, loras):
    promote(project)  # version 1: worst-FST AUROC 0.8
    use_lora(project, loras[2])
    write_metrics(project, GOOD | {"fairness/augmented.auroc.fst5": 0.7})
    worse = promote(project)
    assert (worse.version, worse.verdict.decision, champion()) == (2, "challenger", 1)
    assert aliases()["challenger"] == 2
    assert "does not beat the champion's 0.8" in worse.verdict.reason

    use_lora(project, loras[3])
    write_metrics(project, GOOD | {"fairness/augmented.auroc.fst5": 0.85})
    better = promote(project)
    assert (better.version, better.verdict.decision, better.champion_before, better.champion_after) == (3, "promoted", 1, 3)
    assert aliases() == {"champion": 3, "challenger": 2}
    assert versions()[0].tags["fairaug.replaced_by"] == "3"
    assert versions()[2].tags["gate.worst_fst_auroc.champion_value"] == "0.8"


def test_forced_promotion_is_recorded_as_an_override(project):
    write_metrics(project, GOOD | {"quality/fst_fidelity": 0.5})
    runner = CliRunner()
    refused = runner.invoke(app, ["promote", "--dataset", DATASET, "--force"])
    assert refused.exit_code == 2 and "--force and --reason go together" in refused.output
    result = runner.invoke(app, ["promote", "--dataset", DATASET, "--force", "--reason", "reviewed by a dermatologist"])
    assert result.exit_code == 0, result.output
    (version,) = versions()
    assert version.tags["fairaug.decision"] == "promoted" and version.tags["fairaug.forced"] == "true"
    assert "failed fst_fidelity" in version.tags["fairaug.decision_reason"]
    assert "reviewed by a dermatologist" in version.tags["fairaug.decision_reason"] and champion() == 1
    history = runner.invoke(app, ["registry", "history", "--dataset", DATASET])
    assert history.exit_code == 0 and "promoted" in history.output and "dermatologist" in history.output


def test_dry_run_records_nothing(project):
    outcome = promote(project, dry_run=True)
    assert outcome.version is None and outcome.verdict.decision == "promoted" and not outcome.registered
    assert MlflowClient().search_registered_models() == []
    assert not (project / "outputs" / DATASET / "metrics" / PROMOTION).exists()
    assert registry.decision_history(Params(), DATASET, root=project).empty


def test_cli_decides_again_on_a_version(project):
    promote(project)
    runner = CliRunner()
    result = runner.invoke(app, ["promote", "--dataset", DATASET, "--version", "1", "--dry-run"])
    assert result.exit_code == 0 and "promoted" in result.output and "dry run" in result.output
    missing = runner.invoke(app, ["promote", "--dataset", DATASET, "--version", "7"])
    assert missing.exit_code == 2 and "has no version 7" in missing.output
    assert len(registry.decision_history(Params(), DATASET, root=project)) == 1  # the dry run added none


def test_interrupted_registration_is_completed_by_a_rerun(project, monkeypatch):
    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    record_decision = registry.record_decision
    monkeypatch.setattr(registry, "record_decision", killed)
    with pytest.raises(KeyboardInterrupt):
        promote(project)
    assert [v.tags["fairaug.decision"] for v in versions()] == ["pending"]
    monkeypatch.setattr(registry, "record_decision", record_decision)
    rerun = promote(project)
    assert not rerun.registered and [v.tags["fairaug.decision"] for v in versions()] == ["promoted"]


def test_generate_cli_prompts_the_champion_with_its_template(project, tmp_path):
    promote(project)
    out = tmp_path / "generated"
    result = CliRunner().invoke(app, ["generate", "--model", f"models:/{MODEL}@champion", "--fst", "6",
                                      "--label", "mel", "--n", "2", "--steps", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "fitzpatrick skin type VI, dermoscopic image of melanoma" in result.output
    images = sorted(out.glob("*.png"))
    assert [p.name for p in images] == ["fst6-mel-0000.png", "fst6-mel-0001.png"]
    assert Image.open(images[0]).size == (32, 32)
    wrong = CliRunner().invoke(app, ["generate", "--model", f"models:/{MODEL}@champion", "--fst", "6",
                                     "--label", "zebra", "--out", str(out)])
    assert wrong.exit_code == 2 and "the model knows akiec" in wrong.output


def test_only_the_lora_runs_weights_and_the_recorded_base_are_registered(project):
    lora, base = project / "outputs" / DATASET / "models" / "lora", project / BASE
    record_weights(lora, [lora / LORA_WEIGHTS])  # a run without EMA: the EMA file is an earlier run's
    with pytest.raises(ConfigError, match=f"generate.lora_weights: ema: .* did not write {lora / EMA_WEIGHTS}"):
        lora_candidate(Params(), DATASET, lora, base)
    candidate = lora_candidate(Params(generate={"lora_weights": "final"}), DATASET, lora, base)
    weights = base / "vae" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with stage_run("promote", DATASET, Params(), {}, root=project), pytest.raises(DataError, match="sha256 differs"):
        log_lora_model(Params(), candidate, ["mel"])


def test_hub_base_is_registered_with_the_diffusers_flavor_at_its_pinned_revision(project, tiny_base, tmp_path):
    """A hub base is referenced, not carried: the flavor records the pinned revision, and the
    pipeline loads from a local stand-in for the hub."""
    base = tmp_path / "hub-base"
    base.mkdir()
    revision = "451f4fe16113bff5a5d2269ed5ad43b0592e9a14"
    write_json(base / BASE_FILE, {"source": "hub", "hub_id": "stable-diffusion-v1-5/stable-diffusion-v1-5",
                                  "revision": revision, "weights": {}})
    candidate = lora_candidate(Params(), DATASET, project / "outputs" / DATASET / "models" / "lora", base)
    with stage_run("promote", DATASET, Params(), {}, root=project):
        info = log_lora_model(Params(), candidate, ["mel"])
    assert set(info.flavors) == {"diffusers", "python_function"}
    adapter = mlflow.diffusers.load_model(info.model_uri)
    assert adapter.base_model == "stable-diffusion-v1-5/stable-diffusion-v1-5" and adapter.base_model_revision == revision
    pipeline = adapter.load_pipeline(base_model=str(tiny_base), revision=None, device="cpu", torch_dtype=torch.float32)
    image = pipeline("fitzpatrick skin type i, dermoscopic image of melanoma", num_inference_steps=2, output_type="np").images
    assert image.shape == (1, 32, 32, 3)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}", "--artifacts-destination",
         str(tmp_path / "server-artifacts")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{uri}/health", timeout=2).ok:
                break
        except requests.RequestException:
            time.sleep(0.5)
    else:
        server.kill()
        pytest.fail("mlflow server did not start")
    yield uri
    os.killpg(server.pid, 15)
    server.wait(30)


@pytest.mark.slow
def test_promotion_against_a_tracking_server(project, mlflow_server, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    assert promote(project).verdict.decision == "promoted"
    assert promote(project).version == 1  # idempotent against the server too
    client = MlflowClient(mlflow_server)
    assert aliases(client) == {"champion": 1}
    images = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion").predict(["fitzpatrick skin type ii, dermoscopic "
                                                                              "image of melanocytic nevus"],
                                                                             params={"num_inference_steps": 2})
    assert Image.open(io.BytesIO(images[0])).size == (32, 32)


def test_unreachable_tracking_server_is_one_line_and_exit_2(project):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}"}
    result = subprocess.run(["fairaug", "promote", "--dataset", DATASET], cwd=project, env=env, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: MLflow tracking server http://127.0.0.1:")
    assert "unreachable" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
