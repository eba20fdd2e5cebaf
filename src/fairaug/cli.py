"""The `fairaug` command line."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console

from fairaug.errors import FairaugError

F = TypeVar("F", bound=Callable)
USER_ERROR_EXIT_CODE = 2

app = typer.Typer(
    help="fairaug: fair synthetic medical-image augmentation (DVC + MLflow + diffusers).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(stderr=True)


def exit_on_user_error(func: F) -> F:
    """Turn a FairaugError into one line on stderr and exit code 2: bad input is not a crash."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except FairaugError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(USER_ERROR_EXIT_CODE) from None

    return wrapper  # type: ignore[return-value]


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
) -> None:
    """Write a procedurally generated data set in the real layout, with the true FST."""
    from fairaug.data.fixtures import write_derm_fixture, write_wound_fixture

    if kind is FixtureKind.derm:
        write_derm_fixture(out, n=n, seed=seed, size=size)
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

    allowed = [label.strip() for label in labels.split(",")] if labels else None
    validated = validate_dataset(root, format.value, allowed, min_image_size)
    records = validated.records
    warnings = [c for c in validated.checks if not c.success]
    console.print(
        f"[green]valid[/green]: {root} ({format.value}): {len(records)} images, "
        f"{records['group_id'].nunique()} groups, labels {dict(records['label'].value_counts().sort_index())}"
    )
    for check in warnings:
        console.print(f"[yellow]warning[/yellow]: {check.message} ({check.unexpected_count} images)")


@app.command()
@exit_on_user_error
def profile(
    name: Annotated[str | None, typer.Argument(help="profile to switch to (profiles/<name>.yaml)")] = None,
    project: Annotated[Path, typer.Option(help="project root")] = Path("."),
) -> None:
    """Switch params.yaml to a profile (DVC then sees the changed params); without NAME, list profiles."""
    from fairaug.config.loader import available_profiles, load_params, write_profile

    if name is None:
        current = load_params(project / "params.yaml").profile if (project / "params.yaml").exists() else None
        for known in available_profiles(project):
            print(f"{'*' if known == current else ' '} {known}")
        return
    path = write_profile(name, project)
    console.print(f"{path}: profile [bold]{name}[/bold]; run `dvc repro` (or `make demo`) to apply it")


@app.command("fairness-report")
@exit_on_user_error
def fairness_report_command(
    predictions: Annotated[
        Path, typer.Argument(help="label, fst and a score_<label> column per class (.parquet or .csv)")
    ],
    out: Annotated[Path, typer.Option(help="report JSON to write (fairness.json names)")],
    ordinal: Annotated[bool, typer.Option(help="classes are ordered (wound phases): quadratic kappa")] = False,
    malignant: Annotated[
        str | None, typer.Option(help="comma-separated malignant classes, e.g. mel,bcc,akiec: adds auroc_malignant")
    ] = None,
    min_group_size: Annotated[int, typer.Option(min=1, help="FST groups with fewer rows are flagged small")] = 5,
    n_bootstrap: Annotated[int, typer.Option(min=0, help="bootstrap resamples for the intervals (0: none)")] = 200,
    seed: Annotated[int, typer.Option(help="seed of the bootstrap resamples")] = 0,
) -> None:
    """Per-FST metrics, gaps and bootstrap intervals of any prediction table, as in fairness.json."""
    from fairaug.fairness.metrics import fairness_report, prediction_classes, read_predictions
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


class QualityExtractor(str, Enum):
    inception = "inception"
    domain = "domain"
    pixels = "pixels"


@app.command()
@exit_on_user_error
def quality(
    real_dir: Annotated[Path, typer.Argument(help="folder of real images (png/jpg, recursive)")],
    synth_dir: Annotated[Path, typer.Argument(help="folder of synthetic images (png/jpg, recursive)")],
    out: Annotated[Path, typer.Option(help="report JSON to write (quality.json names, with .reason strings)")],
    extractor: Annotated[
        list[QualityExtractor] | None,
        typer.Option(help="feature extractor, repeatable (default: inception, domain, pixels)"),
    ] = None,
    classifier: Annotated[
        Path | None, typer.Option(help="real-only classifier (model.safetensors) for the domain extractor")
    ] = None,
    inception_weights: Annotated[
        Path | None, typer.Option(help="torch-fidelity Inception-v3 FID weights file (else torch hub's cache)")
    ] = None,
    n_bootstrap: Annotated[int, typer.Option(min=0, help="bootstrap resamples for the intervals (0: none)")] = 100,
    cache_dir: Annotated[
        Path | None, typer.Option(help="cache of the real folder's features (default: none)")
    ] = None,
) -> None:
    """Quality metrics of any two image folders (FID, KID, IS, SSIM, LPIPS, ...), as in quality.json."""
    from fairaug.config.quality import EvaluateQualityConfig
    from fairaug.io import write_json
    from fairaug.metrics.extractors import build_extractors
    from fairaug.metrics.features import FeatureCache, folder_set
    from fairaug.metrics.perceptual import load_lpips
    from fairaug.metrics.report import quality_report

    for name, path in (("--classifier", classifier), ("--inception-weights", inception_weights)):
        if path is not None and not path.is_file():
            raise FairaugError(f"{name}: file not found: {path}")
    names = [e.value for e in extractor] if extractor else None
    config = EvaluateQualityConfig(**({"extractors": names} if names else {}), n_bootstrap=n_bootstrap,
                                   cache_dir=str(cache_dir) if cache_dir else None)  # fmt: skip
    real, synthetic = folder_set(real_dir), folder_set(synth_dir)
    extractors = build_extractors(config.extractors, classifier=classifier, inception_weights=inception_weights)
    report = quality_report(real, synthetic, extractors, config, FeatureCache(config.cache_dir),
                            load_lpips(config.lpips_net))  # fmt: skip
    write_json(out, report)
    console.print(f"wrote {out}: {len(synthetic.rows)} synthetic vs {len(real.rows)} real images")

def main() -> None:
    app()
