"""The lean sampling decoder computes what transformers' forward computes, adapter and
padding included, and knows when it does not apply."""

from types import SimpleNamespace

import pytest
import torch

from tinker_cookbook.local import LocalBackendConfig
from tinker_cookbook.local import runtime as runtime_module
from tinker_cookbook.local.decoder import LeanDecoder, lean_decoder_for
from tinker_cookbook.local.lora import LoRAAdapter, target_suffixes
from tinker_cookbook.local.runtime import RuntimeRegistry
from tinker_cookbook.local.sampler import SequenceJob, generate


def _runtime(use_bf16: bool):
    return RuntimeRegistry().get(
        "tiny-qwen3-1m", LocalBackendConfig(device="cpu", use_bf16=use_bf16)
    )


def _adapter(runtime) -> LoRAAdapter:
    """A trained-looking adapter: B is not zero, so every delta changes the output."""
    adapter = LoRAAdapter.initialize(runtime.lora_modules, 4, target_suffixes(True, True, True), 0)
    gen = torch.Generator().manual_seed(1)
    for _, b in adapter.weights.values():
        b.data.copy_(torch.randn(b.shape, generator=gen) * 0.05)
    return adapter.snapshot()


def _lean_logits(runtime, adapter, rows: list[list[int]], steps: int) -> torch.Tensor:
    """Last-position logits of each row after prefilling all but its last `steps` tokens
    (left-padded to one width) and then decoding those one token at a time."""
    prompts = [r[:-steps] for r in rows]
    width = max(len(p) for p in prompts)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    valid = torch.ones(len(rows), width + steps, dtype=torch.bool)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.tensor(p)
        valid[i, : width - len(p)] = False
    positions = (valid[:, :width].long().cumsum(-1) - 1).clamp(min=0)
    decoder = runtime.lean_decoder
    cache, bound = decoder.new_cache(valid), decoder.bind(adapter, merge=True)
    with torch.no_grad(), runtime.autocast():
        hidden = decoder.forward(ids, positions, bound, cache=cache)
        last = positions[:, -1]
        for k in range(steps, 0, -1):
            token = torch.tensor([r[-k] for r in rows])[:, None]
            last = last + 1
            hidden = decoder.forward(token, last[:, None], bound, cache=cache)
        return runtime.logits_fp32(hidden[:, -1], adapter)


def _reference_logits(runtime, adapter, rows: list[list[int]]) -> torch.Tensor:
    with torch.no_grad(), runtime.autocast():
        out = []
        for r in rows:
            hidden, _ = runtime.hidden_states(torch.tensor([r]), None, adapter)
            out.append(runtime.logits_fp32(hidden[0, -1], adapter))
    return torch.stack(out)


@pytest.mark.parametrize("use_bf16, atol", [(False, 1e-4), (True, 5e-2)])
def test_lean_forward_matches_transformers_with_adapter_and_padding(use_bf16, atol):
    runtime = _runtime(use_bf16)
    assert isinstance(runtime.lean_decoder, LeanDecoder)
    adapter = _adapter(runtime)
    gen = torch.Generator().manual_seed(0)
    rows = [torch.randint(0, 300, (n,), generator=gen).tolist() for n in (7, 12, 12, 20)]
    lean = _lean_logits(runtime, adapter, rows, steps=4)
    reference = _reference_logits(runtime, adapter, rows)
    lean_lp, ref_lp = lean.log_softmax(-1), reference.log_softmax(-1)
    assert (lean_lp - ref_lp).abs().max().item() < atol
    base = _reference_logits(runtime, None, rows).log_softmax(-1)
    assert (base - ref_lp).abs().max().item() > 10 * atol  # the adapter did change the output


