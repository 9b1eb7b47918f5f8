"""What the training loops need of a backend's clients, as Protocols: the local backend's
clients and the `tinker` SDK's (through `tinker_compat`) both satisfy them, so the loops are
typed against the Tinker API rather than against either implementation."""

from __future__ import annotations

from collections.abc import Awaitable, Generator, Mapping
from typing import Any, Protocol, TypeVar

from tinker import types

T_co = TypeVar("T_co", covariant=True)


class ClientFuture(Protocol[T_co]):
    """A call's result: awaited in async code or `.result()`-ed in sync code."""

    def result(self, timeout: float | None = None) -> T_co: ...

    def __await__(self) -> Generator[Any, None, T_co]: ...


class SamplingClientLike(Protocol):
    def sample(
        self,
        prompt: types.ModelInput,
        num_samples: int,
        sampling_params: types.SamplingParams,
        include_prompt_logprobs: bool = False,
        topk_prompt_logprobs: int = 0,
    ) -> ClientFuture[types.SampleResponse]: ...

    async def sample_async(
        self,
        prompt: types.ModelInput,
        num_samples: int,
        sampling_params: types.SamplingParams,
        include_prompt_logprobs: bool = False,
        topk_prompt_logprobs: int = 0,
    ) -> types.SampleResponse: ...

    def compute_logprobs(self, prompt: types.ModelInput) -> ClientFuture[list[float | None]]: ...


class TrainingClientLike(Protocol):
    def forward(
        self,
        data: list[types.Datum],
        loss_fn: str,
        loss_fn_config: Mapping[str, float] | None = None,
    ) -> ClientFuture[types.ForwardBackwardOutput]: ...

    def forward_backward(
        self,
        data: list[types.Datum],
        loss_fn: str,
        loss_fn_config: Mapping[str, float] | None = None,
    ) -> ClientFuture[types.ForwardBackwardOutput]: ...

    def optim_step(
        self, optim_params: types.AdamParams
    ) -> ClientFuture[types.OptimStepResponse]: ...

    def save_state(
        self, name: str, ttl_seconds: int | None = None
    ) -> ClientFuture[types.SaveWeightsResponse]: ...

    def save_weights_for_sampler(
        self, name: str, ttl_seconds: int | None = None
    ) -> ClientFuture[types.SaveWeightsForSamplerResponse]: ...

    def save_weights_and_get_sampling_client(
        self, name: str | None = None
    ) -> Awaitable[SamplingClientLike]: ...


class ServiceClientLike(Protocol):
    def create_lora_training_client(
        self, base_model: str, rank: int = 32, seed: int | None = None, **kwargs: Any
    ) -> ClientFuture[TrainingClientLike]: ...

    def create_training_client_from_state(
        self, path: str, **kwargs: Any
    ) -> ClientFuture[TrainingClientLike]: ...

    def create_training_client_from_state_with_optimizer(
        self, path: str, **kwargs: Any
    ) -> ClientFuture[TrainingClientLike]: ...

    def create_sampling_client(
        self, model_path: str | None = None, base_model: str | None = None, **kwargs: Any
    ) -> ClientFuture[SamplingClientLike]: ...

    def require_model(self, name: str) -> None:
        """Fail before any work when the backend cannot serve model `name`."""
        ...
