"""LoRA adapters that share one copy of the base weights.

Every target `nn.Linear` of a base model is wrapped once in a `LoRALinear`. The wrappers of one
model read the adapter they apply from one `AdapterSlot`, which the runtime binds for exactly
the span of a forward pass (and of each recompute in backward), from the adapter it was passed.
An adapter is a plain dict of (A, B) tensors, so a sampling snapshot is a cheap detached copy,
and adapters of any rank coexist on one model.
Saved adapters use PEFT's file layout, so `peft.PeftModel.from_pretrained` loads them too.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

LORA_ALPHA = 32.0
ATTN_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_TARGETS = ("gate_proj", "up_proj", "down_proj")
UNEMBED_TARGETS = ("lm_head",)
_PEFT_PREFIX = "base_model.model."


class AdapterSlot:
    """The adapter a model's `LoRALinear`s apply while a forward pass runs (None: the base).

    Transformers' layers call the Linears themselves, so the adapter cannot be an argument
    there; the runtime binds it around each forward call and each checkpoint recompute instead.
    """

    def __init__(self) -> None:
        self.adapter: LoRAAdapter | None = None

    @contextmanager
    def use(self, adapter: LoRAAdapter | None) -> Iterator[None]:
        """Bind `adapter` for this block, then restore whatever was bound before (so nested
        binds, e.g. a recompute inside backward, leave the outer binding intact)."""
        previous, self.adapter = self.adapter, adapter
        try:
            yield
        finally:
            self.adapter = previous


class LoRALinear(nn.Module):
    """`base(x) + scale * (x @ A^T) @ B^T` for the slot's adapter (if it adapts this path)."""

    def __init__(self, base: nn.Linear, path: str, slot: AdapterSlot):
        super().__init__()
        self.base = base
        self.path = path
        self.slot = slot

    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        adapter = self.slot.adapter
        pair = adapter.weights.get(self.path) if adapter is not None else None
        if pair is None:
            return out
        a, b = pair
        # The scale applies to the rank-r product, not the [tokens, out] one (a power of two
        # by default, so exact either way); under autocast the matmuls cast their inputs.
        low = x @ a.t() if torch.is_autocast_enabled(x.device.type) else x.to(a.dtype) @ a.t()
        return out + ((low * adapter.scale) @ b.t()).to(out.dtype)


def wrap_lora_targets(model: nn.Module, slot: AdapterSlot) -> dict[str, LoRALinear]:
    """Wrap every attention, MLP and unembedding Linear (all reading `slot`); returns them by
    module path."""
    targets = ATTN_TARGETS + MLP_TARGETS + UNEMBED_TARGETS
    found: dict[str, LoRALinear] = {}
    for path, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if child_name in targets and isinstance(child, nn.Linear):
                full_path = f"{path}.{child_name}" if path else child_name
                wrapped = LoRALinear(child, full_path, slot)
                setattr(module, child_name, wrapped)
                found[full_path] = wrapped
    return found


def target_suffixes(train_attn: bool, train_mlp: bool, train_unembed: bool) -> tuple[str, ...]:
    return (
        (ATTN_TARGETS if train_attn else ())
        + (MLP_TARGETS if train_mlp else ())
        + (UNEMBED_TARGETS if train_unembed else ())
    )


@dataclass
class LoRAAdapter:
    """Low-rank deltas for some of a model's Linears: module path -> (A [r, in], B [out, r])."""

    rank: int
    weights: dict[str, tuple[torch.Tensor, torch.Tensor]]
    alpha: float = LORA_ALPHA

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    @classmethod
    def initialize(
        cls, modules: dict[str, LoRALinear], rank: int, suffixes: tuple[str, ...], seed: int | None
    ) -> LoRAAdapter:
        """A random, B zero (PEFT's default), so a new adapter leaves the model unchanged."""
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got rank={rank}")
        if not suffixes:
            raise ValueError(
                "train_attn, train_mlp and train_unembed are all False: nothing to train"
            )
        gen = torch.Generator().manual_seed(seed if seed is not None else random.getrandbits(63))
        weights = {}
        for path, mod in modules.items():
            if path.rsplit(".", 1)[-1] not in suffixes:
                continue
            a = torch.empty(rank, mod.in_features)
            bound = 1.0 / math.sqrt(mod.in_features)
            a.uniform_(-bound, bound, generator=gen)
            b = torch.zeros(mod.out_features, rank)
            device = mod.base.weight.device
            weights[path] = (
                a.to(device).requires_grad_(True),
                b.to(device).requires_grad_(True),
            )
        return cls(rank=rank, weights=weights)

    def parameters(self) -> list[torch.Tensor]:
        return [t for pair in self.weights.values() for t in pair]

    def named_parameters(self) -> Iterator[tuple[str, torch.Tensor]]:
        for path, (a, b) in self.weights.items():
            yield f"{_PEFT_PREFIX}{path}.lora_A.weight", a
            yield f"{_PEFT_PREFIX}{path}.lora_B.weight", b

    def snapshot(self) -> LoRAAdapter:
        """A frozen copy: later training of this adapter does not change it."""
        frozen = {p: (a.detach().clone(), b.detach().clone()) for p, (a, b) in self.weights.items()}
        return LoRAAdapter(rank=self.rank, weights=frozen, alpha=self.alpha)

    def trainable_copy(self) -> LoRAAdapter:
        copy = self.snapshot()
        for t in copy.parameters():
            t.requires_grad_(True)
        return copy

    def save(self, folder: Path, base_model: str) -> None:
        """PEFT layout: adapter_model.safetensors + adapter_config.json."""
        tensors = {k: v.detach().float().cpu().contiguous() for k, v in self.named_parameters()}
        save_file(tensors, str(folder / "adapter_model.safetensors"))
        suffixes = sorted({p.rsplit(".", 1)[-1] for p in self.weights})
        config = {
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": base_model,
            "r": self.rank,
            "lora_alpha": self.alpha,
            "lora_dropout": 0.0,
            "bias": "none",
            "target_modules": suffixes,
            "fan_in_fan_out": False,
            "use_rslora": False,
            "init_lora_weights": True,
        }
        (folder / "adapter_config.json").write_text(json.dumps(config, indent=2))

    @classmethod
    def load(cls, folder: Path, modules: dict[str, LoRALinear]) -> LoRAAdapter:
        config = json.loads((folder / "adapter_config.json").read_text())
        tensors = load_file(str(folder / "adapter_model.safetensors"))
        weights = {}
        for path, mod in modules.items():
            key = f"{_PEFT_PREFIX}{path}"
            if f"{key}.lora_A.weight" in tensors:
                device = mod.base.weight.device
                weights[path] = (
                    tensors.pop(f"{key}.lora_A.weight").to(device),
                    tensors.pop(f"{key}.lora_B.weight").to(device),
                )
        if tensors:
            extra = ", ".join(sorted(tensors)[:3])
            raise ValueError(
                f"Adapter in {folder} has weights for modules this model lacks ({extra}...): "
                "it was trained on a different base model"
            )
        return cls(rank=int(config["r"]), weights=weights, alpha=float(config["lora_alpha"]))
