"""Batched autoregressive sampling with a KV cache, per-sequence settings and stop rules.

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


def _choose_tokens(logits: torch.Tensor, jobs: list[SequenceJob]) -> torch.Tensor:
    """Sample one token per row under each job's temperature / top-k / top-p and generator."""
    chosen = torch.empty(len(jobs), dtype=torch.long)
    for i, job in enumerate(jobs):
        row = logits[i]
        if job.temperature <= 0:
            chosen[i] = int(row.argmax())
            continue
        row = row / job.temperature
        if 0 < job.top_k < row.shape[-1]:
            keep = torch.topk(row, job.top_k).indices  # exactly k, even among tied logits
            row = torch.full_like(row, float("-inf")).index_copy(0, keep, row[keep])
        if job.top_p < 1.0:
            sorted_logits, order = torch.sort(row, descending=True)
            cum = torch.softmax(sorted_logits, -1).cumsum(-1)
            drop = cum - torch.softmax(sorted_logits, -1) >= job.top_p  # keep the first over p
            row = row.clone()
            row[order[drop]] = float("-inf")
        probs = torch.softmax(row, -1)
        chosen[i] = int(torch.multinomial(probs.cpu(), 1, generator=job.generator))
    return chosen


def generate(runtime: ModelRuntime, jobs: list[SequenceJob], adapter: LoRAAdapter | None) -> None:
    """Fill each job's tokens/logprobs/stop_reason, sampling from `runtime` under `adapter`."""
    device = runtime.device
    width = padded_width([len(j.prompt) for j in jobs])
    ids = torch.zeros(len(jobs), width, dtype=torch.long)
    mask = torch.zeros(len(jobs), width, dtype=torch.long)
    for i, job in enumerate(jobs):  # left padding, so every row's last token is aligned
        ids[i, width - len(job.prompt) :] = torch.tensor(job.prompt)
        mask[i, width - len(job.prompt) :] = 1
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache(config=runtime.model.config)
    active = list(range(len(jobs)))
    with torch.no_grad(), runtime.autocast():
        hidden, cache = runtime.hidden_states(ids, mask, adapter, positions, cache)
        last_pos = positions[:, -1]
        logits = runtime.logits_fp32(hidden[:, -1], adapter)
        while True:
            logprobs = torch.log_softmax(logits, -1).cpu()
            batch_jobs = [jobs[i] for i in active]
            chosen = _choose_tokens(logits.cpu(), batch_jobs)
            keep = []
            for row, job in enumerate(batch_jobs):
                token = int(chosen[row])
                job.tokens.append(token)
                job.logprobs.append(float(logprobs[row, token]))
                if job.hit_stop(token, runtime.tokenizer):
                    job.stop_reason = "stop"
                elif len(job.tokens) < job.max_tokens:
                    keep.append(row)
            if not keep:
                return
            if len(keep) < len(active):  # drop finished rows from every cached tensor
                index = torch.tensor(keep, device=device)
                cache.batch_select_indices(index)
                mask, last_pos, chosen = mask[index], last_pos[index], chosen[keep]
                active = [active[r] for r in keep]
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            last_pos = last_pos + 1
            step_ids = chosen.to(device).unsqueeze(-1)
            hidden, cache = runtime.hidden_states(
                step_ids, mask, adapter, last_pos.unsqueeze(-1), cache
            )
            logits = runtime.logits_fp32(hidden[:, -1], adapter)
