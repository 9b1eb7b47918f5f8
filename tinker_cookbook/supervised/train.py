"""The supervised (SFT) loop: LoRA client from the backend factory, cross-entropy steps,
learning-rate schedule, held-out NLL and sampling evaluators, checkpoints (recording the
renderer), and resume on rerun. `await train.main(config)`, as in the cookbook."""

from __future__ import annotations

import logging
import time
from typing import Protocol, runtime_checkable

import chz
from tinker import types

from tinker_cookbook import model_info
from tinker_cookbook.clients import TrainingClientLike
from tinker_cookbook.eval.evaluators import EvaluatorBuilder
from tinker_cookbook.model_info import renderer_name_of
from tinker_cookbook.plot import write_run_plots
from tinker_cookbook.run_setup import (
    RunConfig,
    decide_start,
    finished_before_loading,
    start_run,
    training_client_future,
)
from tinker_cookbook.supervised.data import DataStats
from tinker_cookbook.supervised.types import SupervisedDataset, SupervisedDatasetBuilder
from tinker_cookbook.utils.checkpoints import save_checkpoint_async
from tinker_cookbook.utils.lr_schedule import LRSchedule, lr_multiplier
from tinker_cookbook.utils.ml_log import MetricsLogger
from tinker_cookbook.utils.progress import step_progress

logger = logging.getLogger(__name__)


@chz.chz
class Config(RunConfig):
    """The run's settings (log_path, model_name, learning_rate, lr_schedule, lora_rank, seed,
    max_steps, eval_every, save_every, backend, ...) plus what supervised training adds."""

    dataset_builder: SupervisedDatasetBuilder
    recipe_name: str | None = None  # sent with the run's metadata (hosted Tinker lists it)
    lr_schedule: LRSchedule = "linear"
    num_epochs: int = 1
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_eps: float = 1e-8
    weight_decay: float = 0.0
    grad_clip_norm: float = 0.0
    # Sampling evaluators (e.g. pass@1), run every eval_every / infrequent_eval_every steps.
    evaluator_builders: list[EvaluatorBuilder] = chz.field(default_factory=list)
    infrequent_evaluator_builders: list[EvaluatorBuilder] = chz.field(default_factory=list)
    eval_every: int = 10  # held-out NLL and evaluators every N steps (0: only at the end)
    infrequent_eval_every: int = 100


@runtime_checkable
class CountsRows(Protocol):
    """A dataset that counts the rows it skipped and the sequences it truncated."""

    stats: DataStats


def run_renderer_name(config: Config) -> str:
    """The renderer this run trains with: the config's and the chat builder's, which must agree."""
    built = renderer_name_of(config.dataset_builder)
    return model_info.run_renderer_name(config.model_name, config.renderer_name, [built])


async def compute_nll(training_client: TrainingClientLike, dataset: SupervisedDataset) -> float:
    """Mean NLL per unit of weight over a whole dataset (no gradient): per trained token with
    0/1 weights, the mean of per-example means with per-example normalised ones."""
    futures = []
    for i in range(len(dataset)):
        batch = dataset.get_batch(i)
        if batch:
            futures.append((training_client.forward(batch, "cross_entropy"), batch))
    loss, weight = 0.0, 0.0
    for future, batch in futures:
        loss += (await future).metrics["loss:sum"]
        weight += sum(_weight_sum(d) for d in batch)
    return loss / max(weight, 1e-9)


