"""How every training loop starts: backend first, then the log folder, then the client
(resumed, loaded from a checkpoint, or new)."""

from __future__ import annotations

import logging
from typing import Any

from tinker_cookbook.backend import make_run_service_client
from tinker_cookbook.cli_utils import prepare_log_dir
from tinker_cookbook.utils.checkpoints import get_last_checkpoint

logger = logging.getLogger(__name__)


def start_run(config: Any) -> tuple[Any, dict | None]:
    """(service client, last checkpoint to resume from or None). The backend comes first: a
    missing key, unreachable server or unserved model fails before anything is written."""
    service = make_run_service_client(
        config.backend, config.base_url, config.log_path, config.model_name, config.lora_rank
    )
    resuming = prepare_log_dir(config.log_path, config.behavior_if_log_dir_exists)
    last = get_last_checkpoint(config.log_path) if resuming else None
    if last is not None and last.get("name") == "final":
        logger.info("%s already finished; nothing to do", config.log_path)
    return service, last


def is_finished(last: dict | None) -> bool:
    return last is not None and last.get("name") == "final"


def training_client_future(
    config: Any, service: Any, resume: dict | None, user_metadata: dict | None = None
) -> Any:
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
        from tinker_cookbook.checkpoint_utils import check_renderer_name_for_checkpoint

        check_renderer_name_for_checkpoint(service, path, meta.get("renderer_name"))
    if path and config.load_optimizer_state:
        return service.create_training_client_from_state_with_optimizer(path, **extra)
    if path:
        return service.create_training_client_from_state(path, **extra)
    return service.create_lora_training_client(
        base_model=config.model_name, rank=config.lora_rank, seed=config.seed, **extra
    )
