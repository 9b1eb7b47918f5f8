"""`ServiceClient` of the local backend: the SDK's factory methods, served in-process."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

from tinker_cookbook.local.checkpoints import load_optimizer_state, read_checkpoint_meta
from tinker_cookbook.local.config import LocalBackendConfig
from tinker_cookbook.local.engine import BatchLimits, LocalEngine
from tinker_cookbook.local.errors import LocalBackendError
from tinker_cookbook.local.futures import ClientFuture
from tinker_cookbook.local.lora import LoRAAdapter, target_suffixes
from tinker_cookbook.local.models import get_tokenizer, list_builtin_models, resolve_model_dir
from tinker_cookbook.local.paths import cache_dir
from tinker_cookbook.local.runtime import RUNTIMES, ModelRuntime, pick_device
from tinker_cookbook.local.sampling_client import SamplingClient
from tinker_cookbook.local.training_client import TrainingClient

_ENGINE: LocalEngine | None = None
_ENGINE_LOCK = threading.Lock()


def shared_engine() -> LocalEngine:
    """One compute thread per process: base weights (and their adapter slots) are shared, so
    two threads must never run forward passes on them at once. It has no settings of its own;
    each request carries its client's batch limits."""
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            _ENGINE = LocalEngine()
        return _ENGINE


class ServiceClient:
    """Drop-in for `tinker.ServiceClient`, running every model in this process."""

    def __init__(self, config: LocalBackendConfig | None = None, **_ignored: Any):
        self.config = config or LocalBackendConfig()
        pick_device(self.config.device)  # a device this machine lacks fails here, not mid-run
        self.limits = BatchLimits.of(self.config)  # how this client's requests are batched
        self.engine = shared_engine()
        self.checkpoint_root = Path(
            self.config.checkpoint_dir or cache_dir() / "checkpoints"
        ).expanduser()

    def __repr__(self) -> str:
        return f"<local ServiceClient checkpoints={self.checkpoint_root}>"

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def runtime(self, base_model: str) -> ModelRuntime:
        return RUNTIMES.get(base_model, self.config)

    def get_tokenizer(self, model_name: str):
        return get_tokenizer(model_name)

    def get_server_capabilities(self) -> dict[str, list[str]]:
        return {"supported_models": list_builtin_models()}

    def require_model(self, name: str) -> None:
        """Fail before any work when `name` is neither a built-in model, a local folder nor a
        Hugging Face model this machine can load (the error says which)."""
        resolve_model_dir(name)

    # ---- training clients ---------------------------------------------------------------
    def create_lora_training_client(
        self,
        base_model: str,
        rank: int = 32,
        seed: int | None = None,
        train_mlp: bool = True,
        train_attn: bool = True,
        train_unembed: bool = True,
        user_metadata: dict[str, str] | None = None,
    ) -> ClientFuture[TrainingClient]:
        resolve_model_dir(base_model)  # an unknown name fails here, before any work is queued
        suffixes = target_suffixes(train_attn, train_mlp, train_unembed)
        if rank < 1:
            raise LocalBackendError(f"rank must be >= 1, got {rank}")
        if not suffixes:
            raise LocalBackendError(
                "train_attn, train_mlp and train_unembed are all False: nothing to train"
            )

        def build() -> TrainingClient:
            runtime = self.runtime(base_model)
            adapter = LoRAAdapter.initialize(runtime.lora_modules, rank, suffixes, seed)
            return TrainingClient(self, runtime, adapter, _new_run_id())

        return ClientFuture(self.engine.run_op(build))

    def create_training_client_from_state(
        self, path: str, user_metadata: dict[str, str] | None = None
    ):
        """Weights from `path`, fresh optimizer state."""
        return self._client_from_state(path, with_optimizer=False)

    def create_training_client_from_state_with_optimizer(
        self, path: str, user_metadata: dict[str, str] | None = None
    ):
        """Weights and AdamW moments from `path`: training continues exactly where it stopped."""
        return self._client_from_state(path, with_optimizer=True)

    def _client_from_state(self, path: str, with_optimizer: bool) -> ClientFuture[TrainingClient]:
        meta = read_checkpoint_meta(path)
        if with_optimizer and "optimizer" not in meta:
            raise LocalBackendError(
                f"Checkpoint {path!r} holds no optimizer state (saved for sampling?)"
            )

        def build() -> TrainingClient:
            runtime = self.runtime(meta["base_model"])
            client = TrainingClient(
                self, runtime, self.load_adapter(path, runtime).trainable_copy(), _new_run_id()
            )
            if with_optimizer:
                load_optimizer_state(Path(path).expanduser(), client._adapter, client._optimizer)
            return client

        return ClientFuture(self.engine.run_op(build))

    def load_adapter(self, path: str, runtime: ModelRuntime) -> LoRAAdapter:
        meta = read_checkpoint_meta(path)
        if meta.get("base_model") not in (None, runtime.name):
            raise LocalBackendError(
                f"Checkpoint {path!r} was trained on {meta['base_model']!r}, not {runtime.name!r}"
            )
        return LoRAAdapter.load(Path(path).expanduser(), runtime.lora_modules)

    # ---- sampling clients ---------------------------------------------------------------
    def create_sampling_client(
        self, model_path: str | None = None, base_model: str | None = None, retry_config: Any = None
    ) -> ClientFuture[SamplingClient]:
        """`base_model` alone: the untouched base model. `model_path`: a saved adapter (its base
        model is read from the checkpoint unless `base_model` is given)."""
        if model_path is None and base_model is None:
            raise LocalBackendError("create_sampling_client needs model_path or base_model")
        if model_path is not None:
            base_model = base_model or read_checkpoint_meta(model_path).get("base_model")
            if base_model is None:
                raise LocalBackendError(
                    f"Checkpoint {model_path!r} does not name its base model; pass base_model="
                )
        resolve_model_dir(base_model)

        def build() -> SamplingClient:
            runtime = self.runtime(base_model)
            adapter = self.load_adapter(model_path, runtime) if model_path is not None else None
            return SamplingClient(self.engine, runtime, adapter, self.limits, model_path=model_path)

        return ClientFuture(self.engine.run_op(build))

    # ---- async spellings ----------------------------------------------------------------
    async def create_lora_training_client_async(self, *args, **kwargs) -> TrainingClient:
        return await self.create_lora_training_client(*args, **kwargs)

    async def create_training_client_from_state_async(self, path: str, **kwargs) -> TrainingClient:
        return await self.create_training_client_from_state(path, **kwargs)

    async def create_training_client_from_state_with_optimizer_async(
        self, path: str, **kwargs
    ) -> TrainingClient:
        return await self.create_training_client_from_state_with_optimizer(path, **kwargs)

    async def create_sampling_client_async(self, *args, **kwargs) -> SamplingClient:
        return await self.create_sampling_client(*args, **kwargs)


def _new_run_id() -> str:
    return f"local-{uuid.uuid4().hex[:12]}"