@pytest.mark.parametrize("use_bf16, atol", [(False, 1e-4), (True, 5e-2)])
@pytest.mark.parametrize(
    "checkpoint_layers, side", [(False, "right"), (True, "right"), (False, "left")]
)
def test_lean_scoring_of_a_padded_batch_matches_transformers_row_by_row(
    use_bf16, atol, checkpoint_layers, side
):
    """Scoring and training run a padded batch's real tokens only (attention on the grid,
    masked unless right padding makes causal order enough): every row's logprobs are those
    of transformers' forward over that row alone."""
    runtime = _runtime(use_bf16)
    adapter = _adapter(runtime)
    gen = torch.Generator().manual_seed(0)
    rows = [torch.randint(0, 300, (n,), generator=gen).tolist() for n in (7, 12, 3, 20)]
    targets = [torch.tensor(r[1:]) for r in rows]
    ids, positions, valid = _padded(rows, side)
    bound = runtime.lean_decoder.bind(adapter, merge=False)
    # Layers are checkpointed only where gradients are wanted.
    with torch.set_grad_enabled(checkpoint_layers), runtime.autocast():
        hidden = runtime.lean_decoder.sequence_hidden(
            ids, positions, bound, key_valid=valid, checkpoint_layers=checkpoint_layers
        )
    got = runtime.score_positions(hidden, torch.cat(targets), adapter).target_logprobs
    want = torch.cat([_reference_logits(runtime, adapter, [r[: i + 1] for i in range(len(r) - 1)])
                      .log_softmax(-1).gather(-1, t[:, None]).squeeze(-1)
                      for r, t in zip(rows, targets, strict=True)])  # fmt: skip
    assert got.shape == want.shape
    assert (got - want).abs().max().item() < atol


def _padded(rows: list[list[int]], side: str) -> tuple[torch.Tensor, ...]:
    """Every row but its last token, padded on `side`: ids, positions, which are real."""
    width = max(len(r) for r in rows) - 1
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    valid = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, r in enumerate(rows):
        span = slice(0, len(r) - 1) if side == "right" else slice(width - len(r) + 1, width)
        ids[i, span] = torch.tensor(r[:-1])
        valid[i, span] = True
    return ids, (valid.long().cumsum(-1) - 1).clamp(min=0), valid


def test_models_of_other_architectures_fall_back_with_a_reason():
    odd = SimpleNamespace(config=SimpleNamespace(model_type="gpt2"))
    assert "gpt2" in lean_decoder_for(odd, {}, None)
    gelu = SimpleNamespace(config=SimpleNamespace(model_type="llama", hidden_act="gelu"))
    assert "gelu" in lean_decoder_for(gelu, {}, None)
    sliding = SimpleNamespace(
        config=SimpleNamespace(model_type="qwen2", hidden_act="silu", use_sliding_window=True)
    )
    assert "sliding" in lean_decoder_for(sliding, {}, None)


def test_a_model_without_a_lean_decoder_samples_through_transformers():
    """The fallback for other architectures: same sampler, transformers' forward, and the
    sampled logprobs are still the scorer's."""
    runtime = _runtime(use_bf16=False)
    runtime.lean_decoder = None  # as for an architecture lean_decoder_for refuses
    adapter = _adapter(runtime)
    prompts = [[5, 9, 20], [7, 8, 9, 10, 11, 12]]
    jobs = [
        SequenceJob(p, 6, 1.0, 0, 1.0, frozenset(), (), torch.Generator().manual_seed(i))
        for i, p in enumerate(prompts)
    ]
    generate(runtime, jobs, adapter)
    with torch.no_grad():
        scores = runtime.sequence_logprobs(
            [j.prompt + j.tokens[:-1] for j in jobs],
            [torch.tensor(j.prompt[1:] + j.tokens) for j in jobs],
            adapter,
        )
    for job, score in zip(jobs, scores, strict=True):
        assert len(job.tokens) == 6
        sampled = score.target_logprobs[-6:]
        assert torch.allclose(sampled, torch.tensor(job.logprobs), atol=1e-4)


def _sample(runtime, adapter) -> list[SequenceJob]:
    """Three seeded generations; one ends early, so the batch shrinks mid-way."""
    prompts = [[5, 9, 20], [7, 8, 9, 10, 11, 12], [3, 4]]
    jobs = [
        SequenceJob(p, n, 1.0, 0, 1.0, frozenset(), (), torch.Generator().manual_seed(i))
        for i, (p, n) in enumerate(zip(prompts, (6, 3, 6), strict=True))
    ]
    generate(runtime, jobs, adapter)
    return jobs


