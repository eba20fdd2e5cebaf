"""Stable Diffusion base models, prompts and LoRA training.

Kept apart like diffusers: model construction (base.py), data and prompts (data.py, prompts.py),
the training objective (loss.py), and the training loops (pretrain.py, lora.py).
"""
