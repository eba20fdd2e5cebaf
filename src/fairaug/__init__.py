"""fairaug: fair synthetic medical-image augmentation with Stable Diffusion LoRA, DVC and MLflow."""

__version__ = "0.1.0"
