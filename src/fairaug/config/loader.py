"""Load params.yaml into `Params`, and write params.yaml from a profile.

A profile is an overlay (profiles/<name>.yaml) on the model defaults. The `tiny` profile is the defaults
plus what only its fixture data allows (30 test images per FST); tests build on the bare defaults.
`fairaug profile NAME` writes the merged, fully explicit params.yaml, so DVC sees every value and
`dvc exp run -S key=value` works on top of any profile.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML, CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from fairaug.config.models import Params
from fairaug.errors import ConfigError
from fairaug.io import atomic_write_text

PARAMS_FILE = "params.yaml"
PROFILES_DIR = "profiles"


def _read_yaml(path: Path) -> Any:
    try:
        return YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{where} not valid YAML: {getattr(err, 'problem', err)}") from None


def _format_validation_error(source: Path, err: ValidationError) -> str:
    problems = []
    for item in err.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        reason = "unknown key" if item["type"] == "extra_forbidden" else item["msg"]
        problems.append(f"{key}: {reason}")
    return f"{source}: " + "; ".join(problems)


def params_from_dict(data: Any, source: Path | str = PARAMS_FILE) -> Params:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of sections, got {type(data).__name__}")
    try:
        return Params.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(Path(source), err)) from None


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    """Parse and validate params.yaml; a typo or bad value is a ConfigError naming the key."""
    path = Path(path)
    return params_from_dict(_read_yaml(path), path)


def merge_overlay(base: dict, overlay: dict) -> dict:
    """Deep-merge ``overlay`` into ``base``; a null in the overlay deletes the key."""
    merged = dict(base)
    for key, value in overlay.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_overlay(merged[key], value)
        else:
            merged[key] = value
    return merged


def available_profiles(project_root: Path) -> list[str]:
    return sorted(p.stem for p in (project_root / PROFILES_DIR).glob("*.yaml"))


def resolve_profile(name: str, project_root: Path) -> Params:
    overlay_path = project_root / PROFILES_DIR / f"{name}.yaml"
    if not overlay_path.exists():
        known = ", ".join(available_profiles(project_root)) or "none"
        raise ConfigError(f"profile '{name}': no {overlay_path} (profiles: {known})")
    overlay = _read_yaml(overlay_path) or {}
    if not isinstance(overlay, dict):
        raise ConfigError(f"{overlay_path}: expected a mapping")
    merged = merge_overlay(Params().model_dump(mode="json"), {**overlay, "profile": name})
    return params_from_dict(merged, overlay_path)


def _commented(model: BaseModel, comments: bool = True) -> CommentedMap:
    """The model as a YAML mapping whose keys carry their field descriptions as comments (in a
    mapping of models, the first one only: the rest would repeat them)."""
    node = CommentedMap()
    node.fa.set_block_style()
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            node[name] = _commented(value, comments)
        elif isinstance(value, dict) and value and all(isinstance(v, BaseModel) for v in value.values()):
            node[name] = CommentedMap((key, _commented(item, comments and i == 0))
                                      for i, (key, item) in enumerate(value.items()))  # fmt: skip
            node[name].fa.set_block_style()
        elif isinstance(value, list):
            node[name] = CommentedSeq(value)
            node[name].fa.set_flow_style()
        else:
            node[name] = value
        if field.description and comments:
            node.yaml_add_eol_comment(field.description, name)
    return node


def render_params(params: Params) -> str:
    yaml = YAML()
    yaml.width = 120
    # Write null explicitly: an empty value reads as "forgotten" to people editing the file.
    yaml.representer.add_representer(
        type(None), lambda rep, _: rep.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    stream = io.StringIO()
    stream.write(
        f"# Written by `fairaug profile {params.profile}` from profiles/{params.profile}.yaml.\n"
        "# Edit freely or override per experiment: dvc exp run -S prepare.seed=1\n"
    )
    yaml.dump(_commented(params), stream)
    return stream.getvalue()


def write_profile(name: str, project_root: Path) -> Path:
    params = resolve_profile(name, project_root)
    return atomic_write_text(project_root / PARAMS_FILE, render_params(params))
