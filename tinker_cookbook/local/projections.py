"""The lean decoder's projections: Linears that read one input fused into one matmul, an
adapter's low-rank deltas bound to them, and (CPU, bf16) weights pre-packed for one-token steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tinker_cookbook.local.lora import LoRAAdapter, LoRALinear


class FusedLinear:
    """Several Linears that read the same input, as one matmul: their weights are re-pointed
    at slices of one tensor (no extra memory; every other forward still uses the modules).
    `bind` joins an adapter's deltas for them, once per generation."""

    def __init__(self, modules: list[LoRALinear]):
        self.paths = [m.path for m in modules]
        self.sizes = [m.out_features for m in modules]
        self.weight = _share_storage([m.base for m in modules], "weight")
        biases = [m.base.bias is not None for m in modules]
        self.bias = _share_storage([m.base for m in modules], "bias") if all(biases) else None
        if any(biases) and not all(biases):
            raise KeyError("some of the fused Linears have a bias and some do not")
        self.packed = _packed_for_decode(self.weight)

    def bind(self, adapter: LoRAAdapter | None, merge: bool) -> BoundLinear:
        """This projection under `adapter`: its deltas as differentiable (A, scaled B) in the
        weights' dtype, exactly as the training forward applies them. With `merge` and packed
        weights (CPU, bf16), one-token decode steps instead use the adapter merged into a
        packed copy: a few-row step would otherwise spend ~40% of its time on the deltas'
        tiny matmuls (their logprobs move by bf16 rounding, ~1e-3)."""
        delta = self._delta(adapter)
        if delta is None:
            return BoundLinear(self.weight, self.bias, None, self.packed)
        a, b = (t.to(self.weight.dtype) for t in delta)
        packed = None
        if merge and self.packed is not None:
            packed = _packed_for_decode(torch.addmm(self.weight, b.detach(), a.detach()))
        return BoundLinear(self.weight, self.bias, (a, b), packed)

    def _delta(self, adapter: LoRAAdapter | None) -> tuple[torch.Tensor, torch.Tensor] | None:
        """`adapter`'s deltas as one (A [n*r, in], scaled block-diagonal B [out, n*r])."""
        pairs = [adapter.weights.get(p) for p in self.paths] if adapter is not None else []
        present = [(i, pair) for i, pair in enumerate(pairs) if pair is not None]
        if not present:
            return None
        a_all = torch.cat([a for _, (a, _) in present])
        rank = present[0][1][0].shape[0]
        b_all = a_all.new_zeros(sum(self.sizes), rank * len(present), dtype=present[0][1][1].dtype)
        offsets = [sum(self.sizes[:i]) for i in range(len(self.sizes) + 1)]
        for block, (i, (_, b)) in enumerate(present):
            b_all[offsets[i] : offsets[i + 1], block * rank : (block + 1) * rank] = b
        return a_all, b_all * adapter.scale


@dataclass(frozen=True)
class BoundLinear:
    """A fused projection with one adapter applied: the base weights plus the adapter's
    low-rank delta, and optionally the whole of it packed for one-token steps."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    delta: tuple[torch.Tensor, torch.Tensor] | None
    packed: torch.Tensor | None  # weight + delta, packed (CPU bf16), for one-token inputs

    def __call__(self, x: torch.Tensor, one_token: bool) -> torch.Tensor:
        if one_token and self.packed is not None:  # bit-identical to F.linear, ~1.7x faster
            x = x.to(self.packed.dtype)  # (not the weight's: a compiled step then never reads it)
            if torch.compiler.is_compiling():  # an opaque call for the compiler
                return torch.ops.tinker_cookbook.packed_linear(x, self.packed, self.bias)
            return _packed_linear(x, self.packed, self.bias)
        x = x.to(self.weight.dtype)  # what autocast does for a matmul
        out = F.linear(x, self.weight, self.bias)
        if self.delta is None:
            return out
        a, b = self.delta
        return out + (x @ a.t()) @ b.t()


@dataclass(frozen=True)
class Unembedding:
    """The output projection in fp32 on every device, plus an adapter's low-rank delta for
    it: bf16 logits are too coarse (a step of 0.125 at logit 20), which shows up as ties,
    importance-ratio noise and KL noise. One unembedding formula for sampling, scoring and
    training."""

    weight: torch.Tensor  # [V, H], fp32
    delta: tuple[torch.Tensor, torch.Tensor] | None  # the adapter's (A [r, H], B [V, r])
    scale: float

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        with torch.autocast(hidden.device.type, enabled=False):
            h = hidden.float()
            logits = F.linear(h, self.weight)
            if self.delta is None:
                return logits
            a, b = self.delta
            return logits + (h @ a.float().t() @ b.float().t()) * self.scale


def _packed_linear(
    x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """oneDNN's linear with a weight packed by `_packed_for_decode`."""
    return torch.ops.mkldnn._linear_pointwise.default(x, packed, bias, "none", [], "")


# The same as an op the compiler calls as it is (its own lowering of the oneDNN op wants the
# weight to be a constant of the graph). Registered with the dispatcher directly, not through
# `torch.library.custom_op`, whose Python layers cost ~15 us a call: a decode step makes 32.
_OPS = torch.library.Library("tinker_cookbook", "FRAGMENT")
_OPS.define("packed_linear(Tensor x, Tensor packed, Tensor? bias) -> Tensor")
_OPS.impl("packed_linear", _packed_linear, "CompositeExplicitAutograd")


@torch.library.register_fake("tinker_cookbook::packed_linear", lib=_OPS)
def _(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return x.new_empty((*x.shape[:-1], packed.shape[0]))


def _packed_for_decode(weight: torch.Tensor) -> torch.Tensor | None:
    """On CPU, bf16 weights pre-packed in oneDNN's blocked layout for one-token decode steps:
    a matmul of a few rows spends most of its time re-laying out the weight, and packing once
    makes those ~1.7x faster with identical results (measured; prefill-sized inputs gain
    nothing, so they keep the plain weights). Costs one more copy of the projection weights,
    CPU memory only. None where this torch build cannot pack."""
    if weight.device.type != "cpu" or weight.dtype != torch.bfloat16:
        return None
    try:
        return torch.ops.mkldnn._reorder_linear_weight(weight, 8)
    except (AttributeError, RuntimeError):
        return None


def _share_storage(linears: list[nn.Linear], name: str) -> torch.Tensor:
    """One tensor holding the Linears' `name` parameters stacked by rows; each Linear's
    parameter becomes a view of it (frozen base weights: nothing trains them)."""
    joined = torch.cat([getattr(m, name).detach() for m in linears])
    start = 0
    for m in linears:
        rows = getattr(m, name).shape[0]
        setattr(m, name, nn.Parameter(joined[start : start + rows], requires_grad=False))
        start += rows
    return joined
