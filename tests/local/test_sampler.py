"""Batched token choice: each row's temperature, top-k, top-p and stream are its own."""

import torch

from tinker_cookbook.local.sampler import RowSettings, choose_tokens


def _rows(n: int, temperature: float, top_k: int, top_p: float, uniforms: torch.Tensor):
    vocab = 6
    return RowSettings(
        temperature=torch.full((n,), temperature),
        top_k=torch.full((n,), top_k if 0 < top_k < vocab else vocab),
        top_p=torch.full((n,), top_p),
        uniforms=uniforms[:, None],
        truncates=(0 < top_k < vocab) or top_p < 1.0,
    )


LOGITS = torch.tensor([1.0, 3.0, 0.5, 3.0, -1.0, 2.0])  # two tied at the top


def _frequencies(temperature: float, top_k: int, top_p: float, n: int = 6000) -> torch.Tensor:
    """Token frequencies over evenly spaced uniforms: exact up to 1/n for inverse-CDF sampling."""
    uniforms = (torch.arange(n) + 0.5) / n
    tokens, logprobs = choose_tokens(
        LOGITS.expand(n, -1), _rows(n, temperature, top_k, top_p, uniforms), 0
    )
    # The logprob reported is the untempered, untruncated one, whatever the settings.
    assert torch.allclose(logprobs, LOGITS.log_softmax(-1)[tokens])
    return torch.bincount(tokens, minlength=6).float() / n


def test_plain_and_tempered_sampling_follow_the_softmax():
    for temperature in (1.0, 0.5, 2.0):
        expected = (LOGITS / temperature).softmax(-1)
        assert torch.allclose(_frequencies(temperature, 0, 1.0), expected, atol=2e-3)


def test_top_k_keeps_exactly_k_and_breaks_ties_towards_the_lower_id():
    freq = _frequencies(1.0, 1, 1.0)
    assert freq[1] == 1.0  # the tie between ids 1 and 3 goes to 1, as argmax does
    freq = _frequencies(1.0, 3, 1.0)
    kept = LOGITS[[1, 3, 5]].softmax(-1)
    assert torch.allclose(freq[[1, 3, 5]], kept, atol=2e-3) and freq[[0, 2, 4]].sum() == 0


def test_top_p_keeps_the_smallest_head_reaching_p():
    probs = LOGITS.softmax(-1)  # sorted: ids 1, 3 (0.384 each), 5 (0.141), ...
    assert (_frequencies(1.0, 0, 0.75)[[1, 3]] == 0.5).all()  # 0.768 reaches 0.75
    freq = _frequencies(1.0, 0, 0.8)  # 0.768 < 0.8: id 5 is needed too
    head = probs[[1, 3, 5]] / probs[[1, 3, 5]].sum()
    assert torch.allclose(freq[[1, 3, 5]], head, atol=2e-3) and freq[[0, 2, 4]].sum() == 0


def test_rows_of_one_batch_keep_their_own_settings():
    n = 4
    rows = RowSettings(
        temperature=torch.tensor([0.0, 1.0, 1.0, 1.0]),
        top_k=torch.tensor([6, 1, 6, 2]),
        top_p=torch.tensor([1.0, 1.0, 0.3, 1.0]),
        uniforms=torch.tensor([[0.99], [0.99], [0.99], [0.99]]),
        truncates=True,
    )
    tokens, _ = choose_tokens(LOGITS.expand(n, -1), rows, 0)
    # greedy -> 1; top-1 -> 1; top-p 0.3 keeps only id 1; top-2 with u=0.99 -> the second, 3
    assert tokens.tolist() == [1, 1, 1, 3]
