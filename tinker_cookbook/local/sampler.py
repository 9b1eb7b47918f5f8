"""Batched autoregressive sampling with a KV cache, per-sequence settings and stop rules.

Each decode step is one forward pass for the whole batch and one batched token choice on the
model's device: every row's temperature, top-k and top-p are applied as tensors, and each row
draws from its own pre-drawn uniform stream (inverse-CDF sampling), so a seed fixes a sequence's
samples whatever else shares its batch. Only the chosen tokens and their logprobs come back to
the host, for the stop rules.

Reported log-probabilities are those of the model's own next-token distribution (temperature
1, no top-k/top-p truncation): the same numbers `compute_logprobs` and the training forward
pass give for those tokens, which is what importance-sampling losses need.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from tinker_cookbook.local.lora import LoRAAdapter
from tinker_cookbook.local.runtime import ModelRuntime, padded_width


@dataclass
class SequenceJob:
    """One sequence to generate, and (once done) what was generated."""

    prompt: list[int]
    max_tokens: int
    temperature: float
    top_k: int
    top_p: float
    stop_ids: frozenset[int]
    stop_strings: tuple[str, ...]
    generator: torch.Generator
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    stop_reason: str = "length"

    def hit_stop(self, token: int, tokenizer) -> bool:
        if token in self.stop_ids:
            return True
        if not self.stop_strings:
            return False
        window = 4 * max(len(s) for s in self.stop_strings) + 4
        tail = tokenizer.decode(self.tokens[-window:])
        return any(s in tail for s in self.stop_strings)


@dataclass
class RowSettings:
    """The active rows' sampling settings as tensors on the model's device."""

    temperature: torch.Tensor  # [B]; 0 means greedy
    top_k: torch.Tensor  # [B] long; the vocabulary size where a row keeps every token
    top_p: torch.Tensor  # [B]
    uniforms: torch.Tensor  # [B, max new tokens]: each row's own draws, from its generator
    truncates: bool  # whether any row has top-k or top-p below the whole vocabulary

    @classmethod
    def of(cls, jobs: list[SequenceJob], vocab: int, device: torch.device) -> RowSettings:
        longest = max(j.max_tokens for j in jobs)
        top_k = [j.top_k if 0 < j.top_k < vocab else vocab for j in jobs]
        uniforms = torch.stack([torch.rand(longest, generator=j.generator) for j in jobs])
        return cls(
            temperature=torch.tensor([j.temperature for j in jobs], device=device),
            top_k=torch.tensor(top_k, device=device),
            top_p=torch.tensor([j.top_p for j in jobs], device=device),
            uniforms=uniforms.to(device),
            truncates=any(k < vocab for k in top_k) or any(j.top_p < 1.0 for j in jobs),
        )

    def keep_rows(self, rows: torch.Tensor) -> RowSettings:
        return RowSettings(
            self.temperature[rows], self.top_k[rows], self.top_p[rows], self.uniforms[rows],
            self.truncates,
        )  # fmt: skip


def choose_tokens(
    logits: torch.Tensor, rows: RowSettings, step: int, logprobs: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One token per row of fp32 `logits` [B, V] under the row's settings, and its logprob
    under the untempered distribution (`logprobs`: their log-softmax, when already there).
    Top-k keeps exactly k tokens (ties broken towards the lower id, as argmax does); top-p
    keeps the smallest head of the top-k distribution whose mass reaches p."""
    if logprobs is None:
        logprobs = torch.log_softmax(logits, dim=-1)
    greedy = rows.temperature <= 0
    scale = torch.where(greedy, torch.ones_like(rows.temperature), rows.temperature)
    scaled = logits / scale[:, None]
    vocab = logits.shape[-1]
    if rows.truncates:
        scaled, order = scaled.sort(dim=-1, descending=True, stable=True)
        rank = torch.arange(vocab, device=logits.device)
        scaled = scaled.masked_fill(rank[None, :] >= rows.top_k[:, None], float("-inf"))
        probs = torch.softmax(scaled, dim=-1)
        before = probs.cumsum(dim=-1) - probs
        probs = probs.masked_fill(before >= rows.top_p[:, None], 0.0)
    else:
        probs = torch.softmax(scaled, dim=-1)
    cumulative = probs.cumsum(dim=-1)
    target = rows.uniforms[:, step : step + 1] * cumulative[:, -1:]
    index = torch.searchsorted(cumulative, target, right=True).clamp_(max=vocab - 1)
    sampled = (order.gather(-1, index) if rows.truncates else index).squeeze(-1)
    tokens = torch.where(greedy, logits.argmax(dim=-1), sampled)
    return tokens, logprobs.gather(-1, tokens[:, None]).squeeze(-1)


