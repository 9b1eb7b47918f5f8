"""Helpers the recipes share."""

from __future__ import annotations

import hashlib
from typing import TypeVar

import chz

from tinker_cookbook import checkpoint_utils
from tinker_cookbook.cli_utils import LogdirBehavior

T = TypeVar("T")


def default_log_path(recipe: str, model_name: str, **parts: object) -> str:
    """A path fixed by the command's settings, so the same command finds (and resumes) its run."""
    tag = "-".join(f"{k}{v}" for k, v in parts.items())
    return f"/tmp/tinker-examples/distillation/{recipe}/{model_name.replace('/', '_')}-{tag}"


def resolve_renderer(cli: object) -> str:
    """The renderer a recipe's run uses, said on the console: `renderer_name` as given, else the
    one recorded with `load_checkpoint_path`, else the model's recommended one."""
    return checkpoint_utils.resolve_renderer_name_from_checkpoint_or_default(
        model_name=cli.model_name,  # type: ignore[attr-defined]
        explicit_renderer_name=cli.renderer_name,  # type: ignore[attr-defined]
        load_checkpoint_path=cli.load_checkpoint_path,  # type: ignore[attr-defined]
        base_url=cli.base_url,  # type: ignore[attr-defined]
    )


def settings_tag(*parts: object) -> str:
    """A short stable name for a set of settings (their reprs hashed): a run folder named by it is
    found again by the same settings and never reused by changed ones."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:10]


def config_from_cli[T](config_class: type[T], cli: object, **overrides: object) -> T:
    """`config_class` with every field the CLI config also has (same name) copied over, then
    `overrides`: recipes only spell out what differs from their command line."""
    shared = {
        name: getattr(cli, name) for name in chz.chz_fields(config_class) if hasattr(cli, name)
    }
    return config_class(**{**shared, **overrides})


@chz.chz
class RunArgs:
    """Command-line settings every recipe shares: where the run lives, how it logs, which
    backend serves it."""

    log_path: str | None = None  # default: fixed by the command's settings (reruns resume)
    # An existing log_path: resume it (the default here), delete it, raise, or ask.
    behavior_if_log_dir_exists: LogdirBehavior = "resume"
    load_checkpoint_path: str | None = None
    # Continue the checkpoint's AdamW moments too: no large first steps from a fresh optimizer.
    load_optimizer_state: bool = False
    max_steps: int | None = None
    seed: int = 0
    wandb_project: str | None = None
    wandb_name: str | None = None
    backend: str = "auto"  # auto | local | tinker
    base_url: str | None = None  # a Tinker-compatible server, with backend=tinker
