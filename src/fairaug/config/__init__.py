"""Configuration: pydantic models of params.yaml and profiles."""

from fairaug.config.loader import load_params, render_params, resolve_profile, write_profile
from fairaug.config.models import DatasetConfig, Params, PrepareConfig, SplitConfig, TrackingConfig

__all__ = [
    "DatasetConfig",
    "Params",
    "PrepareConfig",
    "SplitConfig",
    "TrackingConfig",
    "load_params",
    "render_params",
    "resolve_profile",
    "write_profile",
]