class _LeanSteps:
    """Forward passes through the runtime's lean decoder and its preallocated cache."""

    def __init__(self, runtime: ModelRuntime, adapter, mask: torch.Tensor, capacity: int):
        key_valid = torch.ones(mask.shape[0], capacity, dtype=torch.bool, device=mask.device)
        key_valid[:, : mask.shape[1]] = mask.bool()
        self.decoder = runtime.lean_decoder
        self.bound = self.decoder.bind(adapter, merge=True)
        self.unembedding = self.decoder.bind_unembedding(runtime.unembedding(adapter))
        self.cache = self.decoder.new_cache(key_valid)

    def __call__(
        self, ids: torch.Tensor, positions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decoder.next_logits(ids, positions, self.bound, self.cache, self.unembedding)

    def keep_rows(self, rows: torch.Tensor) -> None:
        self.cache.keep_rows(rows)


class _TransformersSteps:
    """Forward passes through transformers' own forward and a growing `DynamicCache`."""

    def __init__(self, runtime: ModelRuntime, adapter, mask: torch.Tensor):
        self.runtime, self.adapter, self.mask = runtime, adapter, mask
        self.cache = DynamicCache(config=runtime.model.config)
        self.started = False

    def __call__(
        self, ids: torch.Tensor, positions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.started:
            self.mask = torch.cat([self.mask, torch.ones_like(self.mask[:, :1])], dim=1)
        self.started = True
        hidden, self.cache = self.runtime.hidden_states(
            ids, self.mask, self.adapter, positions, self.cache
        )
        logits = self.runtime.logits_fp32(hidden[:, -1], self.adapter)
        return logits, torch.log_softmax(logits, dim=-1)

    def keep_rows(self, rows: torch.Tensor) -> None:
        self.cache.batch_select_indices(rows)
        self.mask = self.mask[rows]


def generate(runtime: ModelRuntime, jobs: list[SequenceJob], adapter: LoRAAdapter | None) -> None:
    """Fill each job's tokens/logprobs/stop_reason, sampling from `runtime` under `adapter`
    (through its lean decoder where it has one, else transformers' forward)."""
    device = runtime.device
    width = padded_width([len(j.prompt) for j in jobs])
    ids = torch.zeros(len(jobs), width, dtype=torch.long)
    mask = torch.zeros(len(jobs), width, dtype=torch.long)
    for i, job in enumerate(jobs):  # left padding, so every row's last token is aligned
        ids[i, width - len(job.prompt) :] = torch.tensor(job.prompt)
        mask[i, width - len(job.prompt) :] = 1
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    longest = max(j.max_tokens for j in jobs)
    rows = RowSettings.of(jobs, runtime.vocab_size, device)
    active = list(range(len(jobs)))
    with torch.inference_mode(), runtime.autocast():
        # The cache is made in inference mode too: a compiled step is specialised to its
        # inputs' kind of tensor, and rows dropped later are inference tensors.
        if runtime.lean_decoder is not None:
            steps = _LeanSteps(runtime, adapter, mask, width + longest)
        else:
            steps = _TransformersSteps(runtime, adapter, mask)
        logits, logprobs = steps(ids, positions)
        last_pos = positions[:, -1]
        for step in range(longest):
            tokens, token_lp = choose_tokens(logits, rows, step, logprobs)
            # One transfer a step: float64 holds every token id exactly.
            chosen, chosen_lp = torch.stack([tokens.double(), token_lp.double()]).tolist()
            keep = []
            for row, i in enumerate(active):
                job = jobs[i]
                token = int(chosen[row])
                job.tokens.append(token)
                job.logprobs.append(chosen_lp[row])
                if job.hit_stop(token, runtime.tokenizer):
                    job.stop_reason = "stop"
                elif len(job.tokens) < job.max_tokens:
                    keep.append(row)
            if not keep:
                return
            if len(keep) < len(active):  # drop finished rows from every per-row tensor
                index = torch.tensor(keep, device=device)
                steps.keep_rows(index)
                rows = rows.keep_rows(index)
                last_pos, tokens = last_pos[index], tokens[index]
                active = [active[r] for r in keep]
            last_pos = last_pos + 1
            logits, logprobs = steps(tokens.unsqueeze(-1), last_pos.unsqueeze(-1))