def _score(runtime, adapter, jobs: list[SequenceJob]) -> list[torch.Tensor]:
    """The scorer's logprobs of every prompt and sampled token after the first."""
    with torch.inference_mode():
        scores = runtime.sequence_logprobs(
            [j.prompt + j.tokens[:-1] for j in jobs],
            [torch.tensor(j.prompt[1:] + j.tokens) for j in jobs],
            adapter,
        )
    return [s.target_logprobs for s in scores]


def _trained_logprobs_and_grads(
    runtime, rows: list[list[int]] | None = None
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """A training pass (by default rows of different lengths, so with padding): each token's
    logprob, and the gradient of their sum for every adapter weight."""
    adapter = LoRAAdapter.initialize(runtime.lora_modules, 4, target_suffixes(True, True, True), 0)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _, b in adapter.weights.values():
            b.copy_(torch.randn(b.shape, generator=gen) * 0.05)
    rows = rows or [[5, 9, 20, 31, 7, 8, 40], [7, 8, 9], [3, 4, 11, 12, 60]]
    scores = runtime.sequence_logprobs(
        [r[:-1] for r in rows], [torch.tensor(r[1:]) for r in rows], adapter
    )
    sum(s.target_logprobs.sum() for s in scores).backward()
    return [s.target_logprobs.detach() for s in scores], [p.grad for p in adapter.parameters()]


def _assert_same_training_pass(got, want) -> None:
    for got_lp, want_lp in zip(got[0], want[0], strict=True):
        assert torch.allclose(got_lp, want_lp, atol=2e-2)
    assert len(got[1]) == len(want[1]) > 0
    for got_grad, want_grad in zip(got[1], want[1], strict=True):
        assert got_grad is not None and want_grad is not None
        error = (got_grad - want_grad).norm() / want_grad.norm().clamp(min=1e-6)
        assert error < 0.05  # bf16 matmuls in both, summed in another order


def _compiling_runtime():
    return RuntimeRegistry().get(
        "tiny-qwen3-1m", LocalBackendConfig(device="cpu", use_bf16=True, compile=True)
    )


def test_compiled_decode_steps_and_scoring_compute_what_eager_ones_do(caplog):
    """Compared on the same tokens (samples from two code paths could part at a near tie)."""
    eager = _runtime(use_bf16=True)
    compiled = _compiling_runtime()
    adapter = _adapter(eager)
    jobs = _sample(compiled, adapter)
    got_scores = _score(compiled, adapter, jobs)
    want_scores = _score(eager, adapter, jobs)
    assert "compiling" not in caplog.text  # it compiled: no fallback to eager
    for compiled_pass in ("_prefill", "_decode", "_sequence"):
        assert getattr(compiled.lean_decoder, compiled_pass).compiled is not None
    assert [len(j.tokens) for j in jobs] == [6, 3, 6]
    for job, got, want in zip(jobs, got_scores, want_scores, strict=True):
        assert torch.allclose(got, want, atol=2e-2)  # compiled scoring
        sampled = torch.tensor(job.logprobs)  # compiled decode steps
        assert torch.allclose(sampled, want[-len(job.tokens) :], atol=2e-2)


def test_compiled_passes_over_unpadded_rows_compute_what_eager_ones_do(caplog):
    """Prompts and sequences of one length need no mask (causal attention): each compiled
    pass compiles whole (a graph break would fall back to eager, with a warning)."""
    eager, compiled = _runtime(use_bf16=True), _compiling_runtime()
    adapter = _adapter(eager)
    jobs = [
        SequenceJob(p, 4, 1.0, 0, 1.0, frozenset(), (), torch.Generator().manual_seed(i))
        for i, p in enumerate([[5, 9, 20], [7, 8, 9]])
    ]
    generate(compiled, jobs, adapter)
    for got, want in zip(
        _score(compiled, adapter, jobs), _score(eager, adapter, jobs), strict=True
    ):
        assert torch.allclose(got, want, atol=2e-2)
    got_train = _trained_logprobs_and_grads(compiled, rows=[[5, 9, 20, 31], [7, 8, 9, 10]])
    want_train = _trained_logprobs_and_grads(eager, rows=[[5, 9, 20, 31], [7, 8, 9, 10]])
    _assert_same_training_pass(got_train, want_train)
    assert "compiling" not in caplog.text


def test_a_compiled_generation_whose_rows_finish_does_not_compile_again(caplog):
    """Rows that finish are dropped from the cache: the decode step compiled for the whole
    batch must still serve the rest (a recompile costs seconds, at every such generation)."""
    runtime = _compiling_runtime()
    adapter = _adapter(runtime)

    def jobs(lengths):
        prompts = [[5, 9, 20], [7, 8, 9, 10], [3, 4]]
        return [
            SequenceJob(p, n, 1.0, 0, 1.0, frozenset(), (), torch.Generator().manual_seed(i))
            for i, (p, n) in enumerate(zip(prompts, lengths, strict=True))
        ]

    generate(runtime, jobs((5, 5, 5)), adapter)  # compiles; every row runs to the end
    with torch.compiler.set_stance("fail_on_recompile"):
        shrinking = jobs((5, 2, 5))
        generate(runtime, shrinking, adapter)
    assert "compiling" not in caplog.text  # a recompile would have failed (and gone eager)
    assert [len(j.tokens) for j in shrinking] == [5, 2, 5]


def test_a_compiled_training_pass_gives_eager_logprobs_and_gradients(caplog):
    runtime = _compiling_runtime()
    compiled = _trained_logprobs_and_grads(runtime)
    assert "compiling" not in caplog.text
    assert runtime.lean_decoder._train.compiled is not None
    _assert_same_training_pass(compiled, _trained_logprobs_and_grads(_runtime(use_bf16=True)))


def test_logits_recomputed_in_backward_train_as_kept_ones_do(monkeypatch):
    """Large vocabularies recompute each chunk's logits in the backward pass; small ones keep
    them. Both give the same logprobs and gradients (fp32 weights: exactly the same sums)."""
    runtime = _runtime(use_bf16=False)
    kept = _trained_logprobs_and_grads(runtime)
    monkeypatch.setattr(runtime_module, "_KEPT_LOGITS_BYTES", 0)
    recomputed = _trained_logprobs_and_grads(runtime)
    for got, want in zip(recomputed[0], kept[0], strict=True):
        assert torch.equal(got, want)
    for got, want in zip(recomputed[1], kept[1], strict=True):
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-7)


