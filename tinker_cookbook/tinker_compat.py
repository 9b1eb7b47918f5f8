"""Where a Tinker-compatible server differs from what the tinker SDK documents, the project
copes here, in one place, so the recipes never see the difference.

Differences handled (seen on self-hosted servers such as SkyRL's `skyrl.tinker.api`):
- `compute_logprobs` returns one value fewer than the prompt, without the leading None:
  the None is put back, so entry i is still the logprob of prompt token i.
- `forward` / `forward_backward` return no `loss:sum` metric: it is computed from the
  per-datum outputs (`elementwise_loss`, or -sum(weights * logprobs) for cross_entropy).
- `create_training_client_from_state[_with_optimizer]` is refused: a LoRA client of the run's
  base model and rank is created and the state is loaded into it as its first request.
Servers that behave as documented pass through unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future as ConcurrentFuture
from typing import Any, TypeVar

import numpy as np
from tinker import APIFuture, types

logger = logging.getLogger(__name__)
T = TypeVar("T")
U = TypeVar("U")


class MappedFuture(APIFuture[U]):
    """An SDK future whose result passes through `fn` (await, .result(), .result_async())."""

    def __init__(self, inner: Any, fn: Callable[[Any], U]):
        self._inner, self._fn = inner, fn

    def result(self, timeout: float | None = None) -> U:
        return self._fn(self._inner.result(timeout))

    async def result_async(self, timeout: float | None = None) -> U:
        inner = (
            self._inner.result_async(timeout)
            if hasattr(self._inner, "result_async")
            else self._inner
        )
        return self._fn(await inner)

    def future(self) -> ConcurrentFuture[U]:
        out: ConcurrentFuture[U] = ConcurrentFuture()

        def done(f: ConcurrentFuture) -> None:
            try:
                out.set_result(self._fn(f.result()))
            except BaseException as exc:  # noqa: BLE001
                out.set_exception(exc)

        self._inner.future().add_done_callback(done)
        return out


def with_loss_sum(
    data: list[types.Datum], loss_fn: str
) -> Callable[[types.ForwardBackwardOutput], types.ForwardBackwardOutput]:
    def fill(out: types.ForwardBackwardOutput) -> types.ForwardBackwardOutput:
        if "loss:sum" in out.metrics:
            return out
        total = 0.0
        for datum, outputs in zip(data, out.loss_fn_outputs, strict=True):
            if "elementwise_loss" in outputs:
                total += float(outputs["elementwise_loss"].to_numpy().sum())
            elif loss_fn == "cross_entropy":
                weights = datum.loss_fn_inputs.get("weights")
                lp = outputs["logprobs"].to_numpy()
                w = weights.to_numpy() if weights is not None else np.ones_like(lp)
                total += float(-(w * lp).sum())
            else:
                return out  # nothing to compute it from; leave the metrics as they came
        return types.ForwardBackwardOutput(
            loss_fn_output_type=out.loss_fn_output_type,
            loss_fn_outputs=out.loss_fn_outputs,
            metrics={**out.metrics, "loss:sum": total},
        )

    return fill


class CompatSamplingClient:
    def __init__(self, inner: Any):
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def compute_logprobs(self, prompt: types.ModelInput) -> APIFuture[list[float | None]]:
        n = prompt.length

        def align(values: list[float | None]) -> list[float | None]:
            values = list(values)
            if len(values) == n - 1:  # no leading None
                return [None, *values]
            return values

        return MappedFuture(self._inner.compute_logprobs(prompt), align)


class CompatTrainingClient:
    def __init__(self, inner: Any):
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def forward_backward(self, data, loss_fn, loss_fn_config=None):
        return MappedFuture(
            self._inner.forward_backward(data, loss_fn, loss_fn_config),
            with_loss_sum(data, loss_fn),
        )

    def forward(self, data, loss_fn, loss_fn_config=None):
        return MappedFuture(
            self._inner.forward(data, loss_fn, loss_fn_config), with_loss_sum(data, loss_fn)
        )

    def save_weights_and_get_sampling_client(self, *args, **kwargs):
        return MappedFuture(
            self._inner.save_weights_and_get_sampling_client(*args, **kwargs), CompatSamplingClient
        )


class CompatServiceClient:
    """The SDK's ServiceClient with the differences above smoothed over. `base_model` and
    `rank` are the run's, used when a server refuses to create a client from saved state."""

    def __init__(self, inner: Any, base_model: str | None = None, rank: int | None = None):
        self._inner, self.base_model, self.rank = inner, base_model, rank

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def served_models(self) -> list[str] | None:
        """Model names the server says it serves (None if it cannot say)."""
        import warnings

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                caps = self._inner.get_server_capabilities()
        except Exception as exc:  # noqa: BLE001 - an older server without the route
            logger.info("server capabilities unavailable: %s", exc)
            return None
        return [m.model_name for m in caps.supported_models if m.model_name]

    def require_model(self, name: str) -> None:
        """Fail before any work when the server does not serve `name`."""
        served = self.served_models()
        if served is not None and name not in served:
            raise ValueError(
                f"the Tinker server does not serve model {name!r}; it serves: {', '.join(served) or 'nothing'}"
            )

    def create_lora_training_client(self, *args, **kwargs):
        return MappedFuture(
            self._inner.create_lora_training_client(*args, **kwargs), CompatTrainingClient
        )

    def create_sampling_client(self, *args, **kwargs):
        return MappedFuture(
            self._inner.create_sampling_client(*args, **kwargs), CompatSamplingClient
        )

    def create_training_client_from_state(self, path: str, **kwargs):
        return self._from_state(path, with_optimizer=False, **kwargs)

    def create_training_client_from_state_with_optimizer(self, path: str, **kwargs):
        return self._from_state(path, with_optimizer=True, **kwargs)

    def _from_state(self, path: str, with_optimizer: bool, **kwargs: Any) -> APIFuture:
        """`kwargs` (e.g. `user_metadata`) go to the server with the request, and with the
        fresh client when the server cannot create one from a checkpoint."""
        create = (
            self._inner.create_training_client_from_state_with_optimizer
            if with_optimizer
            else self._inner.create_training_client_from_state
        )
        try:
            return MappedFuture(_Ready(create(path, **kwargs).result()), CompatTrainingClient)
        except Exception as exc:  # noqa: BLE001 - some servers refuse; load into a new client
            if self.base_model is None or self.rank is None:
                raise
            logger.info(
                "server refused create_training_client_from_state (%s); loading %s into a new client",
                type(exc).__name__,
                path,
            )
        client = self._inner.create_lora_training_client(
            base_model=self.base_model, rank=self.rank, **kwargs
        ).result()
        load = client.load_state_with_optimizer if with_optimizer else client.load_state
        load(path).result()
        return MappedFuture(_Ready(client), CompatTrainingClient)


class _Ready:
    """A finished value with the future interface MappedFuture expects."""

    def __init__(self, value: Any):
        self.value = value

    def result(self, timeout: float | None = None) -> Any:
        return self.value

    async def result_async(self, timeout: float | None = None) -> Any:
        return self.value

    def future(self) -> ConcurrentFuture:
        f: ConcurrentFuture = ConcurrentFuture()
        f.set_result(self.value)
        return f
