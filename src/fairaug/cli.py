"""The `fairaug` command line."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from fairaug.errors import FairaugError, exit_on_user_error

app = typer.Typer(
    help="fairaug: fair synthetic medical-image augmentation (DVC + MLflow + diffusers).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(stderr=True)


class FixtureKind(str, Enum):
    derm = "derm"
    wound = "wound"


class WoundLayout(str, Enum):
    csv = "csv"
    imagefolder = "imagefolder"


class Format(str, Enum):
    ham10000 = "ham10000"
    fitzpatrick17k = "fitzpatrick17k"
    ddi = "ddi"
    csv = "csv"
    imagefolder = "imagefolder"


@app.command()
@exit_on_user_error
def fixture(
    kind: Annotated[FixtureKind, typer.Argument(help="derm: HAM10000 layout; wound: healing phases I/P/R")],
    out: Annotated[Path, typer.Option(help="directory to write (created)")],
    n: Annotated[int, typer.Option(min=1, help="number of images")] = 600,
    seed: Annotated[int, typer.Option(help="same seed, same bytes")] = 0,
    size: Annotated[int, typer.Option(min=16, help="image side in pixels")] = 64,
    layout: Annotated[WoundLayout, typer.Option(help="wound only: labels.csv or <label>/<image>")] = WoundLayout.csv,
    closeups: Annotated[float, typer.Option(min=0.0, max=1.0, help="derm only: share of lesion-filled close-ups")] = 0.0,
) -> None:
    """Write a procedurally generated data set in the real layout, with the true FST."""
    from fairaug.data.fixtures import write_derm_fixture, write_wound_fixture

    if kind is FixtureKind.derm:
        write_derm_fixture(out, n=n, seed=seed, size=size, closeup_share=closeups)
    else:
        write_wound_fixture(out, n=n, seed=seed, size=size, layout=layout.value)
    console.print(f"wrote {n} {kind.value} images to {out}")


@app.command()
@exit_on_user_error
def validate(
    root: Annotated[Path, typer.Argument(help="data set directory")],
    format: Annotated[Format, typer.Option("--format", help="layout of the data set")],
    labels: Annotated[str | None, typer.Option(help="comma-separated allowed labels (csv/imagefolder)")] = None,
    min_image_size: Annotated[int, typer.Option(min=1, help="smallest accepted image side")] = 32,
) -> None:
    """Check a data set (schema, labels, FST, ids, image files): exit 0 when valid, 2 naming the problem."""
    from fairaug.data.prepare import validate_dataset
    from fairaug.data.report import counts_text
    from fairaug.skin.types import FST_UNKNOWN

    allowed = [label.strip() for label in labels.split(",")] if labels else None
    validated = validate_dataset(root, format.value, allowed, min_image_size)
    records = validated.records
    warnings = [c for c in validated.checks if not c.success]
    console.print(
        f"[green]valid[/green]: {root} ({format.value}): {len(records)} images, "
        f"{records['group_id'].nunique()} groups, labels: {counts_text(records['label'].value_counts().sort_index())}"
    )
    for check in warnings:
        console.print(f"[yellow]warning[/yellow]: {check.message}")
    abstained = int((records["fst_ita"] == FST_UNKNOWN).sum())
    if abstained:
        console.print(f"FST: the ITA estimate abstained on {abstained} images (too little non-lesion skin): "
                      "without an FST label their FST is unknown")


@app.command()
@exit_on_user_error
def profile(
    name: Annotated[str | None, typer.Argument(help="profile to switch to (profiles/<name>.yaml)")] = None,
    project: Annotated[Path, typer.Option(help="project root")] = Path("."),
) -> None:
    """Switch params.yaml to a profile (DVC then sees the changed params); without NAME, list profiles."""
    from fairaug.config.loader import PARAMS_FILE, available_profiles, load_params, write_profile

    if name is None:
        current = load_params(project / PARAMS_FILE).profile if (project / PARAMS_FILE).exists() else None
        for known in available_profiles(project):
            print(f"{'*' if known == current else ' '} {known}")
        return
    path = write_profile(name, project)
    console.print(f"{path}: profile [bold]{name}[/bold]; run `dvc repro` (or `make demo`) to apply it")


def _print_verdict(outcome, title: str) -> None:
    """The gate table (value, bound, champion's value, verdict), then why the failed gates failed."""
    from rich.table import Table

    def number(value: float | None) -> str:
        return "" if value is None else f"{value:.4g}"

    table = Table(title=title)
    for column in ("gate", "metric", "value", "threshold", "champion", "verdict"):
        table.add_column(column, overflow="fold")
    for gate in outcome.verdict.gates:
        verdict = "[green]pass[/green]" if gate.passed else f"[red]fail ({gate.failure})[/red]"
        table.add_row(gate.name, gate.metric, number(gate.value), number(gate.threshold),
                      number(gate.champion_value), verdict)  # fmt: skip
    out = Console()
    out.print(table)
    for gate in outcome.verdict.gates:
        if not gate.passed:
            out.print(f"  {gate.name}: {gate.reason}")
    out.print(f"[bold]{outcome.verdict.decision}[/bold]: {outcome.verdict.reason}")


@app.command("promote")
@exit_on_user_error
def promote_command(
    dataset: Annotated[str, typer.Option(help="data set (params.yaml datasets)")],
    version: Annotated[
        int | None, typer.Option(help="decide again on this registered version (default: the LoRA in outputs/)")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="judge and print, register and change nothing")] = False,
    force: Annotated[bool, typer.Option(help="promote whatever the gates say (needs --reason; recorded)")] = False,
    reason: Annotated[str | None, typer.Option(help="why a person overrides the gates (with --force)")] = None,
    project: Annotated[Path, typer.Option(help="project root")] = Path("."),
) -> None:
    """Register the data set's LoRA, judge it by the gates (params `promote`) and move the aliases."""
    from fairaug.config.loader import PARAMS_FILE, load_params
    from fairaug.fairness.files import FAIRNESS
    from fairaug.metrics.files import QUALITY
    from fairaug.registry.promote import promote_version
    from fairaug.registry.stage import promote

    if force != bool(reason):
        raise FairaugError("--force and --reason go together: say why the gates are overridden")
    params = load_params(project / PARAMS_FILE)
    params.dataset(dataset)
    if version is not None:
        outcome = promote_version(params, dataset, version, dry_run=dry_run, force_reason=reason, root=project)
    else:
        outputs = project / "outputs" / dataset
        outcome = promote(params, dataset, outputs / "metrics" / QUALITY, outputs / "metrics" / FAIRNESS,
                          outputs / "models" / "lora", project / "outputs" / "models" / "base", dry_run=dry_run,
                          force_reason=reason, root=project)  # fmt: skip (promotion.json is the stage's)
    name = params.promote.registered_model(dataset)
    which = f"version {outcome.version}" if outcome.version is not None else "a new version"
    _print_verdict(outcome, f"{name}: {which}{' (dry run: nothing recorded)' if dry_run else ''}")


