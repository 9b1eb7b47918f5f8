"""A lean decoder forward: the loaded model's own weights, few Python calls, explicit dtypes.

Transformers' generic forward makes about a hundred module calls per layer (plus our LoRA
wrappers, autocast's casts and cache bookkeeping); on small models that outweighs the
arithmetic: sampling 64 tokens for 8 prompts on a 12M-parameter model spent over 80% of its
time there. This path runs the same computation on the runtime's modules' weights, with
projections that read one input fused into one matmul, the adapter an argument, and keys and
values (when sampling) in a cache allocated once for the whole generation. Sampling, scoring
and training all use it, so a sampled token's logprob is the one the scorer and the trainer
compute. Matmuls run in the weights' dtype (bf16 under `use_bf16`), norms and the residual
stream as in transformers; on CPU attention runs in fp32, whose kernels there are both
faster (3x in training at 134 tokens) and finer than bf16's. Architectures it does not know
keep transformers' forward (`lean_decoder_for` says why).
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from tinker_cookbook.local.compiled import CompiledOrEager, mark_static
from tinker_cookbook.local.lora import LoRAAdapter, LoRALinear
from tinker_cookbook.local.projections import BoundLinear, FusedLinear, Unembedding

# Decoder-only families whose layers are: RMSNorm -> attention (optional q/k RMSNorm, rotary,
# grouped KV heads) -> residual -> RMSNorm -> SwiGLU MLP -> residual.
LEAN_MODEL_TYPES = frozenset({"qwen3", "qwen2", "llama"})
_ROWS_MULTIPLE = 64  # a padded batch's token rows, rounded up to this (see TokenRows)


@dataclass(frozen=True)
class _Layer:
    input_norm: nn.Module
    qkv: FusedLinear
    o: FusedLinear
    # q_norm's and k_norm's weights, one row per head of q then k (Qwen3); None without them
    qk_norm_weight: torch.Tensor | None
    qk_norm_eps: float
    post_norm: nn.Module
    gate_up: FusedLinear
    down: FusedLinear

    def bind(self, adapter: LoRAAdapter | None, merge: bool) -> list[BoundLinear]:
        return [f.bind(adapter, merge) for f in (self.qkv, self.o, self.gate_up, self.down)]


class KVCache:
    """Keys and values of every layer for a batch of rows, allocated once at `capacity`
    positions; positions [0, length) are filled. Rows can be dropped (finished sequences)."""

    def __init__(self, num_layers: int, key_valid: torch.Tensor, heads: int, head_dim: int, dtype):
        batch, self.capacity = key_valid.shape
        shape = (batch, heads, self.capacity, head_dim)
        # Zeros, not garbage: unfilled positions are masked out of attention, but a NaN
        # there would still poison the weighted sum (0 * NaN).
        self.keys = [key_valid.new_zeros(shape, dtype=dtype) for _ in range(num_layers)]
        self.values = [key_valid.new_zeros(shape, dtype=dtype) for _ in range(num_layers)]
        self.length = 0
        self.key_valid = key_valid  # [B, capacity]: False exactly at left padding
        self.padded = not bool(key_valid.all())
        # An eager one-token step sees every filled position but padding: one
        # [B, 1, 1, capacity] mask, made once and sliced per step (building it per step cost
        # ~20% of a decode).
        self.step_mask = key_valid[:, None, None, :] if self.padded else None
        # A compiled step attends over the whole capacity instead, so that every step has the
        # same shapes: `visible` [B, 1, 1, capacity] marks the filled positions that are not
        # padding; made at the first compiled step (eager steps never need it).
        self.visible: torch.Tensor | None = None

    def one_token_mask(self) -> torch.Tensor | None:
        return None if self.step_mask is None else self.step_mask[..., : self.length + 1]

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Store this block's [B, heads, T, d] keys/values at the next T positions; returns
        every filled position's keys and values."""
        end = self.length + k.shape[2]
        keys, values = self.keys[layer], self.values[layer]
        keys[:, :, self.length : end] = k
        values[:, :, self.length : end] = v
        return keys[:, :, :end], values[:, :, :end]

    def visible_with_next(self) -> torch.Tensor:
        """`visible`, with the position the next one-token step fills marked as well."""
        if self.visible is None:
            filled = torch.arange(self.capacity, device=self.key_valid.device) < self.length
            self.visible = (self.key_valid & filled)[:, None, None, :].clone()
        self.visible[:, 0, 0, self.length] = True
        return self.visible

    def keep_rows(self, rows: torch.Tensor) -> None:
        for store in (self.keys, self.values):
            for i, t in enumerate(store):
                store[i] = t.index_select(0, rows)
        self.key_valid = self.key_valid.index_select(0, rows)
        if self.visible is not None:
            self.visible = self.visible.index_select(0, rows)
        self.padded = not bool(self.key_valid.all())
        self.step_mask = self.key_valid[:, None, None, :] if self.padded else None


