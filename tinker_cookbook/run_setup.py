"""How every training run is configured and starts: the settings every loop shares
(`RunConfig`), then backend, log folder, where to start (fresh, resumed, continued past an
earlier end, or nothing to do) and the training client."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

import chz

from tinker_cookbook.backend import BackendName, make_run_service_client
from tinker_cookbook.checkpoint_utils import check_renderer_name_for_checkpoint
from tinker_cookbook.cli_utils import LogdirBehavior, prepare_log_dir
from tinker_cookbook.clients import ClientFuture, ServiceClientLike, TrainingClientLike
from tinker_cookbook.utils.checkpoints import get_last_checkpoint
from tinker_cookbook.utils.lr_schedule import LRSchedule

logger = logging.getLogger(__name__)


def check_closed_sets(config: object) -> None:
    """Every `Literal` field holds one of its values, also when the config is built in Python
    (the command line already checks this while parsing)."""
    for name, field in chz.chz_fields(config).items():
        allowed = get_args(field.final_type) if get_origin(field.final_type) is Literal else ()
        if allowed and getattr(config, name) not in allowed:
            raise ValueError(
                f"{type(config).__name__}.{name}={getattr(config, name)!r} is not one of "
                f"{', '.join(map(repr, allowed))}"
            )


@chz.chz
class RunConfig:
    """The settings of a training run that every loop (supervised, RL, distillation) and every
    recipe's command line share, defined once: where the run lives and logs, what it trains
    from, the optimizer schedule, checkpoints, and the backend that serves it."""

    log_path: str
    model_name: str
    # The chat format, recorded with every checkpoint (default: the dataset builders').
    renderer_name: str | None = None
    load_checkpoint_path: str | None = None  # start from these weights
    load_optimizer_state: bool = False  # ...and that checkpoint's AdamW moments
    learning_rate: float = 1e-4
    lr_schedule: LRSchedule = "constant"
    lr_warmup_steps: int = 0
    lora_rank: int = 32
    seed: int = 0
    max_steps: int | None = None
    eval_every: int = 20  # 0: only at the end
    save_every: int = 20  # resumable checkpoint every N steps (0: only the final one)
    # An existing log_path: resume it (a finished run continues if it is now asked for more
    # steps), delete it, raise, or ask.
    behavior_if_log_dir_exists: LogdirBehavior = "resume"
    wandb_project: str | None = None
    wandb_name: str | None = None
    backend: BackendName = "auto"
    base_url: str | None = None  # a Tinker-compatible server, with backend=tinker
    # The local backend compiles its sampling steps, scoring and training passes
    # (`torch.compile`): faster steps after a one-time compile; see `LocalBackendConfig.compile`.
    local_compile: bool = False

    @chz.validate
    def _closed_sets(self) -> None:
        check_closed_sets(self)


def run_config_fields(config: RunConfig) -> dict[str, Any]:
    """The `RunConfig` part of any config built on it (a recipe's command line), to build a
    loop's config from."""
    return {name: getattr(config, name) for name in chz.chz_fields(RunConfig)}


def start_run(config: RunConfig) -> tuple[ServiceClientLike, dict | None]:
    """(service client, the last checkpoint of an earlier run in `log_path`, or None). The
    backend comes first: a missing key, unreachable server or unserved model fails before
    anything is written."""
    service = make_run_service_client(
        config.backend,
        config.base_url,
        config.log_path,
        config.model_name,
        config.lora_rank,
        local_compile=config.local_compile,
    )
    resuming = prepare_log_dir(config.log_path, config.behavior_if_log_dir_exists)
    last = get_last_checkpoint(config.log_path) if resuming else None
    return service, last


StartKind = Literal["fresh", "resume", "continue", "finished"]


@dataclass(frozen=True)
class StartPoint:
    """Where a run starts, decided from the earlier run's last checkpoint and the run's total."""

    kind: StartKind
    step: int  # the first step to train
    total: int  # the step to train to
    checkpoint: dict | None  # the checkpoint to load (None: a fresh client)


def checkpoint_step(record: dict) -> int:
    """The step a checkpoint record was saved at (`batch` in the Tinker cookbook's records)."""
    step = record.get("step", record.get("batch"))
    if step is None:
        raise ValueError(f"checkpoint record {record.get('name')!r} names no step: {record}")
    return int(step)


def decide_start(
    last: dict | None, total: int, log_path: str, more: str = "max_steps"
) -> StartPoint:
    """Fresh; resumed mid-run; continued from a finished run's end to a larger `total`; or
    nothing to do. Says on the console what it decided; `more` names the settings that ask
    for more steps."""
    if last is None:
        return StartPoint("fresh", 0, total, None)
    step = checkpoint_step(last)
    if last.get("name") != "final":
        if step >= total:
            print(f"{log_path}: the earlier run reached step {step}, at or past the {total} "
                  "steps asked for now; saving its weights as the final checkpoint")  # fmt: skip
            return StartPoint("resume", step, step, last)
        print(f"{log_path}: resuming at step {step} of {total}")
        return StartPoint("resume", step, total, last)
    if step < total:
        print(f"{log_path}: the earlier run finished at step {step}; continuing from its final "
              f"checkpoint to step {total} (more steps are asked for now; the learning-rate "
              f"schedule runs over the {total} steps, as if they had been asked for at first)")  # fmt: skip
        return StartPoint("continue", step, total, last)
    print(f"{log_path}: the run already finished at step {step} (asked for {total}); nothing "
          f"to do. Raise {more} to train further, or pass "
          "behavior_if_log_dir_exists=delete to start over")  # fmt: skip
    return StartPoint("finished", step, step, last)


def finished_before_loading(last: dict | None, max_steps: int | None) -> bool:
    """A finished run asked for no more steps than it did: decidable before any dataset (or
    teacher) loads, when `max_steps` fixes the total."""
    return (
        last is not None
        and last.get("name") == "final"
        and max_steps is not None
        and checkpoint_step(last) >= max_steps
    )


def training_client_future(
    config: RunConfig,
    service: ServiceClientLike,
    resume: dict | None,
    user_metadata: dict | None = None,
) -> ClientFuture[TrainingClientLike]:
    """A future of the run's training client (await it or call .result()): resumed with its
    optimizer, started from `load_checkpoint_path`, or a fresh LoRA client. `user_metadata`
    (e.g. renderer_name, recipe_name; None values dropped) goes with the run to the server;
    a checkpoint trained with another renderer than `user_metadata["renderer_name"]` warns."""
    meta = {k: str(v) for k, v in (user_metadata or {}).items() if v is not None}
    extra = {"user_metadata": meta} if meta else {}
    if resume is not None:
        logger.info("Resuming from %s at step %d", resume["state_path"], resume["step"])
        return service.create_training_client_from_state_with_optimizer(
            resume["state_path"], **extra
        )
    path = config.load_checkpoint_path
    if path:
        check_renderer_name_for_checkpoint(service, path, meta.get("renderer_name"))
    if path and config.load_optimizer_state:
        return service.create_training_client_from_state_with_optimizer(path, **extra)
    if path:
        return service.create_training_client_from_state(path, **extra)
    return service.create_lora_training_client(
        base_model=config.model_name, rank=config.lora_rank, seed=config.seed, **extra
    )
