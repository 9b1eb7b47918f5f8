"""The RL loop: sample with the current policy, turn trajectories into Datums, optionally
post-process them (e.g. teacher KL for distillation), train, evaluate, checkpoint, resume.

Synchronous by default; `max_steps_off_policy=1` overlaps the next batch's rollouts with the
current training step (data at most one step stale, corrected by importance sampling).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import chz
import numpy as np
from tinker import types

from tinker_cookbook import model_info
from tinker_cookbook.clients import SamplingClientLike, ServiceClientLike, TrainingClientLike
from tinker_cookbook.completers import TinkerTokenCompleter
from tinker_cookbook.eval.evaluators import Evaluator, EvaluatorBuilder
from tinker_cookbook.model_info import renderer_name_of
from tinker_cookbook.plot import write_run_plots
from tinker_cookbook.rl.data_processing import DatumSource, groups_to_data, target_logprobs
from tinker_cookbook.rl.evaluation import RLTestSetEvaluator
from tinker_cookbook.rl.metrics import trajectory_group_metrics
from tinker_cookbook.rl.rollouts import do_group_rollouts
from tinker_cookbook.rl.types import (
    EnvGroupBuilder,
    Metrics,
    RLDataset,
    RLDatasetBuilder,
    TrajectoryGroup,
)
from tinker_cookbook.run_setup import (
    RunConfig,
    decide_start,
    finished_before_loading,
    start_run,
    training_client_future,
)
from tinker_cookbook.utils.checkpoints import save_checkpoint_async
from tinker_cookbook.utils.lr_schedule import lr_multiplier
from tinker_cookbook.utils.ml_log import MetricsLogger
from tinker_cookbook.utils.progress import step_progress
from tinker_cookbook.utils.seeding import derive_seed

logger = logging.getLogger(__name__)


RLLossFn = Literal["importance_sampling", "ppo", "cispo", "dro"]


@chz.chz
class RLTrainingConfig(RunConfig):
    """What every on-policy loop shares (plain RL and distillation), on top of the run's
    settings."""

    recipe_name: str | None = None  # sent with the run's metadata (hosted Tinker lists it)
    max_tokens: int = 512
    temperature: float = 1.0
    loss_fn: RLLossFn = "importance_sampling"
    loss_fn_config: dict[str, Any] | None = None  # e.g. ppo clip thresholds, dro beta
    num_substeps: int = 1  # optimizer steps per batch (the batch split into this many parts)
    # After each step, the KL between the policy that sampled the batch and the updated one
    # on the batch's tokens (`kl_pre_post_v1/v2`; one extra scoring pass).
    compute_post_kl: bool = False
    max_steps_off_policy: int = 0  # 0: synchronous; 1: next rollouts overlap this step's training
    evaluator_builders: list[EvaluatorBuilder] = chz.field(default_factory=list)
    # Score sampled tokens with a training forward pass too (`student_logprobs`), instead of
    # trusting the sampler's logprobs for KL estimates; logs their disagreement.
    recompute_student_logprobs: bool = False

    def dataset_renderer_names(self) -> list[str | None]:
        """The renderers the run's dataset builders use (they must agree with renderer_name)."""
        return []


@chz.chz
class Config(RLTrainingConfig):
    dataset_builder: RLDatasetBuilder

    def dataset_renderer_names(self) -> list[str | None]:
        return [renderer_name_of(self.dataset_builder)]


class PostProcess(Protocol):
    """What happens to one source's Datums before training (e.g. a teacher's KL written into
    their advantages); `builders` are the step's env groups, indexed by `DatumSource`."""

    def __call__(
        self,
        datums: list[types.Datum],
        origins: list[DatumSource],
        builders: Sequence[EnvGroupBuilder],
    ) -> Awaitable[tuple[list[types.Datum], Metrics]]: ...


@dataclass
class BatchSource:
    """One dataset in the batch mix, and what happens to its Datums before training."""

    name: str
    dataset: RLDataset
    post_process: PostProcess | None = None
    # Held-out groups, rolled out every `eval_every` steps as `test/env/...` metrics.
    test_dataset: RLDataset | None = None


