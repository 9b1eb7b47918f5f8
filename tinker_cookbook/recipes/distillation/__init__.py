"""Distillation recipes: off-policy SFT, on-policy (single and multi-teacher), multi-turn."""