registry_app = typer.Typer(help="Read the MLflow model registry.", no_args_is_help=True)
app.add_typer(registry_app, name="registry")


@registry_app.command("history")
@exit_on_user_error
def registry_history(
    dataset: Annotated[str, typer.Option(help="data set (params.yaml datasets)")],
    project: Annotated[Path, typer.Option(help="project root")] = Path("."),
) -> None:
    """Every promotion decision on the data set's model, oldest first."""
    from rich.table import Table

    from fairaug.config.loader import PARAMS_FILE, load_params
    from fairaug.registry.promote import decision_history

    params = load_params(project / PARAMS_FILE)
    params.dataset(dataset)
    history = decision_history(params, dataset, root=project)
    if history.empty:
        console.print(f"no promotion decisions for {dataset} yet: run `dvc repro promote@{dataset}`")
        return
    table = Table(title=f"{params.promote.registered_model(dataset)}: decisions, oldest first")
    for column in ("time", "version", "decision", "forced", "champion", "reason"):
        table.add_column(column, overflow="fold")
    for row in history.itertuples(index=False):
        champion = f"{row.champion_before or '-'} -> {row.champion_after or '-'}"
        table.add_row(f"{row.time:%Y-%m-%d %H:%M:%S}", row.version, row.decision, row.forced, champion,
                      row.decision_reason)  # fmt: skip
    Console().print(table)