@dataclass
class Rollouts:
    builders: list[Sequence[EnvGroupBuilder]]
    source_groups: list[list[TrajectoryGroup | None]]
    errors: list[str]
    seconds: float


def total_steps_of(config: RLTrainingConfig, sources: Sequence[BatchSource]) -> int:
    if config.max_steps is not None:
        return config.max_steps
    return min(len(s.dataset) for s in sources)


async def run_rl(
    config: RLTrainingConfig,
    make_sources: Callable[[ServiceClientLike], Awaitable[list[BatchSource]]],
    finalize_metrics: Callable[[Metrics], Metrics] | None = None,
) -> dict:
    """The loop itself; `make_sources(service)` builds the datasets (and, e.g., teachers);
    `finalize_metrics` may add batch-level metrics derived from the per-source ones."""
    if config.max_steps_off_policy not in (0, 1):
        raise ValueError(
            f"max_steps_off_policy={config.max_steps_off_policy}: only 0 or 1 is supported"
        )
    if config.num_substeps < 1:
        raise ValueError(f"num_substeps={config.num_substeps} must be >= 1")
    service, last = start_run(config)
    if finished_before_loading(last, config.max_steps):
        decide_start(last, config.max_steps or 0, config.log_path)  # says so
        return last
    renderer = run_renderer_name(config)
    record = {"renderer_name": renderer} if renderer else {}
    sources = await make_sources(service)
    evaluators = [b() for b in config.evaluator_builders] + [
        RLTestSetEvaluator(s.test_dataset, config.max_tokens, config.temperature, config.seed)
        for s in sources
        if s.test_dataset is not None
    ]
    begin = decide_start(last, total_steps_of(config, sources), config.log_path)
    if begin.kind == "finished":
        return last
    start, total = begin.step, begin.total
    metadata = {"renderer_name": renderer, "recipe_name": config.recipe_name}
    client = await training_client_future(config, service, begin.checkpoint, metadata)
    ml = MetricsLogger(config.log_path, config, config.wandb_project, config.wandb_name, start)
    bar = step_progress(total, start, desc="rl")
    pending: asyncio.Task | None = None
    try:
        sampler = await client.save_weights_and_get_sampling_client()
        pending = (
            asyncio.create_task(_rollouts(config, sources, sampler, start))
            if start < total
            else None
        )
        # Wall time of a step: from the end of the previous one to this step's new sampler;
        # its evaluations and checkpoints are not counted (the next step's time starts after).
        step_clock = time.perf_counter()
        for step in range(start, total):
            rollouts = await pending
            if config.max_steps_off_policy and step + 1 < total:
                pending = asyncio.create_task(_rollouts(config, sources, sampler, step + 1))
            metrics, data = await _train_on(config, client, sources, rollouts, step, total)
            if finalize_metrics is not None:
                metrics = finalize_metrics(metrics)
            sampler = await client.save_weights_and_get_sampling_client()
            if config.compute_post_kl:
                metrics.update(await compute_post_kl(data, sampler))
            if not config.max_steps_off_policy and step + 1 < total:
                pending = asyncio.create_task(_rollouts(config, sources, sampler, step + 1))
            metrics["time/step"] = time.perf_counter() - step_clock
            done = step + 1
            if evaluators and config.eval_every and done % config.eval_every == 0:
                metrics.update(await run_evaluators(evaluators, sampler))
            ml.log_metrics(metrics, step)
            if config.save_every and done % config.save_every == 0 and done < total:
                state = {"step": done, **record}
                await save_checkpoint_async(client, f"{done:06d}", config.log_path, state)
            bar.update(1)
            step_clock = time.perf_counter()
        final = await save_checkpoint_async(
            client, "final", config.log_path, {"step": total, **record}, kind="both"
        )
        if evaluators and not (config.eval_every and total % config.eval_every == 0):
            # At the last step trained, the weights they measure (a continued run keeps them).
            ml.log_metrics(await run_evaluators(evaluators, sampler), total - 1)
    finally:
        if pending is not None and not pending.done():
            pending.cancel()  # a failed step leaves no rollout running behind it
        bar.close()
        ml.close()
    write_run_plots(config.log_path, ["teacher_kl", "env/all/reward/total", "optim/loss:sum"])
    return final


