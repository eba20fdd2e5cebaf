"""`fairaug quality REAL_DIR SYNTH_DIR`: a folder against itself, against a colour-shifted copy, and
the Inception metrics reported unavailable (no weights offline) with the reason."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from fairaug.cli import app
from fairaug.data.fixtures import write_derm_fixture

N = 48


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path]:
    """Fixture JPEGs, and the same images with red raised and blue lowered (PNG, flat folder)."""
    root = tmp_path_factory.mktemp("quality-cli")
    real = write_derm_fixture(root / "real", n=N, seed=3)
    shifted = root / "shifted"
    shifted.mkdir()
    for path in sorted(real.rglob("*.jpg")):
        rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
        rgb[..., 0] += 60
        rgb[..., 2] -= 40
        Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(shifted / f"{path.stem}.png")
    return real, shifted


def quality(tmp_path: Path, real: Path, synthetic: Path, *options: str) -> dict:
    out = tmp_path / f"{synthetic.name}.json"
    result = CliRunner().invoke(app, ["quality", str(real), str(synthetic), "--out", str(out), "--n-bootstrap", "20",
                                      *options])  # fmt: skip
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())


def test_a_folder_against_itself_and_a_colour_shifted_copy(folders, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no Inception / LPIPS weights
    real, shifted = folders
    same = quality(tmp_path, real, real)
    other = quality(tmp_path, real, shifted)
    assert same["quality/ssim"] == pytest.approx(1.0) and same["quality/n_synthetic"] == N
    assert abs(same["quality/fid.pixels"]) < 1e-3 < 20 < other["quality/fid.pixels"]
    # unbiased KID of a set with itself is O(1/n) (k(x, x) pairs count only across the sets), not 0
    assert abs(same["quality/kid.pixels"]) < other["quality/kid.pixels"] / 3
    assert other["quality/kid.pixels.ci_low"] > 0 and other["quality/ssim"] < 0.9
    for key in ("fid.inception", "kid.inception", "is.inception", "lpips.alex"):
        assert f"quality/{key}" not in same  # standard JSON: no NaN token, the reason beside it
        assert same[f"quality/{key}.reason"].startswith("unavailable: ")
    assert "Inception-v3 FID weights not found" in same["quality/fid.inception.reason"]
    assert "evaluator classifier not found" in same["quality/fid.evaluator.reason"]


def test_extractor_choice_and_classifier(folders, tmp_path):
    from fairaug.fairness.model import build_classifier, save_classifier

    real, shifted = folders
    model = save_classifier(build_classifier("small_cnn", ["mel", "nv"], 32), tmp_path / "model.safetensors")
    report = quality(tmp_path, real, shifted, "--extractor", "evaluator", "--evaluator", str(model))
    assert report["quality/fid.evaluator"] > 0 and 0 <= report["quality/realness_auc.evaluator"] <= 1
    assert "no requested label" in report["quality/label_confidence.evaluator.reason"]  # a folder has none
    assert "no requested label" in report["quality/label_confidence_ratio.evaluator.reason"]
    assert not any(".pixels" in key or ".inception" in key for key in report)


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    result = CliRunner().invoke(app, ["quality", str(tmp_path / "missing"), str(tmp_path), "--out", "r.json"])
    assert result.exit_code == 2 and "not a directory" in result.output
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(app, ["quality", str(tmp_path / "empty"), str(tmp_path / "empty"), "--out", "r.json"])
    assert result.exit_code == 2 and "no images" in result.output
    result = CliRunner().invoke(app, ["quality", str(tmp_path), str(tmp_path), "--out", "r.json",
                                      "--inception-weights", str(tmp_path / "none.pth")])  # fmt: skip
    assert result.exit_code == 2 and "--inception-weights: file not found" in result.output


def test_every_format_validate_accepts_is_read_by_quality(folders, tmp_path):
    """One list of image formats for every command: a folder of BMP and TIFF copies is measured."""
    from fairaug.images import IMAGE_SUFFIXES

    real, _ = folders
    converted = tmp_path / "bmp-tiff"
    converted.mkdir()
    for i, path in enumerate(sorted(real.rglob("*.jpg"))):
        Image.open(path).save(converted / f"{path.stem}{'.bmp' if i % 2 else '.TIFF'}")
    assert {".bmp", ".tif", ".tiff", ".webp"} <= set(IMAGE_SUFFIXES)
    report = quality(tmp_path, real, converted, "--extractor", "pixels")
    assert report["quality/n_synthetic"] == N and report["quality/ssim"] > 0.9  # lossless copies of the JPEGs


def test_a_decompression_bomb_is_one_line_and_exit_2(folders, tmp_path, monkeypatch):
    real, _ = folders
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # every 64x64 fixture image is over twice this
    result = CliRunner().invoke(app, ["quality", str(real), str(real), "--out", str(tmp_path / "r.json"),
                                      "--extractor", "pixels"])  # fmt: skip
    assert result.exit_code == 2 and "decompression bomb" in result.output and "Traceback" not in result.output