@app.command("generate")
@exit_on_user_error
def generate_command(
    model: Annotated[str, typer.Option(help="MLflow model URI, e.g. models:/fairaug-ham10000-lora@champion")],
    fst: Annotated[int, typer.Option(min=1, max=6, help="Fitzpatrick skin type asked for")],
    label: Annotated[str, typer.Option(help="label asked for (e.g. mel; wound phases I, P, R)")],
    out: Annotated[Path, typer.Option(help="directory for the PNG images (created)")],
    n: Annotated[int, typer.Option(min=1, help="number of images")] = 8,
    seed: Annotated[int, typer.Option(help="image i gets seed + i")] = 0,
    steps: Annotated[int | None, typer.Option(min=1, help="sampler steps (default: the model's)")] = None,
) -> None:
    """Images from a registered LoRA, prompted as it was trained (the model's prompt template)."""
    import mlflow

    from fairaug.io import atomic_write_bytes
    from fairaug.registry.model import model_prompts
    from fairaug.tracking import configure_tracking
    from fairaug.tracking.server import check_tracking_server, tracking_errors

    configure_tracking(Path("."))
    uri = mlflow.get_tracking_uri()
    check_tracking_server(uri)
    with tracking_errors(uri):
        prompts = model_prompts(model, fst, label, n)
        pipeline = mlflow.pyfunc.load_model(model)
    params = {"seed": seed} | ({"num_inference_steps": steps} if steps else {})
    images = pipeline.predict(prompts, params=params)
    for i, png in enumerate(images):
        atomic_write_bytes(out / f"fst{fst}-{label}-{i:04d}.png", png)
    console.print(f"wrote {len(images)} images to {out}: \"{prompts[0]}\"")


@app.command("fairness-report")
@exit_on_user_error
def fairness_report_command(
    predictions: Annotated[
        Path, typer.Argument(help="label, fst and a score_<label> column per class (.parquet or .csv)")
    ],
    out: Annotated[Path, typer.Option(help="report JSON to write: the whole report in one file (the names of "
                                           "fairness.json and fairness_detail.json, with .reason strings)")],
    ordinal: Annotated[bool, typer.Option(help="classes are ordered (wound phases): quadratic kappa")] = False,
    malignant: Annotated[
        str | None, typer.Option(help="comma-separated malignant classes, e.g. mel,bcc,akiec: adds auroc_malignant")
    ] = None,
    min_group_size: Annotated[int, typer.Option(min=1, help="FST groups with fewer rows are flagged small")] = 5,
    n_bootstrap: Annotated[int, typer.Option(min=0, help="bootstrap resamples for the intervals (0: none)")] = 200,
    seed: Annotated[int, typer.Option(help="seed of the bootstrap resamples")] = 0,
) -> None:
    """Per-FST metrics, gaps and bootstrap intervals of any prediction table, in one file under the
    names of fairness.json and fairness_detail.json."""
    from fairaug.fairness.predictions import prediction_classes, read_predictions
    from fairaug.fairness.report import fairness_report
    from fairaug.io import write_json

    frame = read_predictions(predictions)
    classes = prediction_classes(frame, source=predictions)
    malignant_classes = [label.strip() for label in malignant.split(",")] if malignant else None
    unknown = sorted(set(malignant_classes or ()) - set(classes))
    if unknown:
        listed = f"{', '.join(unknown)} not among the classes of {predictions}"
        raise FairaugError(f"--malignant: {listed}: {', '.join(classes)}")
    report = fairness_report(
        frame,
        classes,
        ordinal=ordinal,
        malignant_classes=malignant_classes,
        min_group_size=min_group_size,
        n_bootstrap=n_bootstrap,
        seed=seed,
    )
    write_json(out, report)
    console.print(f"wrote {out}: {len(frame)} predictions, FST groups {sorted(frame['fst'].unique().tolist())}")


