"""Each built-in loss: value and gradient against the documented formula, computed directly."""

import numpy as np
import pytest
import torch
from tinker import types

from tests.helpers import chat_tokens, next_token_datum

FORMULAS = {
    "cross_entropy": lambda lp, x, c: -(lp * x["weights"]).sum(),
    "importance_sampling": lambda lp, x, c: (
        -(torch.exp(lp - x["logprobs"]) * x["advantages"]).sum()
    ),
    "ppo": lambda lp, x, c: (
        -torch.minimum(
            torch.exp(lp - x["logprobs"]) * x["advantages"],
            torch.exp(lp - x["logprobs"]).clamp(c["clip_low_threshold"], c["clip_high_threshold"])
            * x["advantages"],
        ).sum()
    ),
    "cispo": lambda lp, x, c: (
        -(
            torch.exp(lp - x["logprobs"])
            .clamp(c["clip_low_threshold"], c["clip_high_threshold"])
            .detach()
            * lp
            * x["advantages"]
        ).sum()
    ),
    "dro": lambda lp, x, c: (
        -(lp * x["advantages"] - 0.5 * c["beta"] * (lp - x["logprobs"]) ** 2).sum()
    ),
}
CONFIGS = {
    "ppo": {"clip_low_threshold": 0.9, "clip_high_threshold": 1.1},
    "cispo": {"clip_low_threshold": 0.5, "clip_high_threshold": 1.5},
    "dro": {"beta": 0.3},
}


@pytest.fixture(scope="module")
def client(service):
    return service.create_lora_training_client("tiny-qwen3-1m", rank=4, seed=0).result()


def _make_data(tokenizer, loss: str, seed: int = 0) -> list[types.Datum]:
    rng = np.random.default_rng(seed)
    data = []
    for user, reply in [("hi", "hello there"), ("2+2?", "4, of course")]:
        toks = chat_tokens(tokenizer, user, reply)
        n = len(toks) - 1
        extra = {"weights": rng.uniform(0, 1, n).astype(np.float32)}
        if loss != "cross_entropy":
            # Sampler logprobs near the model's own, so ratios straddle the clip thresholds.
            extra = {
                "logprobs": (-5.6 + rng.normal(0, 0.3, n)).astype(np.float32),
                "advantages": rng.normal(0, 1, n).astype(np.float32),
            }
        data.append(next_token_datum(toks, **extra))
    return data


def _reference(client, data, loss, config):
    """Loss and adapter gradients from the formula above on a detached copy of the adapter."""
    runtime = client._runtime
    adapter = client._adapter.trainable_copy()
    with torch.enable_grad():
        scores = runtime.sequence_logprobs(
            [d.model_input.to_ints() for d in data],
            [d.loss_fn_inputs["target_tokens"].to_torch() for d in data],
            adapter,
        )
        total = sum(
            FORMULAS[loss](
                s.target_logprobs,
                {k: v.to_torch() for k, v in d.loss_fn_inputs.items() if k != "target_tokens"},
                config,
            )
            for s, d in zip(scores, data, strict=True)
        )
        total.backward()
    return float(total.detach()), [p.grad.clone() for p in adapter.parameters()], scores


