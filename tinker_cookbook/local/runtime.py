"""One loaded base model: its weights (shared by every client of it), LoRA slots and forward
passes that return per-token log-probabilities without materialising full-vocabulary logits."""

from __future__ import annotations

import inspect
import threading
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch.utils.checkpoint import checkpoint
from transformers import AutoModelForCausalLM, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from tinker_cookbook.local.config import LocalBackendConfig
from tinker_cookbook.local.lora import LoRAAdapter, LoRALinear, use_adapter, wrap_lora_targets
from tinker_cookbook.local.models import get_tokenizer, resolve_model_dir

_LOGIT_CHUNK = 2048  # positions per lm_head chunk: bounds memory for 150k-token vocabularies


def pick_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(spec)


@dataclass
class TokenScores:
    """Log-probabilities of chosen targets, and optionally the top-k alternatives, per position."""

    target_logprobs: torch.Tensor  # [n] or [n, K]
    topk_ids: torch.Tensor | None = None  # [n, k]
    topk_logprobs: torch.Tensor | None = None  # [n, k]


class ModelRuntime:
    """A base model loaded once per process and shared by all training and sampling clients."""

    def __init__(self, name: str, config: LocalBackendConfig):
        self.name = name
        self.device = pick_device(config.device)
        self.use_bf16 = config.use_bf16
        self.path = resolve_model_dir(name)
        # GPUs hold bf16 weights; on CPU the Linears become bf16 below, the rest stays fp32.
        dtype = (
            torch.bfloat16 if (self.device.type == "cuda" and config.use_bf16) else torch.float32
        )
        hf_logging.disable_progress_bar()  # one bar per load is noise in training logs
        model = AutoModelForCausalLM.from_pretrained(str(self.path), dtype=dtype)
        model.to(self.device).eval()
        model.requires_grad_(False)
        self.model = model
        self.lora_modules: dict[str, LoRALinear] = wrap_lora_targets(model)
        if config.gradient_checkpointing:
            # Recompute each layer's activations in backward: long sequences on big models.
            model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
            model.train()  # transformers checkpoints only in train mode (Qwen3 has no dropout)
        if self.use_bf16 and self.device.type == "cpu":
            # Autocast re-casts frozen fp32 weights on every call; store them in bf16 once.
            # The unembedding stays fp32 for fine-grained logits.
            unembed = model.get_output_embeddings()
            for module in self.lora_modules.values():
                if module is not unembed:
                    module.base.to(torch.bfloat16)
        self.tokenizer: PreTrainedTokenizerBase = get_tokenizer(name)
        self.vocab_size = int(model.config.vocab_size)
        self.decoder = model.get_decoder()
        # transformers renamed `past_key_values` to `cache` (5.2x); accept either release.
        params = inspect.signature(self.decoder.forward).parameters
        self._cache_kwarg = "cache" if "cache" in params else "past_key_values"
        self.lm_head = model.get_output_embeddings()

    def autocast(self) -> AbstractContextManager:
        if not self.use_bf16:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def adapter(self, adapter: LoRAAdapter | None) -> AbstractContextManager:
        return use_adapter(self.lora_modules, adapter)

    def hidden_states(self, input_ids, attention_mask, position_ids=None, cache=None):
        """Last hidden states [B, T, H] (and the updated KV cache when `cache` is given)."""
        out = self.decoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=cache is not None,
            **{self._cache_kwarg: cache},
        )
        return out.last_hidden_state, cache  # a DynamicCache is updated in place

    def logits_fp32(self, hidden: torch.Tensor) -> torch.Tensor:
        """The unembedding in fp32 on every device: bf16 logits are too coarse (a step of
        0.125 at logit 20), which shows up as ties, importance-ratio noise and KL noise."""
        with torch.autocast(self.device.type, enabled=False):
            h = hidden.float()
            logits = torch.nn.functional.linear(h, self._unembed_fp32)
            if self.lm_head.active is not None:
                a, b, scale = self.lm_head.active
                logits = logits + (h @ a.float().t() @ b.float().t()) * scale
        return logits

    @property
    def _unembed_fp32(self) -> torch.Tensor:
        weight = self.lm_head.weight
        if weight.dtype == torch.float32:
            return weight
        if getattr(self, "_unembed_cache", None) is None:  # one fp32 copy (bf16 GPU weights)
            self._unembed_cache = weight.detach().float()
        return self._unembed_cache

    def _all_logprobs(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.logits_fp32(hidden)
        return logits - torch.logsumexp(logits, dim=-1, keepdim=True)

    def _chunk_target_logprobs(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return _gather(self._all_logprobs(hidden), targets)

    def score_positions(
        self, hidden: torch.Tensor, targets: torch.Tensor, topk: int = 0
    ) -> TokenScores:
        """Log-probs of `targets` ([n] or [n, K]) given hidden states [n, H], chunked over n.
        With gradients, each chunk's logits are recomputed in the backward pass instead of
        kept, so memory stays at one chunk of full-vocabulary logits."""
        parts, ids_parts, lp_parts = [], [], []
        training = torch.is_grad_enabled() and hidden.requires_grad
        for start in range(0, hidden.shape[0], _LOGIT_CHUNK):
            h, tgt = hidden[start : start + _LOGIT_CHUNK], targets[start : start + _LOGIT_CHUNK]
            if training:
                parts.append(checkpoint(self._chunk_target_logprobs, h, tgt, use_reentrant=False))
                continue
            logprobs = self._all_logprobs(h)
            parts.append(_gather(logprobs, tgt))
            if topk > 0:
                vals, ids = logprobs.detach().topk(topk, dim=-1)
                ids_parts.append(ids)
                lp_parts.append(vals)
        return TokenScores(
            target_logprobs=torch.cat(parts),
            topk_ids=torch.cat(ids_parts) if topk > 0 else None,
            topk_logprobs=torch.cat(lp_parts) if topk > 0 else None,
        )

    def sequence_logprobs(
        self, inputs: list[list[int]], targets: list[torch.Tensor], topk: int = 0
    ) -> list[TokenScores]:
        """Per-sequence target log-probs for one right-padded batch. Differentiable when grad
        is enabled and an adapter with trainable weights is active."""
        lengths = [len(x) for x in inputs]
        width = max(lengths)
        ids = torch.zeros(len(inputs), width, dtype=torch.long)
        mask = torch.zeros(len(inputs), width, dtype=torch.long)
        for i, seq in enumerate(inputs):
            ids[i, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[i, : len(seq)] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        # Without padding, no mask lets attention take its fused causal path.
        attention_mask = None if min(lengths) == width else mask
        with self.autocast():
            hidden, _ = self.hidden_states(ids, attention_mask)
            flat_hidden = hidden[mask.bool()]
            flat_targets = torch.cat([t.to(self.device) for t in targets])
            scores = self.score_positions(flat_hidden, flat_targets, topk)
        return _split_scores(scores, lengths)


def _gather(logprobs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Log-probs of [n] targets -> [n], or of [n, K] targets -> [n, K]."""
    if targets.dim() == 1:
        return logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return logprobs.gather(-1, targets)


def _split_scores(scores: TokenScores, lengths: list[int]) -> list[TokenScores]:
    def split(t: torch.Tensor | None) -> list[torch.Tensor | None]:
        return list(torch.split(t, lengths)) if t is not None else [None] * len(lengths)

    return [
        TokenScores(a, b, c)
        for a, b, c in zip(
            split(scores.target_logprobs),
            split(scores.topk_ids),
            split(scores.topk_logprobs),
            strict=True,
        )
    ]


class RuntimeRegistry:
    """Loads each base model at most once per (process, device) and hands out the shared copy."""

    def __init__(self) -> None:
        self._runtimes: dict[tuple[str, str, bool], ModelRuntime] = {}
        self._lock = threading.Lock()

    def get(self, name: str, config: LocalBackendConfig) -> ModelRuntime:
        key = (name, str(pick_device(config.device)), config.use_bf16)
        with self._lock:
            if key not in self._runtimes:
                self._runtimes[key] = ModelRuntime(name, config)
            return self._runtimes[key]


RUNTIMES = RuntimeRegistry()