@app.command()
@exit_on_user_error
def results(
    out: Annotated[Path, typer.Option(help="Markdown file to write")] = Path("docs/results.md"),
    project: Annotated[Path, typer.Option(help="DVC project root")] = Path("."),
) -> None:
    """Collect the finished DVC experiments (`dvc exp run --queue ...`, `dvc queue start`) into one
    table per data set: per-FST AUROC and sensitivity, AUROC gap and EOD of the real-only and the
    augmented classifier and their difference, and the synthetic images' label confidence (also
    against real test images), mean ± std over seeds, per setting."""
    from fairaug.results import write_results

    command = f"fairaug results --out {out}" + (f" --project {project}" if project != Path(".") else "")
    table = write_results(project, out, command)
    console.print(f"wrote {out}: {table['dataset'].nunique()} data sets, {table['setting'].nunique()} settings")


@app.command("repro")
@exit_on_user_error
def repro_command(
    jobs: Annotated[int, typer.Option(min=1, help="stages run at once (base_model runs alone)")] = 2,
    project: Annotated[Path, typer.Option(help="DVC project root")] = Path("."),
) -> None:
    """`dvc repro`, with the data sets side by side: their prepare stages, then base_model alone with
    every core, then each data set's stages, JOBS at a time, in `dvc repro --single-item` processes
    with cores / JOBS torch threads each. A `dvc repro` afterwards has nothing to run."""
    from fairaug.repro import repro

    failed, not_run = repro(project, jobs, write=lambda line: print(line, flush=True))
    if failed:
        skipped = f"; not run: {', '.join(not_run)}" if not_run else ""
        console.print(f"error: failed: {', '.join(failed)} (its output is above){skipped}", highlight=False)
        raise typer.Exit(1)


class QualityExtractor(str, Enum):
    inception = "inception"
    evaluator = "evaluator"
    pixels = "pixels"


@app.command()
@exit_on_user_error
def quality(
    real_dir: Annotated[Path, typer.Argument(help="folder of real images (png/jpg, recursive)")],
    synth_dir: Annotated[Path, typer.Argument(help="folder of synthetic images (png/jpg, recursive)")],
    out: Annotated[Path, typer.Option(help="report JSON to write: the whole report in one file (the names of "
                                           "quality.json and quality_detail.json, with .reason strings)")],
    extractor: Annotated[
        list[QualityExtractor] | None,
        typer.Option(help="feature extractor, repeatable (default: inception, evaluator, pixels)"),
    ] = None,
    evaluator: Annotated[
        Path | None, typer.Option(help="evaluator classifier (model.safetensors; never the one that selected the "
                                       "synthetic images) for the evaluator extractor and label metrics")
    ] = None,
    inception_weights: Annotated[
        Path | None, typer.Option(help="torch-fidelity Inception-v3 FID weights file (else torch hub's cache)")
    ] = None,
    n_bootstrap: Annotated[int, typer.Option(min=0, help="bootstrap resamples for the intervals (0: none)")] = 100,
    cache_dir: Annotated[
        Path | None, typer.Option(help="cache of the real folder's features (default: none)")
    ] = None,
) -> None:
    """Quality metrics of any two image folders (FID, KID, IS, SSIM, LPIPS, ...), in one file under the
    names of quality.json and quality_detail.json."""
    from fairaug.config.quality import EvaluateQualityConfig
    from fairaug.io import write_json
    from fairaug.metrics.extractors import build_extractors
    from fairaug.metrics.features import FeatureCache, folder_set
    from fairaug.metrics.perceptual import load_lpips
    from fairaug.metrics.report import quality_report

    for name, path in (("--evaluator", evaluator), ("--inception-weights", inception_weights)):
        if path is not None and not path.is_file():
            raise FairaugError(f"{name}: file not found: {path}")
    names = [e.value for e in extractor] if extractor else None
    config = EvaluateQualityConfig(**({"extractors": names} if names else {}), n_bootstrap=n_bootstrap,
                                   cache_dir=str(cache_dir) if cache_dir else None)  # fmt: skip
    real, synthetic = folder_set(real_dir), folder_set(synth_dir)
    extractors = build_extractors(config.extractors, evaluator=evaluator, inception_weights=inception_weights)
    report = quality_report(real, synthetic, extractors, config, FeatureCache(config.cache_dir),
                            load_lpips(config.lpips_net))  # fmt: skip
    write_json(out, report)
    console.print(f"wrote {out}: {len(synthetic.rows)} synthetic vs {len(real.rows)} real images")


weights_app = typer.Typer(help="Pretrained weights of real profiles: fetch once (connected), check offline.",
                          no_args_is_help=True)
