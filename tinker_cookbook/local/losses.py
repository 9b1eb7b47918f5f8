"""The Tinker SDK's built-in losses, with its documented semantics.

Targets are already shifted (position i of the input predicts `target_tokens[i]`); every loss
is a sum over tokens (and, by the caller, over datums); nothing is normalised by length.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from tinker import types

from tinker_cookbook.local.errors import LocalBackendError

LossFn = Callable[[torch.Tensor, Mapping[str, torch.Tensor], Mapping[str, float]], torch.Tensor]

_RL_INPUTS = ("target_tokens", "logprobs", "advantages")


def _cross_entropy(lp: torch.Tensor, x: Mapping[str, torch.Tensor], cfg: Mapping[str, float]):
    weights = x.get("weights")
    if weights is None:
        weights = torch.ones_like(lp)
    return -(lp * weights).sum()


def _token_weights(lp: torch.Tensor, x: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Optional per-token weights of the RL losses (1 everywhere when absent)."""
    weights = x.get("weights")
    return torch.ones_like(lp) if weights is None else weights


def _importance_sampling(lp, x, cfg):
    ratio = torch.exp(lp - x["logprobs"])
    return -(_token_weights(lp, x) * ratio * x["advantages"]).sum()


def _ppo(lp, x, cfg):
    ratio = torch.exp(lp - x["logprobs"])
    clipped = ratio.clamp(cfg.get("clip_low_threshold", 0.8), cfg.get("clip_high_threshold", 1.2))
    adv = x["advantages"]
    return -(_token_weights(lp, x) * torch.minimum(ratio * adv, clipped * adv)).sum()


def _cispo(lp, x, cfg):
    ratio = torch.exp(lp - x["logprobs"])
    coef = ratio.clamp(cfg.get("clip_low_threshold", 0.0), cfg.get("clip_high_threshold", 4.0))
    return -(_token_weights(lp, x) * coef.detach() * lp * x["advantages"]).sum()


def _dro(lp, x, cfg):
    if "beta" not in cfg:
        raise LocalBackendError("loss_fn 'dro' needs loss_fn_config['beta'] (e.g. {'beta': 0.05})")
    quad = (lp - x["logprobs"]) ** 2
    return -(_token_weights(lp, x) * (lp * x["advantages"] - 0.5 * cfg["beta"] * quad)).sum()


LOSSES: dict[str, tuple[LossFn, tuple[str, ...], tuple[str, ...]]] = {
    # name: (function, required inputs, optional inputs)
    "cross_entropy": (_cross_entropy, ("target_tokens",), ("weights",)),
    "importance_sampling": (_importance_sampling, _RL_INPUTS, ("weights",)),
    "ppo": (_ppo, _RL_INPUTS, ("weights",)),
    "cispo": (_cispo, _RL_INPUTS, ("weights",)),
    "dro": (_dro, _RL_INPUTS, ("weights",)),
}


def check_loss_inputs(
    data: list[types.Datum],
    loss_fn: str,
    loss_fn_config: Mapping[str, float] | None,
    vocab_size: int,
) -> None:
    """Reject a bad request before any compute, naming the datum, field and value."""
    if loss_fn not in LOSSES:
        raise LocalBackendError(f"Unknown loss_fn {loss_fn!r}; choose one of {sorted(LOSSES)}")
    _, required, optional = LOSSES[loss_fn]
    for key, value in (loss_fn_config or {}).items():
        if not isinstance(value, int | float):
            raise LocalBackendError(f"loss_fn_config[{key!r}] must be a number, got {value!r}")
    if not data:
        raise LocalBackendError("forward_backward got an empty list of datums")
    for i, datum in enumerate(data):
        check_datum(datum, i, required, optional, vocab_size, allow_soft=loss_fn == "cross_entropy")


def check_datum(
    datum: types.Datum,
    index: int,
    required: tuple[str, ...],
    optional: tuple[str, ...],
    vocab_size: int,
    allow_soft: bool,
) -> None:
    tokens = datum.model_input.to_ints()
    n = len(tokens)
    where = f"datum {index}"
    if n == 0:
        raise LocalBackendError(f"{where}: model_input is empty")
    check_token_range(tokens, vocab_size, f"{where}: model_input")
    inputs = datum.loss_fn_inputs
    for key in required:
        if key not in inputs:
            raise LocalBackendError(f"{where}: loss_fn_inputs lacks {key!r} (has {sorted(inputs)})")
    targets = inputs["target_tokens"].to_numpy()
    if (
        targets.ndim not in (1, 2)
        or targets.shape[0] != n
        or (targets.ndim == 2 and not allow_soft)
    ):
        want = "(N,) or (N, K)" if allow_soft else "(N,)"
        raise LocalBackendError(
            f"{where}: target_tokens has shape {tuple(targets.shape)}, expected {want} with N={n} "
            "(the length of model_input; targets are pre-shifted)"
        )
    check_token_range(targets.reshape(-1).tolist(), vocab_size, f"{where}: target_tokens")
    for key in required[1:] + optional:
        if key in inputs and tuple(inputs[key].to_numpy().shape) != tuple(targets.shape):
            raise LocalBackendError(
                f"{where}: loss_fn_inputs[{key!r}] has shape {tuple(inputs[key].to_numpy().shape)}, "
                f"expected {tuple(targets.shape)} like target_tokens"
            )


def check_token_range(tokens: list[int], vocab_size: int, where: str) -> None:
    bad = [t for t in tokens if not 0 <= t < vocab_size]
    if bad:
        raise LocalBackendError(
            f"{where}: token id {bad[0]} is outside the vocabulary [0, {vocab_size})"
        )


def datum_loss(
    loss_fn: str,
    logprobs: torch.Tensor,
    inputs: Mapping[str, torch.Tensor],
    config: Mapping[str, float],
) -> torch.Tensor:
    fn, _, _ = LOSSES[loss_fn]
    return fn(logprobs, inputs, config)