def test_a_pass_that_fails_to_compile_runs_eagerly_and_says_why(monkeypatch, caplog):
    def broken_compile(fn, **_):
        def run(*args):
            raise torch._inductor.exc.InvalidCxxCompiler()  # what a machine without g++ gets

        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    runtime = _compiling_runtime()
    adapter = _adapter(runtime)
    jobs = _sample(runtime, adapter)
    got_scores = _score(runtime, adapter, jobs)
    want_scores = _score(_runtime(use_bf16=True), adapter, jobs)
    assert "compiling the decode step failed" in caplog.text
    assert "compiling scoring failed" in caplog.text
    assert "No working C++ compiler" in caplog.text
    trained = _trained_logprobs_and_grads(runtime)
    assert "compiling the training pass failed" in caplog.text
    _assert_same_training_pass(trained, _trained_logprobs_and_grads(_runtime(use_bf16=True)))
    for job, got, want in zip(jobs, got_scores, want_scores, strict=True):
        assert torch.equal(got, want)  # the same eager code
        assert torch.allclose(torch.tensor(job.logprobs), want[-len(job.tokens) :], atol=2e-2)


def test_an_error_of_a_compiled_pass_itself_is_raised_not_taken_for_a_compile_failure(
    monkeypatch, caplog
):
    def failing_pass(fn, **_):
        def run(*args):
            raise RuntimeError("out of memory")

        return run

    monkeypatch.setattr(torch, "compile", failing_pass)
    runtime = _compiling_runtime()
    with pytest.raises(RuntimeError, match="out of memory"):
        _sample(runtime, _adapter(runtime))
    assert "compiling" not in caplog.text