def run_renderer_name(config: RLTrainingConfig) -> str:
    """The renderer the run trains with, recorded with its checkpoints: `renderer_name` and the
    dataset builders' (which must agree), else the model's recommended one."""
    return model_info.run_renderer_name(
        config.model_name, config.renderer_name, config.dataset_renderer_names()
    )


async def run_evaluators(evaluators: list[Evaluator], sampler: SamplingClientLike) -> Metrics:
    results = await asyncio.gather(*[e(sampler) for e in evaluators])
    return {k: v for r in results for k, v in r.items()}


async def _rollouts(
    config: RLTrainingConfig, sources: list[BatchSource], sampler: SamplingClientLike, step: int
) -> Rollouts:
    start = time.perf_counter()
    policy = TinkerTokenCompleter(
        sampler, config.max_tokens, config.temperature, seed=derive_seed(config.seed, "step", step)
    )
    batches: list[Sequence[EnvGroupBuilder]] = [
        s.dataset.get_batch(step % len(s.dataset)) for s in sources
    ]
    flat = [b for batch in batches for b in batch]
    groups, errors = await do_group_rollouts(flat, policy)
    if flat and all(g is None for g in groups):
        raise RuntimeError(
            f"every environment group of step {step} failed; first error: {errors[0]}"
        )
    groups = drop_ungraded_groups(flat, groups, errors, step)
    per_source, i = [], 0
    for batch in batches:
        per_source.append(groups[i : i + len(batch)])
        i += len(batch)
    return Rollouts(batches, per_source, errors, time.perf_counter() - start)


class GradingFailure(RuntimeError):
    """Most groups of a step could not be graded: training on them would learn from zeros."""


def drop_ungraded_groups(
    builders: Sequence[EnvGroupBuilder], groups: list, errors: list[str], step: int
) -> list:
    """Groups whose grader produced no reward are dropped (and counted in `errors`); when they
    are most of the step's groups, the run stops naming the tasks and the first error."""
    failing = [(b, b.grading_errors()) for b in builders]
    failing = [(b, e) for b, e in failing if e]
    if not failing:
        return groups
    named = [re.match(r"task '([^']+)'", e[0]) for _, e in failing]
    names = sorted({m.group(1) if m else "?" for m in named})
    first = failing[0][1][0]
    if 2 * len(failing) > len(builders):
        raise GradingFailure(
            f"step {step}: graders of {len(failing)} of {len(builders)} groups produced no "
            f"reward (tasks: {', '.join(names[:10])}); first error: {first}"
        )
    print(f"step {step}: dropped {len(failing)} group(s) whose grader produced no reward "
          f"(tasks: {', '.join(names[:10])}); first error: {first}")  # fmt: skip
    dropped = {id(b) for b, _ in failing}
    errors.extend(f"grading error: {e[0]}" for _, e in failing)
    return [None if id(b) in dropped else g for b, g in zip(builders, groups, strict=True)]


