"""Datums from rendered tokens and weights, and the NLL metrics of supervised training."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
from tinker import types

logger = logging.getLogger(__name__)

Reduction = Literal["none", "mean"]


def datum_from_model_input_weights(
    model_input: types.ModelInput,
    weights: torch.Tensor | Sequence[float],
    max_length: int | None = None,
    reduction: Reduction = "none",
) -> types.Datum:
    """Next-token form of one sequence: input[:-1] predicts tokens[1:] with weights[1:].

    An over-long sequence keeps its first `max_length` tokens (never dropped). `reduction="mean"`
    scales the weights to sum to 1, so every example counts equally however long it is;
    `"none"` keeps 0/1 weights, so every trained token counts equally (a token-sum loss)."""
    tokens = model_input.to_ints()
    w = torch.as_tensor(weights, dtype=torch.float32).reshape(-1)
    if len(w) != len(tokens):
        raise ValueError(f"{len(w)} weights for a sequence of {len(tokens)} tokens")
    if max_length is not None and len(tokens) > max_length:
        tokens, w = tokens[:max_length], w[:max_length]
    if len(tokens) < 2:
        raise ValueError(f"a training sequence needs at least 2 tokens, got {len(tokens)}")
    w = w[1:]
    if reduction == "mean":
        total = float(w.sum())
        if total > 0:
            w = w / total
    elif reduction != "none":
        raise ValueError(f"reduction={reduction!r} is not 'none' or 'mean'")
    targets = tokens[1:]
    return types.Datum(
        model_input=types.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={
            "target_tokens": types.TensorData(data=targets, dtype="int64", shape=[len(targets)]),
            "weights": types.TensorData(data=w.tolist(), dtype="float32", shape=[len(w)]),
        },
    )


def compute_mean_nll(
    logprobs_list: Sequence[types.TensorData], weights_list: Sequence[types.TensorData]
) -> float:
    """-sum(logprob * weight) / sum(weight) over a batch (NaN when nothing is weighted)."""
    total, weight = 0.0, 0.0
    for logprobs, weights in zip(logprobs_list, weights_list, strict=True):
        w = weights.to_torch().float()
        total += float(logprobs.to_torch().float().dot(w))
        weight += float(w.sum())
    return -total / weight if weight > 0 else float("nan")


def compute_bpb(
    logprobs_list: Sequence[types.TensorData],
    weights_list: Sequence[types.TensorData],
    target_tokens_list: Sequence[types.TensorData],
    tokenizer: Any,
) -> float:
    """Bits per UTF-8 byte of the trained, non-special target tokens: an NLL comparable across
    tokenizers. Weights only select tokens (> 0), so per-example normalisation does not matter."""
    special = set(getattr(tokenizer, "all_special_ids", None) or [])
    nats, n_bytes = 0.0, 0
    for logprobs, weights, targets in zip(
        logprobs_list, weights_list, target_tokens_list, strict=True
    ):
        ids = [int(t) for t in targets.tolist()]
        counted = [w > 0 and t not in special for w, t in zip(weights.tolist(), ids, strict=True)]
        nats -= float(logprobs.to_torch()[torch.tensor(counted, dtype=torch.bool)].sum())
        n_bytes += sum(_byte_length(run, tokenizer) for run in _runs(ids, counted))
    return nats / (math.log(2) * n_bytes) if n_bytes else float("nan")


def _runs(ids: list[int], counted: list[bool]) -> list[list[int]]:
    """Contiguous runs of counted tokens, decoded separately so gaps never merge text."""
    runs, run = [], []
    for token, keep in zip(ids, counted, strict=True):
        if keep:
            run.append(token)
        elif run:
            runs, run = [*runs, run], []
    return [*runs, run] if run else runs


def _byte_length(ids: list[int], tokenizer: Any) -> int:
    return len(tokenizer.decode(ids, skip_special_tokens=False).encode("utf-8"))
