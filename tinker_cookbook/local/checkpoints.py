"""Saved state of a training client: a folder of safetensors + json, written atomically.

`state` folders hold the adapter and the AdamW moments (resume training exactly); `sampler`
folders hold the adapter only. Both are PEFT adapter folders plus `tinker_local.json`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from tinker_cookbook.local.errors import LocalBackendError, reject_tinker_uri
from tinker_cookbook.local.lora import LoRAAdapter
from tinker_cookbook.local.paths import write_dir_atomically

META_FILE = "tinker_local.json"
OPTIMIZER_FILE = "optimizer.safetensors"


def save_checkpoint(
    folder: Path,
    adapter: LoRAAdapter,
    base_model: str,
    kind: str,
    optimizer: torch.optim.Optimizer | None = None,
) -> Path:
    def fill(tmp: Path) -> None:
        adapter.save(tmp, base_model)
        meta = {"base_model": base_model, "kind": kind, "rank": adapter.rank, "format": 1}
        if optimizer is not None:
            tensors, meta["optimizer"] = _optimizer_tensors(adapter, optimizer)
            save_file(tensors, str(tmp / OPTIMIZER_FILE))
        # Written last: a folder without it was never completed.
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))

    return write_dir_atomically(folder, fill)


def read_checkpoint_meta(path: str) -> dict:
    """The checkpoint's metadata, or a clear error saying what is wrong with `path`."""
    reject_tinker_uri(path, "path")
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise LocalBackendError(f"Checkpoint {path!r} does not exist (expected a local folder)")
    meta_file = folder / META_FILE
    if not meta_file.exists():
        if (folder / "adapter_config.json").exists():  # a plain PEFT adapter folder
            config = json.loads((folder / "adapter_config.json").read_text())
            return {
                "base_model": config.get("base_model_name_or_path"),
                "kind": "sampler",
                "rank": config["r"],
            }
        raise LocalBackendError(
            f"Checkpoint {path!r} is incomplete or not a checkpoint: no {META_FILE}"
        )
    return json.loads(meta_file.read_text())


def _optimizer_tensors(adapter: LoRAAdapter, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    tensors, steps = {}, {}
    for name, param in adapter.named_parameters():
        state = optimizer.state.get(param)
        if not state:
            continue
        tensors[f"{name}.exp_avg"] = state["exp_avg"].detach().float().cpu().contiguous()
        tensors[f"{name}.exp_avg_sq"] = state["exp_avg_sq"].detach().float().cpu().contiguous()
        steps[name] = float(state["step"])
    return tensors, {"steps": steps}


def load_optimizer_state(
    folder: Path, adapter: LoRAAdapter, optimizer: torch.optim.Optimizer
) -> None:
    """Restore AdamW moments saved by `save_checkpoint` into a fresh optimizer of `adapter`."""
    meta = json.loads((folder / META_FILE).read_text())
    if "optimizer" not in meta:
        raise LocalBackendError(
            f"Checkpoint {str(folder)!r} holds no optimizer state (it was saved for sampling)"
        )
    tensors = load_file(str(folder / OPTIMIZER_FILE))
    steps = meta["optimizer"]["steps"]
    for name, param in adapter.named_parameters():
        if name not in steps:
            continue
        optimizer.state[param] = {
            "step": torch.tensor(steps[name]),
            "exp_avg": tensors[f"{name}.exp_avg"].to(param.device),
            "exp_avg_sq": tensors[f"{name}.exp_avg_sq"].to(param.device),
        }
