"""Stable Diffusion base models, prompts and LoRA training.

Kept apart like diffusers: model construction (base.py), data and prompts (data.py, prompts.py),
the training objective (loss.py), the training loops (pretrain.py, lora.py), and the base_model and
train_lora stages (stage.py).
"""
