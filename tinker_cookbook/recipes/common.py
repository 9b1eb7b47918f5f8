"""Helpers the recipes share."""

from __future__ import annotations

import hashlib
from typing import TypeVar

import chz

from tinker_cookbook import checkpoint_utils
from tinker_cookbook.rl.train import RLLossFn
from tinker_cookbook.run_setup import RunConfig, run_config_fields

T = TypeVar("T")


def default_log_path(recipe: str, model_name: str, **parts: object) -> str:
    """A path fixed by the command's settings, so the same command finds (and resumes) its run."""
    tag = "-".join(f"{k}{v}" for k, v in parts.items())
    return f"/tmp/tinker-examples/distillation/{recipe}/{model_name.replace('/', '_')}-{tag}"


def resolve_renderer(cli: RunConfig) -> str:
    """The renderer a recipe's run uses, said on the console: `renderer_name` as given, else the
    one recorded with `load_checkpoint_path`, else the model's recommended one."""
    return checkpoint_utils.resolve_renderer_name_from_checkpoint_or_default(
        model_name=cli.model_name,
        explicit_renderer_name=cli.renderer_name,
        load_checkpoint_path=cli.load_checkpoint_path,
        base_url=cli.base_url,
    )


def settings_tag(*parts: object) -> str:
    """A short stable name for a set of settings (their reprs hashed): a run folder named by it is
    found again by the same settings and never reused by changed ones."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:10]


def fields_from_cli[T](config_class: type[T], cli: object, **overrides: object) -> T:
    """`config_class` (a dataset builder) with every field the command line also has, by name,
    then `overrides`. Only for builders whose fields are the command's own flags (the Harbor
    task settings); loop configs are built from `run_config_fields` and named settings."""
    shared = {
        name: getattr(cli, name) for name in chz.chz_fields(config_class) if hasattr(cli, name)
    }
    return config_class(**{**shared, **overrides})


@chz.chz
class RunArgs(RunConfig):
    """The run settings every recipe's command line takes (`RunConfig`'s, defined once), with
    `log_path` optional: by default it is fixed by the command's settings, so a rerun of the
    same command finds its run and resumes or continues it."""

    log_path: str | None = None  # type: ignore[assignment]


def loop_run_fields(cli: RunArgs, log_path: str, renderer_name: str) -> dict[str, object]:
    """The `RunConfig` part of a loop's config: the command's run settings, with the log path
    and renderer the recipe resolved."""
    return run_config_fields(cli) | {"log_path": log_path, "renderer_name": renderer_name}


@chz.chz
class RLUpdateArgs(RunArgs):
    """How an on-policy recipe samples and updates: the reply budget and temperature, the loss
    and its settings, optimizer steps per batch, and the post-step KL log."""

    max_tokens: int = 4096
    temperature: float = 1.0
    num_substeps: int = 1  # optimizer steps per batch
    loss_fn: RLLossFn = "importance_sampling"
    loss_fn_config: dict[str, float] | None = None  # e.g. loss_fn_config.beta=0.05 for dro
    compute_post_kl: bool = False  # log kl_pre_post_v1/v2: how far each step moved the policy


def rl_update_fields(cli: RLUpdateArgs) -> dict[str, object]:
    """The `RLUpdateArgs` part of an on-policy loop's config."""
    return {name: getattr(cli, name) for name in chz.chz_fields(RLUpdateArgs) if name not in
            chz.chz_fields(RunArgs)}  # fmt: skip
