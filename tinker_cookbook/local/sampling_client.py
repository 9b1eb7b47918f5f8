"""`SamplingClient`: sampling and scoring from a frozen snapshot of a model (+ adapter)."""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import torch
from tinker import types

from tinker_cookbook.local.engine import BatchLimits, LocalEngine, SampleWork
from tinker_cookbook.local.errors import LocalBackendError
from tinker_cookbook.local.futures import LocalFuture
from tinker_cookbook.local.lora import LoRAAdapter
from tinker_cookbook.local.losses import check_token_range
from tinker_cookbook.local.runtime import ModelRuntime
from tinker_cookbook.local.sampler import SequenceJob
from tinker_cookbook.utils.seeding import derive_seed


class SamplingClient:
    """Samples from `runtime`'s base model with `adapter` applied (None: the base model).

    The adapter is a snapshot: training the client it came from does not change what this
    client samples. `sample` logprobs are under the model's untempered distribution, equal to
    `compute_logprobs` on the same tokens (up to bf16 batching noise, well under 0.05).
    """

    def __init__(
        self,
        engine: LocalEngine,
        runtime: ModelRuntime,
        adapter: LoRAAdapter | None,
        limits: BatchLimits,
        model_path: str | None = None,
    ):
        self._engine = engine
        self._runtime = runtime
        self._adapter = adapter
        self._limits = limits
        self.model_path = model_path

    def __repr__(self) -> str:
        return f"<local SamplingClient {self._runtime.name} adapter={self.model_path or 'none'}>"

    def get_tokenizer(self):
        return self._runtime.tokenizer

    def get_base_model(self) -> str:
        return self._runtime.name

    async def get_base_model_async(self) -> str:
        return self._runtime.name

    def sample(
        self,
        prompt: types.ModelInput,
        num_samples: int,
        sampling_params: types.SamplingParams,
        include_prompt_logprobs: bool = False,
        topk_prompt_logprobs: int = 0,
    ) -> LocalFuture[types.SampleResponse]:
        tokens = self._check_prompt(prompt)
        if num_samples < 1:
            raise LocalBackendError(f"num_samples must be >= 1, got {num_samples}")
        if topk_prompt_logprobs < 0:
            raise LocalBackendError(
                f"topk_prompt_logprobs must be >= 0, got {topk_prompt_logprobs}"
            )
        jobs = [self._job(tokens, sampling_params, i) for i in range(num_samples)]
        wants_prompt = include_prompt_logprobs or topk_prompt_logprobs > 0
        work = SampleWork(
            runtime=self._runtime,
            adapter=self._adapter,
            limits=self._limits,
            jobs=jobs,
            score_tokens=tokens if wants_prompt and len(tokens) > 1 else None,
            topk=topk_prompt_logprobs,
            finish=lambda w: _sample_response(w, include_prompt_logprobs, topk_prompt_logprobs),
        )
        return LocalFuture(self._engine.submit(work))

    async def sample_async(self, *args, **kwargs) -> types.SampleResponse:
        return await self.sample(*args, **kwargs)

    def compute_logprobs(self, prompt: types.ModelInput) -> LocalFuture[list[float | None]]:
        """One value per prompt token; the first is None (nothing precedes it)."""
        tokens = self._check_prompt(prompt)
        if len(tokens) == 1:
            return LocalFuture.completed([None])
        work = SampleWork(
            runtime=self._runtime,
            adapter=self._adapter,
            limits=self._limits,
            score_tokens=tokens,
            finish=lambda w: [None] + w.scores.target_logprobs.float().cpu().tolist(),
        )
        return LocalFuture(self._engine.submit(work))

    async def compute_logprobs_async(self, prompt: types.ModelInput) -> list[float | None]:
        return await self.compute_logprobs(prompt)

    def _check_prompt(self, prompt: types.ModelInput) -> list[int]:
        if not isinstance(prompt, types.ModelInput):
            raise LocalBackendError(
                f"prompt must be a tinker.types.ModelInput, got {type(prompt).__name__}"
            )
        tokens = prompt.to_ints()
        if not tokens:
            raise LocalBackendError("prompt is empty: give at least one token")
        check_token_range(tokens, self._runtime.vocab_size, "prompt")
        return tokens

    def _job(self, tokens: list[int], params: types.SamplingParams, index: int) -> SequenceJob:
        max_tokens = params.max_tokens if params.max_tokens is not None else 1024
        if max_tokens < 1:
            raise LocalBackendError(f"sampling_params.max_tokens must be >= 1, got {max_tokens}")
        if params.temperature < 0:
            raise LocalBackendError(
                f"sampling_params.temperature must be >= 0, got {params.temperature}"
            )
        if not 0 < params.top_p <= 1:
            raise LocalBackendError(f"sampling_params.top_p must be in (0, 1], got {params.top_p}")
        stop_ids, stop_strings = self._stops(params.stop)
        # One stream per sample of the request, derived from the request's seed (or a fresh
        # random one): the same seed gives the same samples, and no two samples share a stream.
        seed = params.seed if params.seed is not None else random.getrandbits(62)
        generator = torch.Generator().manual_seed(derive_seed(seed, "sample", index))
        return SequenceJob(
            prompt=tokens,
            max_tokens=max_tokens,
            temperature=params.temperature,
            top_k=params.top_k,
            top_p=params.top_p,
            stop_ids=frozenset(stop_ids),
            stop_strings=tuple(stop_strings),
            generator=generator,
        )

    def _stops(
        self, stop: str | Sequence[str] | Sequence[int] | None
    ) -> tuple[list[int], list[str]]:
        """None: the tokenizer's end-of-sequence token; []: no stop at all."""
        if stop is None:
            eos = self._runtime.tokenizer.eos_token_id
            return ([eos] if eos is not None else []), []
        if isinstance(stop, str):
            stop = [stop]
        ids = [s for s in stop if isinstance(s, int)]
        strings = [s for s in stop if isinstance(s, str)]
        if any(s == "" for s in strings):
            raise LocalBackendError("sampling_params.stop contains an empty string")
        check_token_range(ids, self._runtime.vocab_size, "sampling_params.stop")
        return ids, strings


def _sample_response(work: SampleWork, include_prompt: bool, topk: int) -> types.SampleResponse:
    sequences = [
        types.SampledSequence(
            stop_reason=job.stop_reason,
            sequence_id=f"seq-{id(job):x}",
            tokens_np=np.asarray(job.tokens, dtype=np.int32),
            logprobs_np=np.asarray(job.logprobs, dtype=np.float32),
        )
        for job in work.jobs
    ]
    prompt_lp, topk_lists = None, None
    n = len(work.jobs[0].prompt)
    if include_prompt:
        prompt_lp = [None] + (
            work.scores.target_logprobs.float().cpu().tolist() if work.scores else []
        )
    if topk > 0:
        topk_lists = [None]
        if work.scores is not None:
            ids = work.scores.topk_ids[:, :topk].cpu().tolist()
            lps = work.scores.topk_logprobs[:, :topk].float().cpu().tolist()
            topk_lists += [list(zip(i, lp, strict=True)) for i, lp in zip(ids, lps, strict=True)]
    assert prompt_lp is None or len(prompt_lp) == n
    return types.SampleResponse(
        sequences=sequences,
        _prompt_logprobs_list=prompt_lp,
        _topk_prompt_logprobs_list=topk_lists,
    )
