"""Pick the implementation behind the Tinker API: the in-process local backend or the SDK."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from tinker_cookbook.clients import ServiceClientLike

BackendName = Literal["auto", "local", "tinker"]


def resolve_backend(backend: BackendName) -> Literal["local", "tinker"]:
    """`auto` means tinker when TINKER_API_KEY is set, else local."""
    if backend == "auto":
        return "tinker" if os.environ.get("TINKER_API_KEY") else "local"
    if backend not in ("local", "tinker"):
        raise ValueError(f"backend={backend!r} is not one of 'auto', 'local', 'tinker'")
    return backend  # type: ignore[return-value]


def make_service_client(
    backend: BackendName = "auto", base_url: str | None = None, **local_options: Any
) -> ServiceClientLike:
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
    return make_tinker_service_client(base_url)


def make_tinker_service_client(
    base_url: str | None, base_model: str | None = None, rank: int | None = None
) -> ServiceClientLike:
    """The real SDK's client, wrapped so server differences are smoothed over
    (`tinker_compat`). Fails before any work when no API key is set or the server is not
    reachable."""
    import tinker

    from tinker_cookbook.tinker_compat import CompatServiceClient

    if not os.environ.get("TINKER_API_KEY"):
        raise ValueError(
            "backend=tinker needs TINKER_API_KEY (a `tml-...` key; any `tml-` value works for a "
            "self-hosted server such as SkyRL's). Use backend=local to train in this process instead."
        )
    if base_url:
        _check_reachable(base_url)
    client = tinker.ServiceClient(base_url=base_url) if base_url else tinker.ServiceClient()
    return CompatServiceClient(client, base_model=base_model, rank=rank)


def _check_reachable(base_url: str) -> None:
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(base_url.rstrip("/") + "/api/v1/healthz", timeout=10)
    except urllib.error.HTTPError:
        return  # the server answered; it just has no such route
    except (urllib.error.URLError, OSError) as exc:
        raise ConnectionError(
            f"base_url={base_url!r} is not reachable ({exc}); is the Tinker-compatible server running?"
        ) from exc


def make_run_service_client(
    backend: BackendName,
    base_url: str | None,
    log_path: str,
    base_model: str | None = None,
    rank: int | None = None,
    local_compile: bool = False,
) -> ServiceClientLike:
    """The service client for a training run; locally its checkpoints live in the run's
    `log_path/checkpoints`, next to the `checkpoints.jsonl` that lists them."""
    if resolve_backend(backend) == "local":
        return make_service_client(
            "local", checkpoint_dir=f"{log_path}/checkpoints", compile=local_compile
        )
    if local_compile:
        raise ValueError(
            "local_compile=True applies to the local backend only, and this run uses the "
            "tinker backend (TINKER_API_KEY is set, or backend=tinker); drop local_compile"
        )
    client = make_tinker_service_client(base_url, base_model=base_model, rank=rank)
    if base_model is not None:
        client.require_model(base_model)
    return client
