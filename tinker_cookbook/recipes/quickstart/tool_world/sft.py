"""SFT on the tool world's transcripts, through the off-policy recipe's public entry point:
how the stage trains its teacher and warms up its student, as a user would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import chz

from tinker_cookbook.backend import BackendName
from tinker_cookbook.recipes.distillation import off_policy_reasoning


@chz.chz
class SFTSettings:
    """LoRA SFT on the transcripts: `steps` batches of `batch_size` rows (the rows repeat as
    needed). All the sequences share one target, so small batches and a constant learning rate
    learn it fastest."""

    model_name: str = "tiny-qwen3-1m"
    steps: int = 100
    batch_size: int = 2
    learning_rate: float = 3e-3
    lr_schedule: str = "constant"
    lora_rank: int = 32
    max_length: int = 1024


def sft_on_transcripts(
    transcripts_path: str | Path,
    log_path: str | Path,
    sft: SFTSettings | None = None,
    backend: BackendName = "auto",
) -> dict[str, Any]:
    """SFT on `transcripts_path`; returns the final checkpoint record (`state_path`,
    `sampler_path`). A finished run in `log_path` is reused (the recipe resumes from
    `log_path/checkpoints.jsonl`), so give each setting its own `log_path`."""
    sft = sft or SFTSettings()
    rows = sum(1 for line in Path(transcripts_path).read_text().splitlines() if line.strip())
    cli = off_policy_reasoning.CLIConfig(
        log_path=str(log_path),
        model_name=sft.model_name,
        dataset_path=str(transcripts_path),
        batch_size=sft.batch_size,
        learning_rate=sft.learning_rate,
        lr_schedule=sft.lr_schedule,
        lora_rank=sft.lora_rank,
        max_length=sft.max_length,
        # Enough epochs over the rows for `steps` batches; max_steps stops it there.
        num_epochs=max(1, -(-sft.steps * sft.batch_size // max(rows, 1))),
        max_steps=sft.steps,
        eval_every=0,
        save_every=0,
        backend=backend,
    )
    return off_policy_reasoning.main(cli)
