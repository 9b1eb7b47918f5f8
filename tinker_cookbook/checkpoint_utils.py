"""The cookbook's checkpoint API over `utils/checkpoints.py`: typed records of
`checkpoints.jsonl`, saving, and the renderer a checkpoint was trained with.

A run records its renderer in every checkpoint record (and, on hosted Tinker, in the training
run's `user_metadata`). Loading a checkpoint later resolves the renderer in this order: an
explicit `renderer_name`, the one recorded with the checkpoint, the model's recommended one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from tinker_cookbook.renderers import get_recommended_renderer_name
from tinker_cookbook.utils import checkpoints as _store
from tinker_cookbook.utils.checkpoints import CheckpointKind

CHECKPOINTS_BASE_NAME = _store.CHECKPOINTS_FILE
RENDERER_NAME_METADATA_KEY = _store.RENDERER_KEY
logger = logging.getLogger(__name__)
_MISSING = object()


@dataclass
class CheckpointRecord:
    """One line of `checkpoints.jsonl`. `batch` is the number of steps done (this project's
    loops write it as `step`); other keys (e.g. `renderer_name`) live in `extra`."""

    name: str
    batch: int | None = None
    epoch: int | None = None
    final: bool | None = None
    state_path: str | None = None
    sampler_path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        known = {f: getattr(self, f) for f in _KNOWN_KEYS}
        return {k: v for k, v in known.items() if v is not None} | self.extra

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CheckpointRecord:
        batch = d.get("batch", d.get("step"))
        extra = {k: v for k, v in d.items() if k not in _KNOWN_KEYS}
        return cls(**{k: d.get(k) for k in _KNOWN_KEYS if k != "batch"}, batch=batch, extra=extra)

    def has(self, key: str) -> bool:
        return getattr(self, key) is not None if key in _KNOWN_KEYS else key in self.extra

    def get(self, key: str, default: Any = _MISSING) -> Any:
        if key in _KNOWN_KEYS:
            return getattr(self, key)
        return self.extra.get(key, None if default is _MISSING else default)


_KNOWN_KEYS = tuple(f.name for f in dataclasses.fields(CheckpointRecord) if f.name != "extra")


def load_checkpoints_file(log_dir: str) -> list[CheckpointRecord]:
    """Every complete record of `log_dir/checkpoints.jsonl` (empty when there is none)."""
    return [CheckpointRecord.from_dict(d) for d in _store.load_checkpoints(log_dir)]


def get_last_checkpoint(log_dir: str, required_key: str = "state_path") -> CheckpointRecord | None:
    """The last record that has `required_key` (default: a resumable `state_path`)."""
    records = [r for r in load_checkpoints_file(log_dir) if r.has(required_key)]
    return records[-1] if records else None


def save_checkpoint(
    training_client: Any,
    name: str,
    log_path: str,
    loop_state: dict[str, Any],
    kind: CheckpointKind = "state",
    ttl_seconds: int | None = None,
) -> dict[str, str]:
    """Save and append a record; returns {"state_path"/"sampler_path": path}."""
    record = _store.save_checkpoint(training_client, name, log_path, loop_state, kind, ttl_seconds)
    return _paths(record)


async def save_checkpoint_async(
    training_client: Any,
    name: str,
    log_path: str,
    loop_state: dict[str, Any],
    kind: CheckpointKind = "state",
    ttl_seconds: int | None = None,
) -> dict[str, str]:
    """`save_checkpoint` for code running in an event loop."""
    record = await _store.save_checkpoint_async(
        training_client, name, log_path, loop_state, kind, ttl_seconds
    )
    return _paths(record)


def _paths(record: dict[str, Any]) -> dict[str, str]:
    return {k: record[k] for k in ("state_path", "sampler_path") if k in record}


def add_renderer_name_to_user_metadata(
    user_metadata: dict[str, str], renderer_name: str | None
) -> None:
    """Tag a training run with its renderer (hosted Tinker keeps it with the run)."""
    if renderer_name:
        user_metadata[RENDERER_NAME_METADATA_KEY] = renderer_name


def get_renderer_name_from_checkpoint(service_client: Any, checkpoint_path: str) -> str | None:
    """The renderer a checkpoint was trained with: its record in the run's checkpoints.jsonl
    (local checkpoints), else the training run's metadata on the server; None if unknown."""
    recorded = _store.renderer_name_recorded_for(checkpoint_path)
    if recorded is not None or "://" not in checkpoint_path or service_client is None:
        return recorded
    try:
        rest = service_client.create_rest_client()
        run = rest.get_training_run_by_tinker_path(checkpoint_path).result()
    except Exception as exc:  # noqa: BLE001 - metadata is a convenience, never fatal
        logger.warning("Could not read renderer metadata of %s: %s", checkpoint_path, exc)
        return None
    return (getattr(run, "user_metadata", None) or {}).get(RENDERER_NAME_METADATA_KEY)