def lean_decoder_for(
    model: nn.Module,
    modules: dict[str, LoRALinear],
    attention_dtype: torch.dtype | None,
    compile_steps: bool = False,
) -> LeanDecoder | str:
    """The lean decoder of `model`, or why it has none (then transformers' forward is used).
    `attention_dtype`: what attention runs in (None: the weights' dtype). `compile_steps`:
    compile its passes (decode steps, scoring, training) with `torch.compile`."""
    config = model.config
    if config.model_type not in LEAN_MODEL_TYPES:
        return f"model type {config.model_type!r} is not one of {sorted(LEAN_MODEL_TYPES)}"
    if getattr(config, "hidden_act", "silu") != "silu":
        return f"activation {config.hidden_act!r} is not silu"
    if getattr(config, "use_sliding_window", False) or any(
        t != "full_attention" for t in getattr(config, "layer_types", None) or []
    ):
        return "it uses sliding-window attention"
    try:
        return LeanDecoder(model, modules, attention_dtype, compile_steps)
    except (AttributeError, KeyError) as exc:
        return f"its modules are not laid out as expected ({exc})"


class LeanDecoder:
    """The forward pass of a Llama-family decoder: over whole sequences (scoring, training;
    differentiable in the adapter) or step by step over a `KVCache` (sampling)."""

    def __init__(
        self,
        model: nn.Module,
        modules: dict[str, LoRALinear],
        attention_dtype: torch.dtype | None,
        compile_steps: bool = False,
    ):
        inner = model.get_decoder()
        config = model.config
        self.embed = inner.embed_tokens
        self.rotary = inner.rotary_emb
        self.final_norm = inner.norm
        self.head_dim = getattr(config, "head_dim", None) or (
            config.hidden_size // config.num_attention_heads
        )
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.grouped_kv = bool(self.num_kv_heads != self.num_heads)
        self.scaling = self.head_dim**-0.5
        self.attention_dtype = attention_dtype
        self._merged: dict[int, list[list[BoundLinear]]] = {}
        self._decode = CompiledOrEager(
            self._decode_layers, compile_steps, "the decode step", _decode_options(config)
        )
        self._prefill = CompiledOrEager(self._prefill_layers, compile_steps, "the prefill")
        self._sequence = CompiledOrEager(self._sequence_layers, compile_steps, "scoring")
        self._train = CompiledOrEager(self._sequence_layers, compile_steps, "the training pass")
        wrapped = {id(m) for m in modules.values()}
        self.layers = [self._layer(layer, wrapped) for layer in inner.layers]
        self._compiles = compile_steps
        if compile_steps:
            norms = [self.final_norm.weight, self.embed.weight, self.rotary.inv_freq]
            for layer in self.layers:
                norms += [layer.input_norm.weight, layer.post_norm.weight, layer.qk_norm_weight]
                fused = (layer.qkv, layer.o, layer.gate_up, layer.down)
                norms += [t for f in fused for t in (f.weight, f.bias, f.packed)]
            mark_static(norms)

    def _layer(self, layer: nn.Module, wrapped: set[int]) -> _Layer:
        attn, mlp = layer.self_attn, layer.mlp
        lin = [attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj]
        lin += [mlp.gate_proj, mlp.up_proj, mlp.down_proj]
        if any(id(m) not in wrapped for m in lin):
            raise KeyError("a projection is not a LoRA-wrapped Linear")
        q_norm, k_norm = getattr(attn, "q_norm", None), getattr(attn, "k_norm", None)
        qk_weight, eps = None, 0.0
        if q_norm is not None and k_norm is not None:
            qk_weight = torch.cat(
                [
                    q_norm.weight.detach().expand(self.num_heads, -1),
                    k_norm.weight.detach().expand(self.num_kv_heads, -1),
                ]
            )
            eps = q_norm.variance_epsilon
        return _Layer(
            layer.input_layernorm, FusedLinear(lin[:3]), FusedLinear([lin[3]]), qk_weight,
            eps, layer.post_attention_layernorm, FusedLinear(lin[4:6]), FusedLinear([lin[6]]),
        )  # fmt: skip

    def bind(self, adapter: LoRAAdapter | None, merge: bool) -> list[list[BoundLinear]]:
        """`adapter` applied to every projection (see `FusedLinear.bind`). A merged binding of
        an adapter nothing trains (a sampling snapshot, a loaded checkpoint: no tensor needs
        gradients) is kept while that adapter lives, so a run's many generations under one
        snapshot merge it once."""
        frozen = adapter is not None and not any(t.requires_grad for t in adapter.parameters())
        if not (merge and frozen):  # merging a trained adapter would go stale at its next step
            return self._bind_layers(adapter, merge=False)
        key = id(adapter)
        if key not in self._merged:
            self._merged[key] = self._bind_layers(adapter, merge)
            weakref.finalize(adapter, self._merged.pop, key, None)
        return self._merged[key]

    def _bind_layers(self, adapter: LoRAAdapter | None, merge: bool) -> list[list[BoundLinear]]:
        bound = [layer.bind(adapter, merge) for layer in self.layers]
        if self._compiles:
            mark_static(t for b in bound for lin in b for t in (*(lin.delta or ()), lin.packed))
        return bound

    def bind_unembedding(self, unembedding: Unembedding) -> Unembedding:
        """`unembedding` for this decoder's steps: its sizes marked static when compiling,
        once a generation (as `bind` does for the projections)."""
        if self._compiles:
            mark_static([unembedding.weight, *(unembedding.delta or ())])
        return unembedding

    def new_cache(self, key_valid: torch.Tensor) -> KVCache:
        dtype = self.attention_dtype or self.layers[0].o.weight.dtype
        cache = KVCache(len(self.layers), key_valid, self.num_kv_heads, self.head_dim, dtype)
        if self._compiles:  # [B, heads, capacity, d]: rows and capacity vary, the rest not
            mark_static([*cache.keys, *cache.values], dims=(1, 3))
        return cache

    def forward(
        self,
        ids: torch.Tensor,
        positions: torch.Tensor,
        bound: list[list[BoundLinear]],
        cache: KVCache,
    ) -> torch.Tensor:
        """Final hidden states [B, T, H] of the block `ids` [B, T] at `positions` under the
        adapter `bound` by `bind`, appended to `cache` (a generation's prompts, then one token
        a step). Eager for one-token steps: compiled ones go through `next_logits`, and one
        cache takes steps of one kind only (compiled steps keep their own mask of it)."""
        with torch.autocast(ids.device.type, enabled=False):
            one_token = ids.shape[1] == 1
            hidden, cos, sin = self._embed(ids, positions)
            start = cache.length
            if one_token:
                mask = cache.one_token_mask()
            else:
                mask = _attention_mask(cache.key_valid, cache.padded, start, ids.shape[1])
            if start == 0:  # a generation's prompts (compiled or not)
                hidden = self._prefill(hidden, cos, sin, mask, cache.keys, cache.values, bound)
                cache.length = ids.shape[1]
                return hidden
            for index, (layer, weights) in enumerate(zip(self.layers, bound, strict=True)):
                kv = functools.partial(cache.write, index)
                hidden = self._layer_forward(layer, weights, hidden, cos, sin, mask, kv)
            cache.length += ids.shape[1]
            return _rms_norm(self.final_norm, hidden)

    def next_logits(
        self,
        ids: torch.Tensor,
        positions: torch.Tensor,
        bound: list[list[BoundLinear]],
        cache: KVCache,
        unembedding: Unembedding,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """fp32 logits [B, V] of the token after each row of the block `ids` (see `forward`),
        and their log-softmax. A compiled one-token step computes them in its own graph:
        apart, the unembedding's few ops cost ~10% of a step."""
        with torch.autocast(ids.device.type, enabled=False):
            if ids.shape[1] > 1 or self._decode.compiled is None:
                return _next_token_logits(self.forward(ids, positions, bound, cache), unembedding)
            slot = torch.tensor([cache.length], device=ids.device)
            visible = cache.visible_with_next()
            args = (ids, positions, visible, slot, cache.keys, cache.values, bound, unembedding)
            out = self._decode(*args)
            cache.length += 1
            return out

    def sequence_hidden(
        self,
        ids: torch.Tensor,
        positions: torch.Tensor,
        bound: list[list[BoundLinear]],
        key_valid: torch.Tensor | None = None,
        checkpoint_layers: bool = False,
    ) -> torch.Tensor:
        """Final hidden states [N, H] of the real tokens of whole sequences `ids` [B, T] (row
        after row; `key_valid` [B, T] is False at padding, None: none), for scoring and
        training. A padded batch runs its token-wise work (norms, projections, MLP: most of
        a pass) on its real tokens (see `TokenRows`) and just attention on the padded grid;
        right-padded rows need no mask there (causal order keeps a real token off the
        padding after it). At ~20% padding, padding cost 14-17% of a pass.
        `checkpoint_layers` recomputes each layer in the backward pass instead of keeping
        it."""
        with torch.autocast(ids.device.type, enabled=False):
            padded = key_valid is not None and not bool(key_valid.all())
            rows = TokenRows.of(key_valid) if padded else None
            if rows is not None:  # the batch as one row of (nearly) just its real tokens
                flat = (ids.flatten()[rows.index][None], positions.flatten()[rows.index][None])
                hidden, cos, sin = self._embed(*flat)
            else:
                hidden, cos, sin = self._embed(ids, positions)
            right_padded = padded and bool((key_valid[:, 1:] <= key_valid[:, :-1]).all())
            mask = None if right_padded else _attention_mask(key_valid, padded, 0, ids.shape[1])
            if checkpoint_layers and torch.is_grad_enabled():
                for layer, weights in zip(self.layers, bound, strict=True):
                    args = (layer, weights, hidden, cos, sin, mask, None, rows, True)
                    hidden = checkpoint(self._layer_forward, *args, use_reentrant=False)
                hidden = _rms_norm(self.final_norm, hidden)
            else:  # scoring or training, compiled or not
                run = self._train if torch.is_grad_enabled() else self._sequence
                hidden = run(hidden, cos, sin, mask, bound, rows)
            if rows is None:
                return hidden.flatten(0, 1)
            return hidden[0, key_valid.flatten()[rows.index]]

    def _embed(
        self, ids: torch.Tensor, positions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Token embeddings [B, T, H], and the rotary cos/sin [B, T, 1, d] (one per head)."""
        hidden = self.embed(ids)
        cos, sin = self.rotary(hidden, positions)
        return hidden, cos.unsqueeze(2), sin.unsqueeze(2)

    def _sequence_layers(
        self,
        hidden: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None,
        bound: list[list[BoundLinear]],
        rows: TokenRows | None,
    ) -> torch.Tensor:
        """Whole sequences through every layer, without a cache (scoring, training)."""
        for layer, weights in zip(self.layers, bound, strict=True):
            hidden = self._layer_forward(layer, weights, hidden, cos, sin, mask, None, rows, True)
        return _rms_norm(self.final_norm, hidden)

    def _prefill_layers(
        self,
        hidden: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None,
        keys: list[torch.Tensor],
        values: list[torch.Tensor],
        bound: list[list[BoundLinear]],
    ) -> torch.Tensor:
        """Whole prompts through every layer into an empty cache: each layer's keys and values
        fill the cache's first positions, and the prompts attend over just those."""
        layers = zip(self.layers, bound, keys, values, strict=True)
        for layer, weights, key_store, value_store in layers:
            kv = functools.partial(_write_prefix, key_store, value_store)
            hidden = self._layer_forward(layer, weights, hidden, cos, sin, mask, kv, causal=True)
        return _rms_norm(self.final_norm, hidden)

    def _decode_layers(
        self,
        ids: torch.Tensor,
        positions: torch.Tensor,
        visible: torch.Tensor,
        slot: torch.Tensor,
        keys: list[torch.Tensor],
        values: list[torch.Tensor],
        bound: list[list[BoundLinear]],
        unembedding: Unembedding,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One token per row through every layer and the unembedding: its keys and values go
        to cache position `slot`, and it attends over the whole cache where `visible`. Same
        shapes every step of a generation, so it compiles to one graph."""
        hidden, cos, sin = self._embed(ids, positions)
        layers = zip(self.layers, bound, keys, values, strict=True)
        for layer, weights, key_store, value_store in layers:
            kv = functools.partial(_write_slot, key_store, value_store, slot)
            hidden = self._layer_forward(layer, weights, hidden, cos, sin, visible, kv)
        return _next_token_logits(_rms_norm(self.final_norm, hidden), unembedding)

    def _layer_forward(
        self,
        layer: _Layer,
        weights: list[BoundLinear],
        hidden: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None,
        kv: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None,
        rows: TokenRows | None = None,
        causal: bool = False,
    ) -> torch.Tensor:
        """One layer over `hidden` [B, T, H], or over just some `rows` [M, H] of a padded
        grid, which attention alone sees as the grid. Without a `mask`, attention is causal
        where `causal` (whole sequences, prompts) and sees every key where not (a one-token
        step); a plain bool, as a compiled pass cannot pass SDPA a symbolic one."""
        qkv, o, gate_up, down = weights
        one_token = rows is None and hidden.shape[1] == 1
        heads = qkv(_rms_norm(layer.input_norm, hidden), one_token)
        heads = heads.unflatten(-1, (-1, self.head_dim))
        qk, v = heads.split([self.num_heads + self.num_kv_heads, self.num_kv_heads], dim=-2)
        if layer.qk_norm_weight is not None:  # q_norm and k_norm at once
            normed = F.rms_norm(qk.float(), qk.shape[-1:], eps=layer.qk_norm_eps)
            qk = layer.qk_norm_weight * normed.to(qk.dtype)
        qk = qk * cos + _rotate_half(qk) * sin
        if rows is not None:
            qk, v = rows.to_grid(qk), rows.to_grid(v)
        q, k = qk.transpose(1, 2).split([self.num_heads, self.num_kv_heads], dim=1)
        dtype = self.attention_dtype or o.weight.dtype
        q, k, v = q.to(dtype), k.to(dtype), v.transpose(1, 2).to(dtype)
        if kv is not None:  # the cache: this block's keys and values joined to earlier ones
            k, v = kv(k, v)
        attn = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, scale=self.scaling,
            is_causal=causal and mask is None, enable_gqa=self.grouped_kv,
        ).transpose(1, 2).flatten(2)  # fmt: skip
        if rows is not None:
            attn = attn.flatten(0, 1).index_select(0, rows.index)[None]
        hidden = hidden + o(attn, one_token)
        gate, up = gate_up(_rms_norm(layer.post_norm, hidden), one_token).chunk(2, dim=-1)
        return hidden + down(F.silu(gate) * up, one_token)


@dataclass(frozen=True)
class TokenRows:
    """Which positions of a padded [B, T] grid a pass's token-wise work runs on: the real
    tokens, plus as many padding positions as round their count up to a multiple of
    `_ROWS_MULTIPLE`. Why: every row count is a new matmul shape, for which oneDNN compiles
    and caches a kernel (see `runtime.padded_width`); padding rows are kept off the real
    tokens' attention and dropped after."""

    index: torch.Tensor  # [M]: flat positions in the grid, ascending
    grid: torch.Tensor  # [B, T]: the grid's shape (its real tokens, True)

    @classmethod
    def of(cls, key_valid: torch.Tensor) -> TokenRows:
        flags = key_valid.flatten()
        real = int(flags.sum())
        rows = min(-(-real // _ROWS_MULTIPLE) * _ROWS_MULTIPLE, flags.numel())
        if rows > real:
            flags = flags.clone()
            flags[(~flags).nonzero().squeeze(-1)[: rows - real]] = True
        return cls(flags.nonzero().squeeze(-1), key_valid)

    def to_grid(self, x: torch.Tensor) -> torch.Tensor:
        """Rows [1, M, ...] on the grid [B, T, ...] (zeros elsewhere)."""
        batch, width = self.grid.shape
        grid = x.new_zeros((batch * width, *x.shape[2:])).index_copy(0, self.index, x[0])
        return grid.unflatten(0, (batch, width))


def _write_slot(
    keys: torch.Tensor, values: torch.Tensor, slot: torch.Tensor, k: torch.Tensor, v: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Store one position's keys/values at cache position `slot`; the whole cache back."""
    keys.index_copy_(2, slot, k)
    values.index_copy_(2, slot, v)
    return keys, values


def _write_prefix(
    keys: torch.Tensor, values: torch.Tensor, k: torch.Tensor, v: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Store a whole block's keys/values at the cache's first positions; the block's back."""
    keys[:, :, : k.shape[2]] = k
    values[:, :, : v.shape[2]] = v
    return k, v


def _attention_mask(
    key_valid: torch.Tensor | None, padded: bool, start: int, width: int
) -> torch.Tensor | None:
    """Which keys each of `width` new positions (from `start`) sees: earlier and its own
    positions that are not padding. None where causal order alone says it (no padding: the
    fused kernels' path). A padding position sees itself, so no row is fully masked (that
    would give NaNs)."""
    if not padded and (width == 1 or start == 0):
        return None
    end = start + width
    device = key_valid.device
    query_pos = torch.arange(start, end, device=device)[:, None]
    key_pos = torch.arange(end, device=device)[None, :]
    visible = key_valid[:, None, :end] & (key_pos <= query_pos)[None]  # [B, T, S]
    visible |= (key_pos == query_pos)[None]
    return visible[:, None]  # [B, 1, T, S]


# Up to this vocabulary a decode step's fused kernels (norms, rotary, the log-softmax over the
# vocabulary) are a few rows' work, best done on one thread: no thread pool start-up (its
# matmuls and attention keep every thread). Decode steps of the 12M student, interleaved in one
# process: one thread 1.03x at vocabulary 2,048, even at 8,192, 0.92x at 32,768, 0.95x at
# 151,936 (the log-softmax then wants every thread).
_ONE_THREAD_VOCAB = 8192


def _decode_options(config) -> dict[str, object] | None:
    return {"cpp.threads": 1} if config.vocab_size <= _ONE_THREAD_VOCAB else None


def _next_token_logits(
    hidden: torch.Tensor, unembedding: Unembedding
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and logprobs [B, V] after the last position of final hidden states [B, T, H]."""
    logits = unembedding(hidden[:, -1])
    return logits, torch.log_softmax(logits, dim=-1)


def _rms_norm(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Transformers' Llama-family RMSNorm: normalised in fp32, scaled in the input's dtype."""
    h = F.rms_norm(x.float(), x.shape[-1:], eps=norm.variance_epsilon)
    return norm.weight * h.to(x.dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)