app.add_typer(weights_app, name="weights")


def _weights_params(profile: str | None, project: Path):
    """The params of ``profile`` (profiles/<name>.yaml), else of params.yaml."""
    from fairaug.config.loader import load_params, resolve_profile

    return resolve_profile(profile, project) if profile else load_params(project / "params.yaml")


@weights_app.command("fetch")
@exit_on_user_error
def weights_fetch(
    profile: Annotated[str | None, typer.Option(help="profile whose weights to fetch (default: params.yaml's)")] = None,
    project: Annotated[Path, typer.Option(help="project root")] = Path("."),
) -> None:
    """Download every weight the profile's stages load (hub base at its pinned revision, safetensors
    only; Inception FID; LPIPS and classifier backbones) into weights.cache_dir, verify each sha256, and
    record them in weights.lock.json. Run once, on a connected machine."""
    from fairaug.weights.spec import weight_plan
    from fairaug.weights.store import LOCK_FILE, fetch_weights

    params = _weights_params(profile, project)
    specs = weight_plan(params, project)
    if not specs:
        console.print(f"profile {params.profile}: loads no pretrained weights (nothing to fetch)")
        return
    for spec, how in fetch_weights(specs, project):
        console.print(f"[green]fetched[/green] {spec.what}: {spec.key} -> {spec.path}: {how}")
    console.print(f"wrote {project / LOCK_FILE}; stages now run offline (HF_HUB_OFFLINE=1)")


@weights_app.command("check")
@exit_on_user_error
def weights_check(
    profile: Annotated[str | None, typer.Option(help="profile to check (default: params.yaml's)")] = None,
    project: Annotated[Path, typer.Option(help="project root")] = Path("."),
) -> None:
    """Offline: is every weight the profile loads in the cache, with its pinned / locked sha256? Exit 2
    naming what is missing or altered, and the command that fetches it."""
    from fairaug.weights.spec import weight_plan
    from fairaug.weights.store import check_weights, fetch_command

    params = _weights_params(profile, project)
    statuses = check_weights(weight_plan(params, project), project)
    if not statuses:
        console.print(f"profile {params.profile}: loads no pretrained weights (nothing to check)")
        return
    for status in statuses:
        colour = "green" if status.state == "ok" else "red"
        print_line = f"[{colour}]{status.state}[/{colour}] {status.spec.what} ({status.spec.key}, for "
        console.print(print_line + f"{status.spec.used_by}): {status.detail}", highlight=False, soft_wrap=True)
    bad = [status for status in statuses if status.state != "ok"]
    if bad:
        console.print(f"{len(bad)} of {len(statuses)} weights not ready; fetch them on a connected machine with: "
                      f"{fetch_command(params.profile)}", highlight=False, soft_wrap=True)
        raise SystemExit(2)
    console.print(f"all {len(statuses)} weights present, sha256 verified", highlight=False)


DASHBOARD_APP = Path(__file__).resolve().parents[2] / "dashboards" / "app.py"


@app.command()
@exit_on_user_error
def dashboard(
    port: Annotated[int, typer.Option(min=1, max=65535, help="port on 127.0.0.1")] = 8501,
    tracking_uri: Annotated[
        str | None, typer.Option(help="MLflow store to read (default: MLFLOW_TRACKING_URI, else ./mlflow.db)")
    ] = None,
) -> None:
    """Open the Streamlit dashboard (runs, compare, fairness, samples, registry), bound to 127.0.0.1."""
    import os

    if not DASHBOARD_APP.is_file():
        raise FairaugError(f"dashboard app not found: {DASHBOARD_APP} (run from a source checkout)")
    env = os.environ | ({"MLFLOW_TRACKING_URI": tracking_uri} if tracking_uri else {})
    command = [sys.executable, "-m", "streamlit", "run", str(DASHBOARD_APP), "--server.address", "127.0.0.1",
               "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    console.print(f"fairaug dashboard on http://127.0.0.1:{port}")
    # Streamlit takes over this process, so a signal to `fairaug dashboard` stops the server too
    os.execve(sys.executable, command, env)

def main() -> None:
    from fairaug.progress import quiet_library_bars

    quiet_library_bars()
    app()