async def get_renderer_name_from_checkpoint_async(
    service_client: Any, checkpoint_path: str
) -> str | None:
    return await asyncio.to_thread(
        get_renderer_name_from_checkpoint, service_client, checkpoint_path
    )


def resolve_renderer_name_from_checkpoint_or_default(
    *,
    model_name: str,
    explicit_renderer_name: str | None,
    load_checkpoint_path: str | None,
    base_url: str | None = None,
) -> str:
    """`explicit_renderer_name`, else the renderer recorded with `load_checkpoint_path`, else
    the model's recommended one; prints which and why."""
    if explicit_renderer_name is not None:
        name, why = explicit_renderer_name, "renderer_name as given"
    else:
        name = None
        if load_checkpoint_path is not None:
            service = _service_for(load_checkpoint_path, base_url)
            name = get_renderer_name_from_checkpoint(service, load_checkpoint_path)
        if name is not None:
            why = f"recorded with checkpoint {load_checkpoint_path}"
        else:
            name, why = get_recommended_renderer_name(model_name), f"recommended for {model_name}"
    print(f"renderer: {name} ({why})")
    return name


async def resolve_renderer_name_from_checkpoint_or_default_async(
    *,
    model_name: str,
    explicit_renderer_name: str | None,
    load_checkpoint_path: str | None,
    base_url: str | None = None,
) -> str:
    return await asyncio.to_thread(
        lambda: resolve_renderer_name_from_checkpoint_or_default(
            model_name=model_name,
            explicit_renderer_name=explicit_renderer_name,
            load_checkpoint_path=load_checkpoint_path,
            base_url=base_url,
        )
    )


def check_renderer_name_for_checkpoint(
    service_client: Any, checkpoint_path: str, expected_renderer_name: str | None
) -> None:
    """Warn when a checkpoint was trained with another renderer than the one about to be used."""
    if expected_renderer_name is None:
        return
    recorded = get_renderer_name_from_checkpoint(service_client, checkpoint_path)
    if recorded is not None and recorded != expected_renderer_name:
        logger.warning(
            "Renderer mismatch: checkpoint %s was trained with %r, this run uses %r",
            checkpoint_path,
            recorded,
            expected_renderer_name,
        )


async def check_renderer_name_for_checkpoint_async(
    service_client: Any, checkpoint_path: str, expected_renderer_name: str | None
) -> None:
    await asyncio.to_thread(
        check_renderer_name_for_checkpoint, service_client, checkpoint_path, expected_renderer_name
    )


def _service_for(checkpoint_path: str, base_url: str | None) -> Any:
    """A Tinker client for reading a `tinker://` checkpoint's run metadata, when one can exist."""
    if "://" not in checkpoint_path or not os.environ.get("TINKER_API_KEY"):
        return None
    try:
        import tinker

        return tinker.ServiceClient(base_url=base_url) if base_url else tinker.ServiceClient()
    except Exception as exc:  # noqa: BLE001
        logger.warning("No Tinker client to read %s's metadata: %s", checkpoint_path, exc)
        return None