def _nudge_adapter(client):
    """Make B non-zero so every LoRA factor receives gradient."""
    with torch.no_grad():
        for _, b in client._adapter.weights.values():
            b.normal_(0, 0.02, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("loss", sorted(FORMULAS))
def test_loss_value_and_gradient_match_formula(client, tokenizer, loss):
    _nudge_adapter(client)
    data = _make_data(tokenizer, loss)
    config = CONFIGS.get(loss, {})
    want_loss, want_grads, want_scores = _reference(client, data, loss, config)

    client._optimizer.zero_grad(set_to_none=True)
    out = client.forward_backward(data, loss, config).result()
    got_grads = [p.grad for p in client._adapter.parameters()]
    client._optimizer.zero_grad(set_to_none=True)

    assert out.metrics["loss:sum"] == pytest.approx(want_loss, rel=1e-4, abs=1e-4)
    for got, s in zip(out.loss_fn_outputs, want_scores, strict=True):
        np.testing.assert_allclose(
            got["logprobs"].to_numpy(), s.target_logprobs.detach().numpy(), atol=1e-5
        )
    flat_got = torch.cat([g.flatten() for g in got_grads])
    flat_want = torch.cat([g.flatten() for g in want_grads])
    assert flat_want.norm() > 0
    torch.testing.assert_close(flat_got, flat_want, rtol=1e-3, atol=1e-5)


def test_ppo_clipping_changes_the_gradient(client, tokenizer):
    """Guards against a ppo that ignores its thresholds (it would equal importance_sampling)."""
    _nudge_adapter(client)
    data = _make_data(tokenizer, "ppo")
    wide = client.forward_backward(
        data, "ppo", {"clip_low_threshold": 0.0, "clip_high_threshold": 1e9}
    ).result()
    is_ = client.forward_backward(data, "importance_sampling").result()
    tight = client.forward_backward(
        data, "ppo", {"clip_low_threshold": 0.99, "clip_high_threshold": 1.01}
    ).result()
    client._optimizer.zero_grad(set_to_none=True)
    # Unclipped ppo is the importance-sampling objective; tight clipping changes it.
    assert wide.metrics["loss:sum"] == pytest.approx(is_.metrics["loss:sum"], rel=1e-5)
    assert tight.metrics["loss:sum"] != pytest.approx(is_.metrics["loss:sum"], rel=1e-3)


def test_soft_targets_cross_entropy(client, tokenizer):
    """(N, K) targets: -sum_k w_k * logp(t_k) per position, e.g. a teacher's top-K distribution."""
    toks = chat_tokens(tokenizer, "hi", "yo")
    n = len(toks) - 1
    rng = np.random.default_rng(1)
    targets = rng.integers(0, 256, size=(n, 3))
    weights = rng.dirichlet(np.ones(3), size=n).astype(np.float32)
    datum = types.Datum(
        model_input=types.ModelInput.from_ints(toks[:-1]),
        loss_fn_inputs={"target_tokens": targets, "weights": weights},
    )
    out = client.forward([datum], "cross_entropy").result()
    lp = out.loss_fn_outputs[0]["logprobs"].to_numpy()
    assert lp.shape == (n, 3)
    # Each column must equal the hard-target logprob of that column's tokens.
    for k in range(3):
        col = types.Datum(
            model_input=types.ModelInput.from_ints(toks[:-1]),
            loss_fn_inputs={"target_tokens": targets[:, k]},
        )
        hard = client.forward([col], "cross_entropy").result()
        np.testing.assert_allclose(
            lp[:, k], hard.loss_fn_outputs[0]["logprobs"].to_numpy(), atol=1e-5
        )
    assert out.metrics["loss:sum"] == pytest.approx(float(-(lp * weights).sum()), rel=1e-4)


def test_gradients_accumulate_until_optim_step(client, tokenizer):
    _nudge_adapter(client)
    d1, d2 = _make_data(tokenizer, "cross_entropy")
    client._optimizer.zero_grad(set_to_none=True)
    client.forward_backward([d1, d2], "cross_entropy").result()
    together = torch.cat([p.grad.flatten().clone() for p in client._adapter.parameters()])
    client._optimizer.zero_grad(set_to_none=True)
    client.forward_backward([d1], "cross_entropy")
    client.forward_backward([d2], "cross_entropy").result()
    separate = torch.cat([p.grad.flatten().clone() for p in client._adapter.parameters()])
    # Equal up to bf16 rounding (the batched backward runs different kernel shapes).
    assert (separate - together).norm() / together.norm() < 2e-2
    client.optim_step(types.AdamParams(learning_rate=0.0)).result()
    assert all(p.grad is None for p in client._adapter.parameters())


def test_rl_losses_honour_per_token_weights(client, tokenizer):
    """Environment tokens (weight 0) contribute nothing, even to dro's quadratic term."""
    _nudge_adapter(client)
    (d, _) = _make_data(tokenizer, "dro")
    n = d.model_input.length
    zeroed = types.Datum(
        model_input=d.model_input,
        loss_fn_inputs={
            **d.loss_fn_inputs,
            "advantages": np.zeros(n, np.float32),
            "weights": np.zeros(n, np.float32),
        },
    )
    client._optimizer.zero_grad(set_to_none=True)
    out = client.forward_backward([zeroed], "dro", {"beta": 0.3}).result()
    grads = torch.cat(
        [p.grad.flatten() for p in client._adapter.parameters() if p.grad is not None]
    )
    client._optimizer.zero_grad(set_to_none=True)
    assert out.metrics["loss:sum"] == 0.0 and grads.abs().max() == 0.0


def test_a_failed_forward_backward_leaves_no_partial_gradient(service, tokenizer, monkeypatch):
    from tinker_cookbook.local import LocalBackendConfig, ServiceClient
    from tinker_cookbook.local import training_client as tc_module

    small = ServiceClient(
        LocalBackendConfig(max_train_batch_tokens=40, checkpoint_dir=str(service.checkpoint_root))
    )
    client = small.create_lora_training_client("tiny-qwen3-1m", rank=4, seed=0).result()
    data = _make_data(tokenizer, "cross_entropy")  # two datums of ~30 tokens: two micro-batches
    assert len(client._micro_batches(data)) == 2
    calls = {"n": 0}
    real = tc_module.datum_loss

    def fail_second(*args):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("out of memory (simulated)")
        return real(*args)

    monkeypatch.setattr(tc_module, "datum_loss", fail_second)
    with pytest.raises(RuntimeError, match="simulated"):
        client.forward_backward(data, "cross_entropy").result()
    assert all(p.grad is None for p in client._adapter.parameters())
