"""The supervised (SFT) loop: LoRA client from the backend factory, cross-entropy steps,
learning-rate schedule, held-out NLL, checkpoints, and resume on rerun."""

from __future__ import annotations

import logging
import time

import chz
from tinker import types

from tinker_cookbook.plot import write_run_plots
from tinker_cookbook.run_setup import is_finished, start_run, training_client_future
from tinker_cookbook.supervised.datasets import ChatDatasetBuilder, SupervisedDataset
from tinker_cookbook.utils.checkpoints import save_checkpoint
from tinker_cookbook.utils.lr_schedule import lr_multiplier
from tinker_cookbook.utils.ml_log import MetricsLogger
from tinker_cookbook.utils.progress import step_progress

logger = logging.getLogger(__name__)


@chz.chz
class Config:
    log_path: str
    model_name: str
    dataset_builder: ChatDatasetBuilder
    load_checkpoint_path: str | None = None  # start from these weights
    load_optimizer_state: bool = False  # ...and that checkpoint's AdamW moments (a `state` save)
    learning_rate: float = 1e-4
    lr_schedule: str = "linear"  # constant | linear | cosine
    lr_warmup_steps: int = 0
    num_epochs: int = 1
    max_steps: int | None = None
    lora_rank: int = 32
    seed: int = 0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_eps: float = 1e-8
    weight_decay: float = 0.0
    grad_clip_norm: float = 0.0
    eval_every: int = 10  # held-out NLL every N steps (0: only at the end)
    save_every: int = 20  # resumable checkpoint every N steps (0: only the final one)
    behavior_if_log_dir_exists: str = "resume"  # resume | overwrite | ask | raise
    wandb_project: str | None = None
    wandb_name: str | None = None
    backend: str = "auto"
    base_url: str | None = None


def compute_nll(training_client, dataset: SupervisedDataset) -> float:
    """Mean negative log-likelihood per trained token over a whole dataset (no gradient)."""
    futures = []
    for i in range(len(dataset)):
        batch = dataset.get_batch(i)
        if batch:
            futures.append((training_client.forward(batch, "cross_entropy"), batch))
    loss = sum(f.result().metrics["loss:sum"] for f, _ in futures)
    weight = sum(float(d.loss_fn_inputs["weights"].to_numpy().sum()) for _, b in futures for d in b)
    return loss / max(weight, 1e-9)


def main(config: Config) -> dict:
    """Train; returns the final checkpoint record (with `state_path` and `sampler_path`)."""
    service, last = start_run(config)
    if is_finished(last):
        return last
    train_data, test_data = config.dataset_builder()
    steps_per_epoch = len(train_data)
    total_steps = steps_per_epoch * config.num_epochs
    if config.max_steps is not None:
        total_steps = (
            min(total_steps, config.max_steps) if config.num_epochs > 1 else config.max_steps
        )
    start_step = last["step"] if last else 0

    client = training_client_future(config, service, last).result()
    ml = MetricsLogger(config.log_path, config, config.wandb_project, config.wandb_name, start_step)
    bar = step_progress(total_steps, start_step, desc="sft")
    epoch = -1
    try:
        for step in range(start_step, total_steps):
            if step // steps_per_epoch != epoch:
                epoch = step // steps_per_epoch
                train_data.set_epoch(epoch)
            metrics = _train_step(config, client, train_data, step, steps_per_epoch, total_steps)
            metrics["progress/epoch"] = epoch
            done = step + 1
            if test_data is not None and config.eval_every and done % config.eval_every == 0:
                metrics["test/nll"] = compute_nll(client, test_data)
            ml.log_metrics(metrics, step)  # before the checkpoint: a resume redoes, never skips
            if config.save_every and done % config.save_every == 0 and done < total_steps:
                save_checkpoint(
                    client, f"{done:06d}", config.log_path, {"step": done, "epoch": epoch}
                )
            bar.update(1)
        final = save_checkpoint(
            client, "final", config.log_path, {"step": total_steps}, kind="both"
        )
        evaluated_last = bool(config.eval_every) and total_steps % config.eval_every == 0
        if test_data is not None and not evaluated_last:
            ml.log_metrics({"test/nll": compute_nll(client, test_data)}, total_steps)
    finally:
        bar.close()
        ml.close()
    write_run_plots(config.log_path, ["train_mean_nll", "test/nll", "learning_rate"])
    return final


def _train_step(
    config: Config, client, data: SupervisedDataset, step: int, per_epoch: int, total: int
) -> dict:
    start = time.perf_counter()
    batch = data.get_batch(step % per_epoch)
    if not batch:
        raise ValueError(
            f"batch {step % per_epoch} of the training data is empty (all rows skipped?)"
        )
    lr = config.learning_rate * lr_multiplier(
        config.lr_schedule, step, total, config.lr_warmup_steps
    )
    adam = types.AdamParams(
        learning_rate=lr,
        beta1=config.adam_beta1,
        beta2=config.adam_beta2,
        eps=config.adam_eps,
        weight_decay=config.weight_decay,
        grad_clip_norm=config.grad_clip_norm,
    )
    fb = client.forward_backward(batch, "cross_entropy")
    optim = client.optim_step(adam)
    result, optim_result = fb.result(), optim.result()
    weight = sum(float(d.loss_fn_inputs["weights"].to_numpy().sum()) for d in batch)
    metrics = {
        "train_mean_nll": result.metrics["loss:sum"] / max(weight, 1e-9),
        "learning_rate": lr,
        "num_sequences": len(batch),
        "num_tokens": sum(d.model_input.length for d in batch),
        "num_loss_tokens": weight,
        "data/skipped_rows": data.stats.skipped_rows,
        "data/truncated_sequences": data.stats.truncated_sequences,
        "progress/step": step,
        "progress/fraction": (step + 1) / total,
        "time/step": time.perf_counter() - start,
    }
    for key, value in (optim_result.metrics or {}).items():
        metrics[f"optim/{key}"] = value
    return metrics
