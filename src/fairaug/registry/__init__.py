"""The MLflow model registry: LoRA models, promotion gates and decisions."""
