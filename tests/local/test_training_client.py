"""Training: a loop that learns, the optimizer's settings, checkpoints, futures, bad input."""

import asyncio
import json

import numpy as np
import pytest
import torch
from tinker import types

from tests.helpers import chat_tokens, next_token_datum
from tinker_cookbook.local import LocalBackendError
from tinker_cookbook.local.checkpoints import META_FILE


@pytest.fixture
def client(service):
    return service.create_lora_training_client("tiny-qwen3-1m", rank=4, seed=0).result()


@pytest.fixture(scope="module")
def data(tokenizer):
    pairs = [("2+3?", "5"), ("capital of France?", "Paris"), ("say hi", "hi!")]
    return [next_token_datum(chat_tokens(tokenizer, q, a)) for q, a in pairs]


def _params(client) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in client._adapter.parameters()])


def test_cross_entropy_loop_drives_loss_down(client, data):
    losses = []
    for _ in range(25):
        fb = client.forward_backward(data, "cross_entropy")
        client.optim_step(types.AdamParams(learning_rate=3e-3))
        losses.append(fb.result().metrics["loss:sum"])
    assert losses[-1] < 0.3 * losses[0]


def test_adam_step_follows_adamw_formula(client, data):
    """Two steps of decoupled-weight-decay Adam with the given lr, betas, eps, weight decay."""
    lr, b1, b2, eps, wd = 1e-2, 0.8, 0.9, 1e-3, 0.1
    p = _params(client)
    m = torch.zeros_like(p)
    v = torch.zeros_like(p)
    for step in (1, 2):
        client.forward_backward(data, "cross_entropy").result()
        g = torch.cat([t.grad.flatten().clone() for t in client._adapter.parameters()])
        client.optim_step(
            types.AdamParams(learning_rate=lr, beta1=b1, beta2=b2, eps=eps, weight_decay=wd)
        ).result()
        p = p * (1 - lr * wd)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - lr * (m / (1 - b1**step)) / ((v / (1 - b2**step)).sqrt() + eps)
        torch.testing.assert_close(_params(client), p, rtol=1e-4, atol=1e-6)


def test_grad_clip_norm_scales_the_gradient(service, data):
    """With eps large, Adam's first step is ~ lr * g / eps, so clipping shows in the update."""
    runs = {}
    for clip in (0.0, 1.0):
        c = service.create_lora_training_client("tiny-qwen3-1m", rank=4, seed=0).result()
        before = _params(c)
        c.forward_backward(data, "cross_entropy").result()
        norm = torch.cat([t.grad.flatten() for t in c._adapter.parameters()]).norm().item()
        out = c.optim_step(
            types.AdamParams(learning_rate=1.0, eps=1e6, grad_clip_norm=clip)
        ).result()
        assert out.metrics["grad_norm"] == pytest.approx(norm, rel=1e-4)  # reported before clipping
        runs[clip] = (_params(c) - before).norm().item()
    assert norm > 1.0
    assert runs[1.0] == pytest.approx(runs[0.0] / norm, rel=1e-3)


def test_zero_learning_rate_changes_nothing(client, data):
    before = _params(client)
    client.forward_backward(data, "cross_entropy")
    client.optim_step(types.AdamParams(learning_rate=0.0)).result()
    assert torch.equal(_params(client), before)


def test_calls_run_in_submission_order(client, data):
    """Submit fb, step, fb without waiting: the second pass sees the updated weights."""
    first = client.forward(data, "cross_entropy")
    client.forward_backward(data, "cross_entropy")
    client.optim_step(types.AdamParams(learning_rate=1e-2))
    second = client.forward(data, "cross_entropy")
    third = client.forward(data, "cross_entropy")
    assert second.result().metrics["loss:sum"] != first.result().metrics["loss:sum"]
    assert second.result().metrics == third.result().metrics


def test_futures_support_await_result_and_async_spellings(service, client, data):
    async def run():
        fut = client.forward(data, "cross_entropy")
        a = await fut
        b = await fut.result_async()
        c = await (await client.forward_async(data, "cross_entropy"))
        tc = await service.create_lora_training_client_async("tiny-qwen3-1m", rank=2)
        return a, b, c, tc

    a, b, c, tc = asyncio.run(run())
    assert a.metrics == b.metrics == c.metrics
    assert client.forward(data, "cross_entropy").result().metrics == a.metrics
    assert tc.get_info().lora_rank == 2


