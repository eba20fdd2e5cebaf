"""Downstream classifier and per-FST fairness metrics (classification quality and gaps across skin types)."""
