"""Stable Diffusion base models, prompts and LoRA training.

Kept apart like diffusers: model construction (base.py), data and prompts (data.py, prompts.py),
the training objective (loss.py), the training loops (pretrain.py, lora.py), the base_model and
train_lora stages (stage.py), and the names and checks of the files they write (files.py: no torch,
for the stages that only read them).
"""