def test_save_state_and_resume_with_optimizer(service, client, data):
    for _ in range(3):
        client.forward_backward(data, "cross_entropy")
        client.optim_step(types.AdamParams(learning_rate=1e-2))
    path = client.save_state("step3").result().path
    meta = json.loads((__import__("pathlib").Path(path) / META_FILE).read_text())
    assert meta["base_model"] == "tiny-qwen3-1m" and "optimizer" in meta

    resumed = service.create_training_client_from_state_with_optimizer(path).result()
    fresh_opt = service.create_training_client_from_state(path).result()
    assert torch.equal(_params(resumed), _params(client))
    for c in (client, resumed, fresh_opt):
        c.forward_backward(data, "cross_entropy")
        c.optim_step(types.AdamParams(learning_rate=1e-2)).result()
    # Same moments -> the same next step; fresh moments -> a different one.
    torch.testing.assert_close(_params(resumed), _params(client), rtol=1e-5, atol=1e-7)
    assert not torch.allclose(_params(fresh_opt), _params(client), atol=1e-6)


def test_sampler_weights_round_trip(service, client, data, tokenizer):
    for _ in range(3):
        client.forward_backward(data, "cross_entropy")
        client.optim_step(types.AdamParams(learning_rate=1e-2))
    path = client.save_weights_for_sampler("s1").result().path
    sampler = service.create_sampling_client(model_path=path).result()
    toks = data[0].model_input.to_ints() + [data[0].loss_fn_inputs["target_tokens"].tolist()[-1]]
    scored = sampler.compute_logprobs(types.ModelInput.from_ints(toks)).result()
    trained = (
        client.forward([data[0]], "cross_entropy").result().loss_fn_outputs[0]["logprobs"].tolist()
    )
    np.testing.assert_allclose(scored[1:], trained, atol=1e-5)
    with pytest.raises(LocalBackendError, match="no optimizer state"):
        service.create_training_client_from_state_with_optimizer(path)


