"""Clients of one process share a compute thread and base weights, yet none changes another:
each keeps its own batching, gets the model settings it asked for, and a backward pass uses
the adapter of its own forward pass whatever is bound when it runs."""

import asyncio
import logging

import pytest
import torch
from tinker import types
from transformers.modeling_layers import GradientCheckpointingLayer

from tests.helpers import chat_tokens
from tinker_cookbook.local import LocalBackendConfig, LocalBackendError, ServiceClient
from tinker_cookbook.local.lora import AdapterSlot, LoRAAdapter, target_suffixes
from tinker_cookbook.local.runtime import RuntimeRegistry

MODEL = "tiny-qwen3-1m"


@pytest.fixture(scope="module")
def prompt(tokenizer):
    return types.ModelInput.from_ints(chat_tokens(tokenizer, "hello", "")[:-1])


def test_each_service_client_batches_by_its_own_limits(prompt):
    small = ServiceClient(LocalBackendConfig(max_sampling_batch=2))
    small_sampler = small.create_sampling_client(base_model=MODEL).result()
    large = ServiceClient(LocalBackendConfig(max_sampling_batch=8))  # must not change `small`
    large_sampler = large.create_sampling_client(base_model=MODEL).result()
    assert small.engine is large.engine  # still one compute thread
    params = types.SamplingParams(max_tokens=2, temperature=1.0, seed=0, stop=[])

    def passes(*samplers) -> int:
        before = small.engine.sampling_batches_run

        async def together():
            await asyncio.gather(*[s.sample(prompt, 8, params) for s in samplers])

        asyncio.run(together())
        return small.engine.sampling_batches_run - before

    assert passes(small_sampler) == 4  # 8 samples, at most 2 per pass
    assert passes(large_sampler) == 1
    assert passes(small_sampler, large_sampler) == 5  # arriving together, each keeps its limits


def test_bad_batch_limits_and_devices_fail_when_the_client_is_made():
    with pytest.raises(LocalBackendError, match="max_sampling_batch must be >= 1, got 0"):
        ServiceClient(LocalBackendConfig(max_sampling_batch=0))
    with pytest.raises(LocalBackendError, match="device='gpu' is not a torch device"):
        ServiceClient(LocalBackendConfig(device="gpu"))
    with pytest.raises(LocalBackendError, match="device='cuda:99'"):
        ServiceClient(LocalBackendConfig(device="cuda:99"))


def test_gradient_checkpointing_is_honoured_after_the_model_was_loaded_without():
    plain = ServiceClient(LocalBackendConfig()).create_lora_training_client(MODEL, rank=2)
    checkpointed = ServiceClient(
        LocalBackendConfig(gradient_checkpointing=True)
    ).create_lora_training_client(MODEL, rank=2)
    plain, checkpointed = plain.result()._runtime, checkpointed.result()._runtime
    assert _checkpointed_layers(checkpointed) == checkpointed.model.config.num_hidden_layers
    assert _checkpointed_layers(plain) == 0  # the first client's model is untouched


def _checkpointed_layers(runtime) -> int:
    return sum(
        isinstance(m, GradientCheckpointingLayer) and m.gradient_checkpointing
        for m in runtime.model.modules()
    )


def test_a_second_copy_of_a_model_is_announced_once(caplog):
    registry = RuntimeRegistry()
    with caplog.at_level(logging.WARNING, logger="tinker_cookbook.local.runtime"):
        first = registry.get(MODEL, LocalBackendConfig())
        second = registry.get(MODEL, LocalBackendConfig(gradient_checkpointing=True))
        again = registry.get(MODEL, LocalBackendConfig(gradient_checkpointing=True))
    assert registry.get(MODEL, LocalBackendConfig()) is first
    assert second is again and second is not first
    (record,) = [r for r in caplog.records if "another copy" in r.getMessage()]
    assert MODEL in record.getMessage()
    assert "gradient_checkpointing=True (loaded: False)" in record.getMessage()


def _adapter(runtime, seed: int) -> LoRAAdapter:
    adapter = LoRAAdapter.initialize(
        runtime.lora_modules, 4, target_suffixes(True, True, True), seed
    )
    with torch.no_grad():  # non-zero B, so every factor gets a gradient
        for _, b in adapter.weights.values():
            b.normal_(0, 0.05, generator=torch.Generator().manual_seed(seed))
    return adapter


def test_checkpointed_backward_uses_the_adapter_of_its_forward(tokenizer):
    """Backward runs after the forward's adapter is gone and while another is bound (as when
    the engine serves another client in between): the recompute still uses the forward's."""
    plain = ServiceClient(LocalBackendConfig(use_bf16=False)).runtime(MODEL)
    checkpointed = ServiceClient(
        LocalBackendConfig(use_bf16=False, gradient_checkpointing=True)
    ).runtime(MODEL)
    tokens = [chat_tokens(tokenizer, q, a) for q, a in [("2+3?", "5"), ("say hi", "hi there!")]]
    inputs, targets = [t[:-1] for t in tokens], [torch.tensor(t[1:]) for t in tokens]
    trained, other = _adapter(plain, 0), _adapter(plain, 1)

    def gradients(runtime, interleave: bool) -> torch.Tensor:
        adapter = trained.trainable_copy()
        with torch.enable_grad():
            scores = runtime.sequence_logprobs(inputs, targets, adapter)
            loss = sum(s.target_logprobs.sum() for s in scores)
        if interleave:
            with torch.no_grad():
                runtime.sequence_logprobs(inputs, targets, other)
            with runtime.slot.use(other):
                loss.backward()
        else:
            loss.backward()
        return torch.cat([p.grad.flatten() for p in adapter.parameters()])

    want = gradients(plain, interleave=False)
    got = gradients(checkpointed, interleave=True)
    assert want.abs().sum() > 0
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_adapter_binding_restores_what_was_bound_before():
    slot, outer, inner = AdapterSlot(), object(), object()
    with slot.use(outer):
        with slot.use(inner):
            assert slot.adapter is inner
        assert slot.adapter is outer  # a nested bind (e.g. a recompute) leaves the outer one
    assert slot.adapter is None
