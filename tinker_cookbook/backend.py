"""Pick the implementation behind the Tinker API: the in-process local backend or the SDK."""

from __future__ import annotations

import os
from typing import Any, Literal

BackendName = Literal["auto", "local", "tinker"]


def resolve_backend(backend: str) -> Literal["local", "tinker"]:
    """`auto` means tinker when TINKER_API_KEY is set, else local."""
    if backend == "auto":
        return "tinker" if os.environ.get("TINKER_API_KEY") else "local"
    if backend not in ("local", "tinker"):
        raise ValueError(f"backend={backend!r} is not one of 'auto', 'local', 'tinker'")
    return backend  # type: ignore[return-value]


def make_service_client(
    backend: str = "auto", base_url: str | None = None, **local_options: Any
) -> Any:
    """A ServiceClient with the Tinker SDK's methods.

    `local`: in-process on torch (options go to `LocalBackendConfig`). `tinker`: the real SDK's
    client, for hosted Tinker or any Tinker-compatible server at `base_url`.
    """
    chosen = resolve_backend(backend)
    if chosen == "local":
        from tinker_cookbook.local import LocalBackendConfig, ServiceClient

        return ServiceClient(LocalBackendConfig(**local_options))
    if local_options:
        raise ValueError(f"options {sorted(local_options)} only apply to backend='local'")
    import tinker

    return tinker.ServiceClient(base_url=base_url) if base_url else tinker.ServiceClient()


def make_run_service_client(backend: str, base_url: str | None, log_path: str) -> Any:
    """The service client for a training run; locally its checkpoints live in the run's
    `log_path/checkpoints`, next to the `checkpoints.jsonl` that lists them."""
    if resolve_backend(backend) == "local":
        return make_service_client("local", checkpoint_dir=f"{log_path}/checkpoints")
    return make_service_client(backend, base_url)
