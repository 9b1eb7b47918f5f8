"""Distillation: on-policy (teacher KL into advantages, several teachers) and prompt datasets."""