async def _train_on(
    config: RLTrainingConfig,
    client: TrainingClientLike,
    sources: list[BatchSource],
    rollouts: Rollouts,
    step: int,
    total: int,
) -> tuple[Metrics, list[types.Datum]]:
    """Rollouts -> Datums (post-processed per source) -> one training step; returns its
    metrics and the Datums it trained on."""
    start = time.perf_counter()
    all_groups = [g for groups in rollouts.source_groups for g in groups if g is not None]
    metrics: Metrics = trajectory_group_metrics(all_groups)
    data: list[types.Datum] = []
    dropped_total, scoring_s = 0, 0.0
    for source, builders, groups in zip(
        sources, rollouts.builders, rollouts.source_groups, strict=True
    ):
        datums, origins, dropped = groups_to_data(groups)
        dropped_total += dropped
        if config.recompute_student_logprobs and datums:
            datums, disagreement = await recompute_student_logprobs(client, datums)
            metrics[f"student_logprob_disagreement/{source.name}"] = disagreement
        if source.post_process is not None and datums:
            scoring_start = time.perf_counter()
            datums, extra = await source.post_process(datums, origins, builders)
            metrics.update(extra)
            scoring_s += time.perf_counter() - scoring_start
        data += datums
    if not data:
        raise RuntimeError(f"step {step}: no trajectory had a sampled token to train on")
    lr = config.learning_rate * lr_multiplier(
        config.lr_schedule, step, total, config.lr_warmup_steps
    )
    optim_start = time.perf_counter()
    step_metrics, train_logprobs = await train_step(
        client, data, lr, config.num_substeps, config.loss_fn, config.loss_fn_config
    )
    optim_s = time.perf_counter() - optim_start
    metrics.update(step_metrics | kl_sample_train(data, train_logprobs))
    sampled = sum(float(d.loss_fn_inputs["mask"].to_numpy().sum()) for d in data)
    metrics.update(
        {
            "optim/learning_rate": lr,
            "optim/num_datums": len(data),
            "optim/num_sampled_tokens": sampled,
            "env/failed_groups": len(rollouts.errors),
            "env/grading_error": sum(e.startswith("grading error") for e in rollouts.errors),
            "data/dropped_empty_trajectories": dropped_total,
            "progress/step": step,
            "progress/fraction": (step + 1) / total,
            "time/rollouts": rollouts.seconds,
            "time/teacher_scoring": scoring_s,
            "time/optim": optim_s,
            "time/train": time.perf_counter() - start,
        }
    )
    return metrics, data


