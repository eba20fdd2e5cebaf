import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fairaug.cli import app
from fairaug.config import Params, load_params, render_params, resolve_profile, write_profile
from fairaug.config.loader import merge_overlay
from fairaug.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_repo_params_are_the_rendered_tiny_profile():
    # params.yaml is generated: editing the models without re-rendering it would let them drift apart
    assert (REPO_ROOT / "params.yaml").read_text() == render_params(resolve_profile("tiny", REPO_ROOT))
    # tiny is the defaults plus a split its 1500-image fixtures allow (small test fixtures do not)
    defaults = Params()
    split = defaults.prepare.split.model_copy(update={"min_test_per_fst": 30})
    prepare = defaults.prepare.model_copy(update={"split": split})
    assert load_params(REPO_ROOT / "params.yaml") == defaults.model_copy(update={"prepare": prepare})


@pytest.mark.parametrize("profile", ["tiny", "ci"])
def test_every_profile_renders_and_round_trips(profile, tmp_path):
    params = resolve_profile(profile, REPO_ROOT)
    path = tmp_path / "params.yaml"
    path.write_text(render_params(params))
    assert load_params(path) == params
    assert params.profile == profile


def test_typo_names_the_key(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text((REPO_ROOT / "params.yaml").read_text().replace("  seed: 0", "  sead: 0"))
    with pytest.raises(ConfigError, match=r"params.yaml: prepare.sead: unknown key"):
        load_params(path)


def test_bad_value_names_the_key_and_reason(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text((REPO_ROOT / "params.yaml").read_text().replace("train: 0.7", "train: 0.9"))
    with pytest.raises(ConfigError, match=r"prepare.split: .*sum to 1, got 1.2"):
        load_params(path)


def test_invalid_yaml_names_the_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("prepare:\n  seed: [1\n")
    with pytest.raises(ConfigError, match=r"line \d+ not valid YAML"):
        load_params(path)


def test_merge_overlay_deep_and_null_deletes():
    base = {"a": {"b": 1, "c": 2}, "d": {"e": 3}, "f": 4}
    assert merge_overlay(base, {"a": {"c": 5}, "d": None}) == {"a": {"b": 1, "c": 5}, "f": 4}
    assert base["a"]["c"] == 2  # the base is not modified


def test_profile_switch_is_one_command(tmp_path):
    (tmp_path / "profiles").mkdir()
    for name in ("tiny", "ci"):
        (tmp_path / "profiles" / f"{name}.yaml").write_text((REPO_ROOT / "profiles" / f"{name}.yaml").read_text())
    runner = CliRunner()
    result = runner.invoke(app, ["profile", "ci", "--project", str(tmp_path)])
    assert result.exit_code == 0, result.output
    params = load_params(tmp_path / "params.yaml")
    assert params.profile == "ci"
    assert params.prepare.max_images == resolve_profile("ci", REPO_ROOT).prepare.max_images != Params().prepare.max_images
    listing = runner.invoke(app, ["profile", "--project", str(tmp_path)])
    assert "* ci" in listing.output and "  tiny" in listing.output


def test_unknown_profile_is_a_clear_error(tmp_path):
    (tmp_path / "profiles").mkdir()
    with pytest.raises(ConfigError, match="profile 'nope'"):
        write_profile("nope", tmp_path)
    result = CliRunner().invoke(app, ["profile", "nope", "--project", str(tmp_path)])
    assert result.exit_code == 2


@pytest.mark.parametrize("launcher", ["python", "accelerate launch --multi_gpu --num_processes 4",
                                      "accelerate launch --cpu --num_processes=2 --mixed_precision bf16"])
def test_documented_launchers_are_accepted(launcher):
    assert Params(compute={"launcher": launcher}).compute.launcher == launcher


@pytest.mark.parametrize(("launcher", "message"), [
    ("python -X dev;rm -rf ~", "only letters, digits"),
    ("accelerate launch --num_processes $(nproc)", "only letters, digits"),
    ("bash -c", "must start with 'python' or 'accelerate launch'"),
])
def test_launcher_is_validated_before_it_reaches_a_shell(launcher, message):
    from fairaug.config.loader import merge_overlay, params_from_dict

    with pytest.raises(ConfigError, match=rf"compute\.launcher: .*{re.escape(message)}"):
        params_from_dict(merge_overlay(Params().model_dump(mode="json"), {"compute": {"launcher": launcher}}))