def test_saved_adapter_loads_in_peft(tmp_path, data):
    """Checkpoints are ordinary PEFT adapters: transformers + peft reproduce our logprobs."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tinker_cookbook.local import LocalBackendConfig, ServiceClient
    from tinker_cookbook.local.models import builtin_model_dir

    svc = ServiceClient(LocalBackendConfig(use_bf16=False, checkpoint_dir=str(tmp_path)))
    c = svc.create_lora_training_client("tiny-qwen3-1m", rank=4, seed=0).result()
    for _ in range(2):
        c.forward_backward(data, "cross_entropy")
        c.optim_step(types.AdamParams(learning_rate=1e-2))
    path = c.save_weights_for_sampler("peft").result().path
    ours = c.forward([data[0]], "cross_entropy").result().loss_fn_outputs[0]["logprobs"].to_torch()

    model = AutoModelForCausalLM.from_pretrained(builtin_model_dir("tiny-qwen3-1m"))
    model = PeftModel.from_pretrained(model, path).eval()
    ids = torch.tensor([data[0].model_input.to_ints()])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits.float(), -1)[0]
    targets = data[0].loss_fn_inputs["target_tokens"].to_torch()
    theirs = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def test_interrupted_save_keeps_the_previous_checkpoint(client, monkeypatch):
    path = client.save_state("ckpt").result().path
    original = (__import__("pathlib").Path(path) / "adapter_model.safetensors").read_bytes()

    from tinker_cookbook.local import lora

    def crash(self, folder, base_model):
        (folder / "adapter_model.safetensors").write_bytes(b"partial")
        raise KeyboardInterrupt("killed mid-save")

    monkeypatch.setattr(lora.LoRAAdapter, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        client.save_state("ckpt").result()
    folder = __import__("pathlib").Path(path)
    assert (folder / "adapter_model.safetensors").read_bytes() == original
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.parametrize(
    "loss_fn, datum_kwargs, config, message",
    [
        ("mse", {}, None, "Unknown loss_fn 'mse'"),
        ("importance_sampling", {}, None, "lacks 'logprobs'"),
        ("cross_entropy", {"weights": [1.0, 1.0]}, None, r"weights'\] has shape \(2,\)"),
        ("dro", {"logprobs": "same", "advantages": "same"}, None, "beta"),
        ("cross_entropy", {}, {"clip": "x"}, "must be a number"),
    ],
)
def test_bad_loss_inputs_fail_clearly(client, tokenizer, loss_fn, datum_kwargs, config, message):
    toks = chat_tokens(tokenizer, "a", "b")
    n = len(toks) - 1
    extra = {k: ([0.0] * n if v == "same" else v) for k, v in datum_kwargs.items()}
    with pytest.raises(LocalBackendError, match=message):
        client.forward_backward([next_token_datum(toks, **extra)], loss_fn, config).result()


def test_misshaped_and_out_of_vocab_targets_fail_clearly(client):
    short = types.Datum(
        model_input=types.ModelInput.from_ints([1, 2, 3]), loss_fn_inputs={"target_tokens": [2, 3]}
    )
    with pytest.raises(LocalBackendError, match=r"datum 0: target_tokens has shape \(2,\).*N=3"):
        client.forward_backward([short], "cross_entropy")
    oov = types.Datum(
        model_input=types.ModelInput.from_ints([1, 2]), loss_fn_inputs={"target_tokens": [2, 10**6]}
    )
    with pytest.raises(LocalBackendError, match="token id 1000000 is outside"):
        client.forward_backward([oov], "cross_entropy")
    with pytest.raises(LocalBackendError, match="empty list"):
        client.forward_backward([], "cross_entropy")


def test_bad_checkpoint_names_and_paths(service, client, tmp_path):
    with pytest.raises(LocalBackendError, match="checkpoint name"):
        client.save_state("../escape")
    with pytest.raises(LocalBackendError, match="backend=tinker"):
        service.create_sampling_client(model_path="tinker://abc:train:0/sampler_weights/final")
    with pytest.raises(LocalBackendError, match="does not exist"):
        service.create_training_client_from_state(str(tmp_path / "nothing"))
    (tmp_path / "half").mkdir()
    with pytest.raises(LocalBackendError, match="incomplete"):
        service.create_training_client_from_state(str(tmp_path / "half"))


def test_forward_backward_custom_applies_the_users_gradient(client, data):
    """A non-linear custom loss: the adapter gradient equals autograd through the model."""

    def loss_fn(batch, logprobs):
        assert all(
            lp.requires_grad and lp.shape == (d.model_input.length,)
            for d, lp in zip(batch, logprobs, strict=True)
        )
        total = sum((lp.sum() / 10) ** 2 for lp in logprobs)
        return total, {"custom:sum": float(total.detach())}

    with torch.no_grad():  # non-zero B so every factor gets gradient
        for _, b in client._adapter.weights.values():
            b.normal_(0, 0.02, generator=torch.Generator().manual_seed(0))
    runtime, ref = client._runtime, client._adapter.trainable_copy()
    with torch.enable_grad():
        scores = runtime.sequence_logprobs(
            [d.model_input.to_ints() for d in data],
            [d.loss_fn_inputs["target_tokens"].to_torch() for d in data],
            ref,
        )
        want_loss = sum((s.target_logprobs.sum() / 10) ** 2 for s in scores)
        want_loss.backward()
    want = torch.cat([p.grad.flatten() for p in ref.parameters()])

    out = client.forward_backward_custom(data, loss_fn).result()
    got = torch.cat([p.grad.flatten() for p in client._adapter.parameters()])
    assert out.metrics["loss:sum"] == pytest.approx(float(want_loss), rel=1e-4)
    assert out.metrics["custom:sum"] == pytest.approx(float(want_loss), rel=1e-4)
    assert (got - want).norm() / want.norm() < 2e-2  # bf16 backward rounding only


def test_clients_share_one_copy_of_the_base_weights(service):
    a = service.create_lora_training_client("tiny-qwen3-1m", rank=2).result()
    b = service.create_lora_training_client("tiny-qwen3-1m", rank=8)  # used as the client itself
    s = service.create_sampling_client(base_model="tiny-qwen3-1m").result()
    assert b.get_info().lora_rank == 8  # the future forwards to the client (SDK back-compat)
    assert a._runtime is b.result()._runtime is s._runtime
    assert a._adapter.weights.keys() == b.result()._adapter.weights.keys()
    assert a._adapter.weights["lm_head"][0].shape == (2, 128)
