"""Helpers the recipes share."""

from __future__ import annotations


def default_log_path(recipe: str, model_name: str, **parts: object) -> str:
    """A path fixed by the command's settings, so the same command finds (and resumes) its run."""
    tag = "-".join(f"{k}{v}" for k, v in parts.items())
    return f"/tmp/tinker-examples/distillation/{recipe}/{model_name.replace('/', '_')}-{tag}"
