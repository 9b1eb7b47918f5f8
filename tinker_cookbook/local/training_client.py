"""`TrainingClient`: a LoRA adapter with its own AdamW state over a shared base model."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tinker import types

from tinker_cookbook.local.checkpoints import load_optimizer_state, save_checkpoint
from tinker_cookbook.local.errors import LocalBackendError
from tinker_cookbook.local.futures import LocalFuture
from tinker_cookbook.local.lora import LoRAAdapter
from tinker_cookbook.local.losses import check_loss_inputs, datum_loss
from tinker_cookbook.local.runtime import ModelRuntime
from tinker_cookbook.local.sampling_client import SamplingClient

if TYPE_CHECKING:
    from tinker_cookbook.local.service_client import ServiceClient

CustomLossFn = Callable[
    [list[types.Datum], list[torch.Tensor]], tuple[torch.Tensor, dict[str, float]]
]
_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")


class TrainingClient:
    """Calls run on the engine thread in submission order; gradients from successive
    `forward_backward` calls accumulate until `optim_step` applies and clears them."""

    def __init__(
        self, service: ServiceClient, runtime: ModelRuntime, adapter: LoRAAdapter, run_id: str
    ):
        self._service = service
        self._engine = service.engine
        self._runtime = runtime
        self._adapter = adapter
        self.model_id = run_id
        self._optimizer = torch.optim.AdamW(
            adapter.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-12, weight_decay=0.0
        )

    def __repr__(self) -> str:
        return (
            f"<local TrainingClient {self.model_id} {self._runtime.name} rank={self._adapter.rank}>"
        )

    # ---- forward / backward -------------------------------------------------------------
    def forward(
        self,
        data: list[types.Datum],
        loss_fn: str,
        loss_fn_config: Mapping[str, float] | None = None,
    ):
        check_loss_inputs(data, loss_fn, loss_fn_config, self._runtime.vocab_size)
        return self._submit(
            lambda: self._run_loss(data, loss_fn, dict(loss_fn_config or {}), backward=False)
        )

    def forward_backward(
        self,
        data: list[types.Datum],
        loss_fn: str,
        loss_fn_config: Mapping[str, float] | None = None,
    ):
        check_loss_inputs(data, loss_fn, loss_fn_config, self._runtime.vocab_size)
        return self._submit(
            lambda: self._run_loss(data, loss_fn, dict(loss_fn_config or {}), backward=True)
        )

    def forward_backward_custom(self, data: list[types.Datum], loss_fn: CustomLossFn):
        """`loss_fn(data, logprobs)` gets one differentiable (N,) tensor per datum and returns
        (loss, metrics); its gradient is applied through a weighted cross-entropy pass."""
        check_loss_inputs(data, "cross_entropy", None, self._runtime.vocab_size)
        return self._submit(lambda: self._run_custom(data, loss_fn))

    async def forward_async(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    async def forward_backward_async(self, *args, **kwargs):
        return self.forward_backward(*args, **kwargs)

    async def forward_backward_custom_async(self, *args, **kwargs):
        return self.forward_backward_custom(*args, **kwargs)

    def _run_loss(
        self, data, loss_fn: str, config: dict, backward: bool
    ) -> types.ForwardBackwardOutput:
        """Micro-batches accumulate gradients; if one fails, the gradients are put back as
        they were, so a failed call never leaves half a batch to the next optim_step."""
        saved = (
            [None if p.grad is None else p.grad.clone() for p in self._adapter.parameters()]
            if backward
            else []
        )
        try:
            return self._run_micro_batches(data, loss_fn, config, backward)
        except BaseException:
            for param, grad in zip(self._adapter.parameters(), saved, strict=False):
                param.grad = grad
            raise

    def _run_micro_batches(
        self, data, loss_fn: str, config: dict, backward: bool
    ) -> types.ForwardBackwardOutput:
        outputs: list[dict[str, types.TensorData]] = [{} for _ in data]
        total = 0.0
        for idxs in self._micro_batches(data):
            with torch.set_grad_enabled(backward):
                scores = self._runtime.sequence_logprobs(
                    [data[i].model_input.to_ints() for i in idxs],
                    [data[i].loss_fn_inputs["target_tokens"].to_torch().long() for i in idxs],
                    self._adapter,
                )
                loss = torch.zeros((), device=self._runtime.device)
                for i, s in zip(idxs, scores, strict=True):
                    inputs = {
                        k: v.to_torch().float().to(self._runtime.device)
                        for k, v in data[i].loss_fn_inputs.items()
                        if k != "target_tokens"
                    }
                    loss = loss + datum_loss(loss_fn, s.target_logprobs, inputs, config)
                    outputs[i] = {
                        "logprobs": types.TensorData.from_torch(
                            s.target_logprobs.detach().float().cpu()
                        )
                    }
                if backward and loss.requires_grad:
                    loss.backward()
            total += float(loss.detach())
        return types.ForwardBackwardOutput(
            loss_fn_output_type="TorchLossReturn",
            loss_fn_outputs=outputs,
            metrics={"loss:sum": total},
        )

    def _run_custom(
        self, data: list[types.Datum], loss_fn: CustomLossFn
    ) -> types.ForwardBackwardOutput:
        forward = self._run_loss(data, "cross_entropy", {}, backward=False)
        logprobs = [
            out["logprobs"].to_torch().clone().requires_grad_(True)
            for out in forward.loss_fn_outputs
        ]
        loss, metrics = loss_fn(data, logprobs)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise LocalBackendError(
                f"custom loss_fn must return (scalar tensor, metrics), got {type(loss).__name__}"
            )
        loss.backward()
        linear = [
            types.Datum(
                model_input=d.model_input,
                loss_fn_inputs={
                    "target_tokens": d.loss_fn_inputs["target_tokens"],
                    "weights": -(lp.grad if lp.grad is not None else torch.zeros_like(lp)),
                },
            )
            for d, lp in zip(data, logprobs, strict=True)
        ]
        self._run_loss(linear, "cross_entropy", {}, backward=True)
        return types.ForwardBackwardOutput(
            loss_fn_output_type="TorchLossReturn",
            loss_fn_outputs=forward.loss_fn_outputs,
            metrics={"loss:sum": float(loss.detach()), **metrics},
        )

    def _micro_batches(self, data: list[types.Datum]) -> list[list[int]]:
        budget = self._service.config.max_train_batch_tokens
        order = sorted(range(len(data)), key=lambda i: data[i].model_input.length)
        batches, cur = [], []
        for i in order:
            width = data[i].model_input.length
            if cur and width * (len(cur) + 1) > budget:
                batches.append(cur)
                cur = []
            cur.append(i)
        return batches + ([cur] if cur else [])

    # ---- optimizer ----------------------------------------------------------------------
    def optim_step(
        self,
        optim_params: types.AdamParams | None = None,
        *,
        adam_params: types.AdamParams | None = None,
    ):
        params = optim_params or adam_params
        if not isinstance(params, types.AdamParams):
            raise LocalBackendError(
                f"optim_step needs tinker.types.AdamParams, got {type(params).__name__}"
            )
        if params.learning_rate < 0:
            raise LocalBackendError(
                f"AdamParams.learning_rate must be >= 0, got {params.learning_rate}"
            )
        return self._submit(lambda: self._optim_step(params))

    async def optim_step_async(self, *args, **kwargs):
        return self.optim_step(*args, **kwargs)

    def _optim_step(self, p: types.AdamParams) -> types.OptimStepResponse:
        for group in self._optimizer.param_groups:
            group.update(
                lr=p.learning_rate, betas=(p.beta1, p.beta2), eps=p.eps, weight_decay=p.weight_decay
            )
        max_norm = p.grad_clip_norm if p.grad_clip_norm > 0 else float("inf")
        grads = [t for t in self._adapter.parameters() if t.grad is not None]
        norm = float(torch.nn.utils.clip_grad_norm_(grads, max_norm)) if grads else 0.0
        self._optimizer.step()
        self._optimizer.zero_grad(set_to_none=True)
        return types.OptimStepResponse(
            metrics={"grad_norm": norm, "learning_rate": p.learning_rate}
        )

    # ---- saving and loading -------------------------------------------------------------
    def save_state(
        self, name: str, ttl_seconds: int | None = None
    ) -> LocalFuture[types.SaveWeightsResponse]:
        folder = self._checkpoint_folder("weights", name)
        return self._submit(
            lambda: types.SaveWeightsResponse(
                path=str(
                    save_checkpoint(
                        folder, self._adapter, self._runtime.name, "state", self._optimizer
                    )
                )
            )
        )

    def save_weights_for_sampler(self, name: str, ttl_seconds: int | None = None):
        folder = self._checkpoint_folder("sampler_weights", name)
        return self._submit(
            lambda: types.SaveWeightsForSamplerResponse(
                path=str(save_checkpoint(folder, self._adapter, self._runtime.name, "sampler"))
            )
        )

    def load_state(self, path: str):
        return self._submit(lambda: self._load(path, with_optimizer=False))

    def load_state_with_optimizer(self, path: str):
        return self._submit(lambda: self._load(path, with_optimizer=True))

    async def save_state_async(self, *args, **kwargs):
        return self.save_state(*args, **kwargs)

    async def save_weights_for_sampler_async(self, *args, **kwargs):
        return self.save_weights_for_sampler(*args, **kwargs)

    async def load_state_async(self, path: str):
        return self.load_state(path)

    async def load_state_with_optimizer_async(self, path: str):
        return self.load_state_with_optimizer(path)

    def _load(self, path: str, with_optimizer: bool) -> types.LoadWeightsResponse:
        adapter = self._service.load_adapter(path, self._runtime).trainable_copy()
        optimizer = torch.optim.AdamW(adapter.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-12)
        if with_optimizer:
            load_optimizer_state(Path(path).expanduser(), adapter, optimizer)
        self._adapter, self._optimizer = adapter, optimizer
        return types.LoadWeightsResponse(path=path)

    def save_weights_and_get_sampling_client(
        self, name: str | None = None, retry_config: Any = None
    ):
        return self._submit(
            lambda: SamplingClient(
                self._engine,
                self._runtime,
                self._adapter.snapshot(),
                self._service.limits,
                model_path=None,
            )
        )

    async def save_weights_and_get_sampling_client_async(self, *args, **kwargs) -> SamplingClient:
        return await self.save_weights_and_get_sampling_client(*args, **kwargs)

    def create_sampling_client(self, model_path: str, retry_config: Any = None) -> SamplingClient:
        return self._service.create_sampling_client(model_path=model_path).result()

    async def create_sampling_client_async(
        self, model_path: str, retry_config: Any = None
    ) -> SamplingClient:
        return await self._service.create_sampling_client(model_path=model_path)

    # ---- info ---------------------------------------------------------------------------
    def get_info(self) -> types.GetInfoResponse:
        name = self._runtime.name
        return types.GetInfoResponse(
            model_data=types.ModelData(
                arch=getattr(self._runtime.model.config, "model_type", None),
                model_name=name,
                tokenizer_id=name,
            ),
            model_id=self.model_id,
            is_lora=True,
            lora_rank=self._adapter.rank,
            model_name=name,
        )

    async def get_info_async(self) -> types.GetInfoResponse:
        return self.get_info()

    def get_tokenizer(self):
        return self._runtime.tokenizer

    def _submit(self, fn: Callable[[], Any]) -> LocalFuture:
        return LocalFuture(self._engine.run_op(fn))

    def _checkpoint_folder(self, kind: str, name: str) -> Path:
        if not _NAME_RE.match(name or "") or name in (".", ".."):
            raise LocalBackendError(
                f"checkpoint name {name!r} must be non-empty and use only letters, digits, '_', '-', '.'"
            )
        return self._service.checkpoint_root / self.model_id / kind / name