def split_evenly[T](items: list[T], parts: int) -> list[list[T]]:
    """`items` in order, as `parts` consecutive runs whose sizes differ by at most one."""
    size, extra = divmod(len(items), parts)
    bounds = [i * size + min(i, extra) for i in range(parts + 1)]
    return [items[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


async def train_step(
    client: TrainingClientLike,
    data: list[types.Datum],
    learning_rate: float,
    num_substeps: int,
    loss_fn: RLLossFn,
    loss_fn_config: dict[str, Any] | None,
) -> tuple[Metrics, list[np.ndarray | None]]:
    """The batch as `num_substeps` consecutive parts, each a forward_backward and an
    optim_step (all queued at once; the backend runs them in order): several smaller updates
    from one batch. Returns the summed loss, the last step's optimizer metrics, and each
    datum's logprobs under the weights that trained on it."""
    parts = split_evenly(data, min(num_substeps, len(data)))
    adam = types.AdamParams(learning_rate=learning_rate)
    calls = [
        (
            client.forward_backward([as_loss_datum(d) for d in part], loss_fn, loss_fn_config),
            client.optim_step(adam),
        )
        for part in parts
    ]
    loss, optim_metrics, logprobs = 0.0, {}, []
    for part, (fb, optim) in zip(parts, calls, strict=True):
        result, optim_result = await fb, await optim
        loss += result.metrics.get("loss:sum", float("nan"))
        outputs = result.loss_fn_outputs or [{}] * len(part)
        logprobs += [o["logprobs"].to_numpy() if "logprobs" in o else None for o in outputs]
        optim_metrics = optim_result.metrics or {}
    metrics: Metrics = {"optim/loss:sum": loss, "optim/num_substeps": len(parts)}
    return metrics | {f"optim/{k}": v for k, v in optim_metrics.items()}, logprobs


def kl_sample_train(data: list[types.Datum], train_logprobs: list[np.ndarray | None]) -> Metrics:
    """How far the trainer's logprobs of the sampled tokens are from the sampler's (v1: mean
    difference, v2: half the mean square), and the sampler's entropy estimate."""
    if len(train_logprobs) != len(data) or any(lp is None for lp in train_logprobs):
        return {}
    diffs, sampled = [], []
    for datum, train_lp in zip(data, train_logprobs, strict=True):
        mask = datum.loss_fn_inputs["mask"].to_numpy() > 0
        sample_lp = datum.loss_fn_inputs["logprobs"].to_numpy()[mask]
        diffs.append(sample_lp - np.asarray(train_lp)[mask])
        sampled.append(sample_lp)
    flat = np.concatenate(diffs)
    if flat.size == 0:
        return {}
    return {
        "optim/kl_sample_train_v1": float(flat.mean()),
        "optim/kl_sample_train_v2": float(0.5 * (flat**2).mean()),
        "optim/entropy": float(-np.concatenate(sampled).mean()),
    }


async def compute_post_kl(data: list[types.Datum], sampler: SamplingClientLike) -> Metrics:
    """KL on the batch's sampled tokens between the policy that sampled them and `sampler`
    (the weights after the step): v1 = mean(logp_before - logp_after), v2 = half the mean
    square. How far one step moved the policy."""
    after = await asyncio.gather(*[target_logprobs(sampler, d) for d in data])
    diffs = []
    for datum, new in zip(data, after, strict=True):
        mask = datum.loss_fn_inputs["mask"].to_numpy() > 0
        diffs.append((datum.loss_fn_inputs["logprobs"].to_numpy() - new)[mask])
    flat = np.concatenate(diffs)
    return {"kl_pre_post_v1": float(flat.mean()), "kl_pre_post_v2": float(0.5 * (flat**2).mean())}


def masked_mean(values: np.ndarray, mask: np.ndarray) -> float:
    return float((values * mask).sum() / max(mask.sum(), 1.0))


async def recompute_student_logprobs(
    client: TrainingClientLike, datums: list[types.Datum]
) -> tuple[list[types.Datum], float]:
    """Attach the trainer's own logprobs of the sampled tokens as `student_logprobs`; returns
    the mean absolute difference from the sampler's on sampled tokens."""
    result = await client.forward(
        [loss_inputs_only(d, ("target_tokens",)) for d in datums], "cross_entropy"
    )
    out, diffs, counts = [], 0.0, 0.0
    for datum, lp_out in zip(datums, result.loss_fn_outputs, strict=True):
        recomputed = lp_out["logprobs"].to_numpy()
        mask = datum.loss_fn_inputs["mask"].to_numpy()
        diffs += float(
            (np.abs(recomputed - datum.loss_fn_inputs["logprobs"].to_numpy()) * mask).sum()
        )
        counts += float(mask.sum())
        out.append(with_inputs(datum, student_logprobs=recomputed))
    return out, diffs / max(counts, 1.0)


def with_inputs(datum: types.Datum, **arrays: np.ndarray) -> types.Datum:
    return types.Datum(
        model_input=datum.model_input, loss_fn_inputs={**datum.loss_fn_inputs, **arrays}
    )


def as_loss_datum(datum: types.Datum) -> types.Datum:
    """The datum the loss sees: sampled tokens weighted 1, environment tokens 0 (so a loss
    with a per-token term beyond the advantage, like dro's, ignores environment tokens)."""
    inputs = datum.loss_fn_inputs
    return types.Datum(
        model_input=datum.model_input,
        loss_fn_inputs={k: inputs[k] for k in ("target_tokens", "logprobs", "advantages")}
        | {"weights": inputs["mask"]},
    )


def loss_inputs_only(
    datum: types.Datum, keys: tuple[str, ...] = ("target_tokens", "logprobs", "advantages")
) -> types.Datum:
    """Only what the loss reads: bookkeeping arrays (mask, student_logprobs) stay here."""
    return types.Datum(
        model_input=datum.model_input,
        loss_fn_inputs={k: v for k, v in datum.loss_fn_inputs.items() if k in keys},
    )


async def main(config: Config) -> dict:
    async def sources(service: ServiceClientLike) -> list[BatchSource]:
        train, test = await config.dataset_builder()
        return [BatchSource("train", train, test_dataset=test)]

    return await run_rl(config, sources)
