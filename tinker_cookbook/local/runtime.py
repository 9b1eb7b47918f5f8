"""One loaded base model: its weights (shared by every client of it), LoRA slots and forward
passes that return per-token log-probabilities without materialising full-vocabulary logits.

Every forward function takes the adapter to apply as an argument and binds it only for its own
span; recomputes in backward (gradient checkpointing, chunked logits) re-bind the adapter that
was passed at forward time, so a backward pass is right whenever it runs.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.checkpoint import checkpoint
from transformers import AutoModelForCausalLM, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from tinker_cookbook.local.config import LocalBackendConfig
from tinker_cookbook.local.decoder import LeanDecoder, lean_decoder_for
from tinker_cookbook.local.errors import LocalBackendError
from tinker_cookbook.local.lora import AdapterSlot, LoRAAdapter, LoRALinear, wrap_lora_targets
from tinker_cookbook.local.models import get_tokenizer, resolve_model_dir
from tinker_cookbook.local.projections import Unembedding

logger = logging.getLogger(__name__)

_LOGIT_CHUNK = 2048  # positions per lm_head chunk: bounds memory for 150k-token vocabularies
# A training chunk whose fp32 logits are smaller than this keeps them for the backward pass;
# a larger one recomputes them there (a 2048-position chunk of a 150k vocabulary is 1.2 GB).
_KEPT_LOGITS_BYTES = 64 * 2**20
_WIDTH_MULTIPLE = 16  # padded batches are this many tokens wide, a multiple (see padded_width)


def padded_width(lengths: list[int]) -> int:
    """The width of a batch of sequences: the longest when all are equally long (no padding,
    so attention keeps its fused causal path), else the longest rounded up to a multiple of
    16. Why: on CPU, oneDNN compiles and caches a kernel (~0.3 MB, in each of two caches) per
    matrix shape, and every new batch width is a new shape for every Linear; rounding keeps
    a long run on a handful of widths, at the cost of at most 15 padding tokens a row in
    batches that are padded anyway. Measured by benchmarks/memory_growth.py (100 steps): 494
    distinct matmul shapes -> 198, heap growth after warm-up 118 MB -> 33 MB."""
    longest = max(lengths)
    if min(lengths) == longest:
        return longest
    return -(-longest // _WIDTH_MULTIPLE) * _WIDTH_MULTIPLE


def pick_device(spec: str) -> torch.device:
    """`auto` -> CUDA when available, else CPU; a bare `cuda` -> the current GPU's index (so
    `cuda` and `cuda:0` name one device). A device this machine lacks is refused by name."""
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(spec)
    except RuntimeError as exc:
        raise LocalBackendError(
            f"device={spec!r} is not a torch device; use 'auto', 'cpu', 'cuda' or 'cuda:N'"
        ) from exc
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        raise LocalBackendError(f"device={spec!r} needs CUDA, which this machine does not have")
    index = torch.cuda.current_device() if device.index is None else device.index
    if index >= torch.cuda.device_count():
        raise LocalBackendError(
            f"device={spec!r}: this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    return torch.device("cuda", index)


@dataclass(frozen=True)
class RuntimeSettings:
    """Everything that shapes a loaded model; clients share a runtime only when all agree."""

    name: str
    device: str  # resolved: "cpu", "cuda:0", ...
    use_bf16: bool
    gradient_checkpointing: bool
    compile: bool

    @classmethod
    def of(cls, name: str, config: LocalBackendConfig) -> RuntimeSettings:
        return cls(
            name=name,
            device=str(pick_device(config.device)),
            use_bf16=config.use_bf16,
            gradient_checkpointing=config.gradient_checkpointing,
            compile=config.compile,
        )

    def differences(self, other: RuntimeSettings) -> str:
        """`field=mine (loaded: theirs)` for each setting that differs, for messages."""
        return ", ".join(
            f"{f.name}={getattr(self, f.name)!r} (loaded: {getattr(other, f.name)!r})"
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != getattr(other, f.name)
        )


@dataclass
class TokenScores:
    """Log-probabilities of chosen targets, and optionally the top-k alternatives, per position."""

    target_logprobs: torch.Tensor  # [n] or [n, K]
    topk_ids: torch.Tensor | None = None  # [n, k]
    topk_logprobs: torch.Tensor | None = None  # [n, k]


class ModelRuntime:
    """A base model loaded once per process (per `RuntimeSettings`) and shared by all training
    and sampling clients with those settings."""

    def __init__(self, settings: RuntimeSettings):
        self.settings = settings
        self.name = settings.name
        self.device = torch.device(settings.device)
        self.use_bf16 = settings.use_bf16
        self.path = resolve_model_dir(settings.name)
        self.slot = AdapterSlot()
        self.model = self._load()
        self.lora_modules: dict[str, LoRALinear] = wrap_lora_targets(self.model, self.slot)
        if settings.gradient_checkpointing:
            self._enable_checkpointing()
        self.lm_head = self.model.get_output_embeddings()
        if self.use_bf16 and self.device.type == "cpu":
            # Autocast re-casts frozen fp32 weights on every call; store them in bf16 once.
            # The unembedding stays fp32 for fine-grained logits.
            for module in self.lora_modules.values():
                if module is not self.lm_head:
                    module.base.to(torch.bfloat16)
        self._unembed_path = self.lm_head.path
        # One fp32 copy of bf16 (GPU) unembedding weights, made here: a copy made lazily under
        # sampling's inference mode could not be saved for a later training backward.
        weight = self.lm_head.weight
        self._unembed_copy = None if weight.dtype == torch.float32 else weight.detach().float()
        self.tokenizer: PreTrainedTokenizerBase = get_tokenizer(settings.name)
        self.vocab_size = int(self.model.config.vocab_size)
        self.decoder = self.model.get_decoder()
        # transformers renamed `past_key_values` to `cache` (5.2x); accept either release.
        params = inspect.signature(self.decoder.forward).parameters
        self._cache_kwarg = "cache" if "cache" in params else "past_key_values"
        self.lean_decoder: LeanDecoder | None = self._lean_decoder()

    def _lean_decoder(self) -> LeanDecoder | None:
        # CPU attention kernels are faster (and finer) in fp32 than in bf16; see decoder.py.
        attention_dtype = torch.float32 if self.device.type == "cpu" else None
        decoder = lean_decoder_for(
            self.model, self.lora_modules, attention_dtype, self.settings.compile
        )
        if isinstance(decoder, LeanDecoder):
            return decoder
        logger.warning("%s samples through transformers' forward (slower): %s", self.name, decoder)
        return None

    def _load(self) -> torch.nn.Module:
        # GPUs hold bf16 weights; on CPU the Linears become bf16 later, the rest stays fp32.
        use_bf16_weights = self.device.type == "cuda" and self.use_bf16
        dtype = torch.bfloat16 if use_bf16_weights else torch.float32
        hf_logging.disable_progress_bar()  # one bar per load is noise in training logs
        model = AutoModelForCausalLM.from_pretrained(str(self.path), dtype=dtype)
        model.to(self.device).eval()
        model.requires_grad_(False)
        return model

    def _enable_checkpointing(self) -> None:
        """Recompute each layer's activations in backward (long sequences on big models).
        Transformers replays a layer through its `_gradient_checkpointing_func`; ours
        re-binds the adapter the layer first ran with, whenever backward runs."""
        # transformers 5.x renamed the switch (the old name warns); accept either release.
        enable = getattr(self.model, "activation_checkpointing_enable", None)
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            self.model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
        layers = [
            m
            for m in self.model.modules()
            if getattr(m, "gradient_checkpointing", False)
            and hasattr(m, "_gradient_checkpointing_func")
        ]
        if not layers:
            raise LocalBackendError(
                f"{self.name!r} has no layers that support gradient checkpointing; "
                "run it with gradient_checkpointing=False"
            )
        for layer in layers:
            layer._gradient_checkpointing_func = self._checkpoint_with_bound_adapter
        self.model.train()  # transformers checkpoints only in train mode (Qwen3 has no dropout)

    def _checkpoint_with_bound_adapter(self, function: Callable, *args: Any, **kwargs: Any):
        adapter = self.slot.adapter  # bound by `hidden_states` for this forward pass

        def replay(*a: Any, **k: Any) -> Any:
            with self.slot.use(adapter):
                return function(*a, **k)

        return checkpoint(replay, *args, use_reentrant=False, **kwargs)

    def autocast(self) -> AbstractContextManager:
        if not self.use_bf16:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def hidden_states(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        adapter: LoRAAdapter | None,
        position_ids: torch.Tensor | None = None,
        cache: Any = None,
    ) -> tuple[torch.Tensor, Any]:
        """Last hidden states [B, T, H] under `adapter` (None: the base model), and the
        updated KV cache when `cache` is given."""
        with self.slot.use(adapter):
            out = self.decoder(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                use_cache=cache is not None,
                **{self._cache_kwarg: cache},
            )
        return out.last_hidden_state, cache  # a DynamicCache is updated in place

    def unembedding(self, adapter: LoRAAdapter | None) -> Unembedding:
        """The fp32 unembedding under `adapter` (its delta for lm_head, if it adapts it)."""
        pair = adapter.weights.get(self._unembed_path) if adapter is not None else None
        return Unembedding(self._unembed_fp32, pair, adapter.scale if pair is not None else 1.0)

    def logits_fp32(self, hidden: torch.Tensor, adapter: LoRAAdapter | None) -> torch.Tensor:
        """Logits of `hidden` under `adapter`, in fp32 whatever autocast says."""
        return self.unembedding(adapter)(hidden)

    @property
    def _unembed_fp32(self) -> torch.Tensor:
        return self._unembed_copy if self._unembed_copy is not None else self.lm_head.weight

    def _all_logprobs(self, hidden: torch.Tensor, adapter: LoRAAdapter | None) -> torch.Tensor:
        logits = self.logits_fp32(hidden, adapter)
        return logits - torch.logsumexp(logits, dim=-1, keepdim=True)

    def _chunk_target_logprobs(
        self, hidden: torch.Tensor, targets: torch.Tensor, adapter: LoRAAdapter | None
    ) -> torch.Tensor:
        return _gather(self._all_logprobs(hidden, adapter), targets)

    def score_positions(
        self,
        hidden: torch.Tensor,
        targets: torch.Tensor,
        adapter: LoRAAdapter | None,
        topk: int = 0,
    ) -> TokenScores:
        """Log-probs of `targets` ([n] or [n, K]) given hidden states [n, H], chunked over n.
        With gradients, a chunk's logits too large to keep (`_KEPT_LOGITS_BYTES`) are
        recomputed in the backward pass (from the same `adapter`, an argument of the
        recompute), so memory stays at one chunk of full-vocabulary logits; small ones are kept,
        which saves a second unembedding."""
        parts, ids_parts, lp_parts = [], [], []
        training = torch.is_grad_enabled() and hidden.requires_grad
        for start in range(0, hidden.shape[0], _LOGIT_CHUNK):
            h, tgt = hidden[start : start + _LOGIT_CHUNK], targets[start : start + _LOGIT_CHUNK]
            if training and h.shape[0] * self.vocab_size * 4 > _KEPT_LOGITS_BYTES:
                parts.append(
                    checkpoint(self._chunk_target_logprobs, h, tgt, adapter, use_reentrant=False)
                )
                continue
            logprobs = self._all_logprobs(h, adapter)
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
        self,
        inputs: list[list[int]],
        targets: list[torch.Tensor],
        adapter: LoRAAdapter | None,
        topk: int = 0,
    ) -> list[TokenScores]:
        """Per-sequence target log-probs under `adapter` for one right-padded batch.
        Differentiable when grad is enabled and the adapter has trainable weights."""
        lengths = [len(x) for x in inputs]
        width = padded_width(lengths)
        ids = torch.zeros(len(inputs), width, dtype=torch.long)
        mask = torch.zeros(len(inputs), width, dtype=torch.long)
        for i, seq in enumerate(inputs):
            ids[i, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[i, : len(seq)] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        # Without padding, no mask lets attention take its fused causal path.
        attention_mask = None if min(lengths) == width else mask
        with self.autocast():
            if self.lean_decoder is not None:
                positions = torch.arange(width, device=self.device).expand(len(inputs), -1)
                flat_hidden = self.lean_decoder.sequence_hidden(
                    ids,
                    positions,
                    self.lean_decoder.bind(adapter, merge=False),
                    key_valid=None if attention_mask is None else mask.bool(),
                    checkpoint_layers=self.settings.gradient_checkpointing,
                )
            else:
                hidden, _ = self.hidden_states(ids, attention_mask, adapter)
                flat_hidden = hidden[mask.bool()]
            flat_targets = torch.cat([t.to(self.device) for t in targets])
            scores = self.score_positions(flat_hidden, flat_targets, adapter, topk)
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
    """Loads each base model at most once per process and `RuntimeSettings`.

    A client whose settings differ from a loaded copy of the same model (say, it asks for
    gradient checkpointing, or fp32) gets its own copy with exactly its settings rather than a
    silently different model: changing the loaded copy in place would change the other
    clients' numbers mid-run. The second copy doubles that model's memory, so it is announced
    on the console, once, naming the differing settings.
    """

    def __init__(self) -> None:
        self._runtimes: dict[RuntimeSettings, ModelRuntime] = {}
        self._lock = threading.Lock()

    def get(self, name: str, config: LocalBackendConfig) -> ModelRuntime:
        settings = RuntimeSettings.of(name, config)
        with self._lock:
            runtime = self._runtimes.get(settings)
            if runtime is None:
                self._announce_copy(settings)
                runtime = self._runtimes[settings] = ModelRuntime(settings)
            return runtime

    def _announce_copy(self, settings: RuntimeSettings) -> None:
        for loaded in self._runtimes:
            if loaded.name == settings.name:
                logger.warning(
                    "Loading another copy of %r for %s: clients with different model settings "
                    "cannot share weights, so this process now holds its weights twice.",
                    settings.name,
                    settings.differences(loaded),
                )
                return


RUNTIMES = RuntimeRegistry()