async def main(config: Config) -> dict:
    """Train; returns the final checkpoint record (with `state_path` and `sampler_path`)."""
    renderer_name = run_renderer_name(config)
    service, last = start_run(config)
    if finished_before_loading(last, config.max_steps):
        decide_start(last, config.max_steps or 0, config.log_path, "max_steps or num_epochs")
        return last
    train_data, test_data = config.dataset_builder()
    per_epoch = len(train_data)
    begin = decide_start(
        last, total_steps(config, per_epoch), config.log_path, more="max_steps or num_epochs"
    )
    if begin.kind == "finished":
        return last
    start, total = begin.step, begin.total
    metadata = {"renderer_name": renderer_name, "recipe_name": config.recipe_name}
    client = await training_client_future(config, service, begin.checkpoint, metadata)
    evals = Evals(config)
    record = {"renderer_name": renderer_name} if renderer_name else {}
    ml = MetricsLogger(config.log_path, config, config.wandb_project, config.wandb_name, start)
    bar = step_progress(total, start, desc="sft")
    epoch = -1
    try:
        for step in range(start, total):
            if step // per_epoch != epoch:
                epoch = step // per_epoch
                train_data.set_epoch(epoch)
            metrics = await _train_step(config, client, train_data, step, per_epoch, total)
            metrics["progress/epoch"] = epoch
            done = step + 1
            metrics.update(await evals.run(client, test_data, done, final=False))
            ml.log_metrics(metrics, step)  # before the checkpoint: a resume redoes, never skips
            if config.save_every and done % config.save_every == 0 and done < total:
                state = {"step": done, "epoch": epoch, **record}
                await save_checkpoint_async(client, f"{done:06d}", config.log_path, state)
            bar.update(1)
        state = {"step": total, **record}
        final = await save_checkpoint_async(client, "final", config.log_path, state, kind="both")
        end_metrics = await evals.run(client, test_data, total, final=True)
        if end_metrics:
            # At the last step trained, the weights they measure (a continued run keeps them).
            ml.log_metrics(end_metrics, total - 1)
    finally:
        bar.close()
        ml.close()
    write_run_plots(config.log_path, ["train_mean_nll", "test/nll", "learning_rate"])
    return final


def total_steps(config: Config, per_epoch: int) -> int:
    """`num_epochs` epochs of `per_epoch` steps, cut to `max_steps` when it is set (with one
    epoch, `max_steps` alone decides: the data cycles)."""
    total = per_epoch * config.num_epochs
    if config.max_steps is None:
        return total
    return min(total, config.max_steps) if config.num_epochs > 1 else config.max_steps


class Evals:
    """Held-out NLL and sampling evaluators on their schedules; at the end, whatever did not
    run on the last step."""

    def __init__(self, config: Config):
        self.every = config.eval_every
        self.frequent = [b() for b in config.evaluator_builders]
        self.infrequent_every = config.infrequent_eval_every
        self.infrequent = [b() for b in config.infrequent_evaluator_builders]

    async def run(
        self,
        client: TrainingClientLike,
        test_data: SupervisedDataset | None,
        done: int,
        final: bool,
    ):
        def due(every: int) -> bool:
            on_schedule = bool(every) and done % every == 0
            return not on_schedule if final else on_schedule

        metrics: dict[str, float] = {}
        if test_data is not None and due(self.every):
            metrics["test/nll"] = await compute_nll(client, test_data)
        evaluators = (self.frequent if due(self.every) else []) + (
            self.infrequent if due(self.infrequent_every) else []
        )
        if evaluators:
            sampler = await client.save_weights_and_get_sampling_client()
            for evaluator in evaluators:
                metrics.update(await evaluator(sampler))
        return metrics


def _weight_sum(datum: types.Datum) -> float:
    return float(datum.loss_fn_inputs["weights"].to_numpy().sum())


async def _train_step(
    config: Config,
    client: TrainingClientLike,
    data: SupervisedDataset,
    step: int,
    per_epoch: int,
    total: int,
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
    result, optim_result = await fb, await optim
    stats = data.stats if isinstance(data, CountsRows) else None
    metrics = {
        "train_mean_nll": result.metrics["loss:sum"] / max(sum(map(_weight_sum, batch)), 1e-9),
        "learning_rate": lr,
        "num_sequences": len(batch),
        "num_tokens": sum(d.model_input.length for d in batch),
        "num_loss_tokens": sum(
            int((d.loss_fn_inputs["weights"].to_numpy() > 0).sum()) for d in batch
        ),
        "data/skipped_rows": stats.skipped_rows if stats else 0,
        "data/truncated_sequences": stats.truncated_sequences if stats else 0,
        "progress/step": step,
        "progress/fraction": (step + 1) / total,
        "time/step": time.perf_counter() - start,
    }
    for key, value in (optim_result.metrics or {}).items():
        metrics[f"optim/{key}"] = value
    return metrics
