"""On-policy distillation: the student samples, each dataset's teacher scores every sampled
token, and the student minimises per-token reverse KL through the advantages.

For each sampled token t (mask 1; environment tokens have mask 0):
    reverse_kl_t = logp_student(x_t) - logp_teacher(x_t)
    advantage_t  = -kl_penalty_coef * reverse_kl_t
or, with `kl_discount_factor` g > 0, the discounted sum over this and later sampled tokens
sum_{u >= t} g^(u - t) * advantage_u. Environment rewards are normally zero here. Training
uses `loss_fn` (importance_sampling by default; ppo, cispo, dro), `num_substeps` optimizer
steps per batch, and logs the step's own policy change with `compute_post_kl`. Several datasets can each bring their own teacher and
`groups_per_batch`; their batches are concatenated and every datum is scored by its own
dataset's teacher.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import chz
import numpy as np
from tinker import types

from tinker_cookbook.checkpoint_utils import get_renderer_name_from_checkpoint
from tinker_cookbook.clients import SamplingClientLike, ServiceClientLike
from tinker_cookbook.distillation.datasets import DistillationDatasetConfig, TeacherConfig
from tinker_cookbook.local.models import get_tokenizer
from tinker_cookbook.model_info import renderer_name_of
from tinker_cookbook.renderers import Message, Renderer, get_recommended_renderer_name, get_renderer
from tinker_cookbook.rl.data_processing import DatumSource, datum_sequence, target_logprobs
from tinker_cookbook.rl.train import BatchSource, RLTrainingConfig, run_rl, with_inputs
from tinker_cookbook.rl.types import (
    EnvGroupBuilder,
    GroupIndexedDataset,
    Metrics,
    RLDataset,
    batch_of_groups,
)


@chz.chz
class Config(RLTrainingConfig):
    """The RL loop's settings (model, optimizer, loss_fn, num_substeps, compute_post_kl, ...)
    plus the datasets with their teachers and the KL penalty."""

    dataset_configs: list[DistillationDatasetConfig]
    kl_penalty_coef: float = 1.0
    kl_discount_factor: float = 0.0

    def dataset_renderer_names(self) -> list[str | None]:
        return [renderer_name_of(c.dataset_builder) for c in self.dataset_configs]


__all__ = ["Config", "DistillationDatasetConfig", "TeacherConfig", "kl_advantages", "main"]


class TeacherError(RuntimeError):
    """A teacher failed while scoring; names the teacher and the dataset."""


def kl_advantages(
    reverse_kl: np.ndarray, mask: np.ndarray, coef: float, discount: float
) -> np.ndarray:
    """-coef * reverse KL on sampled tokens, optionally summed over later sampled tokens with
    `discount` per sampled token; zero on environment tokens."""
    adv = -coef * reverse_kl * mask
    if discount <= 0:
        return adv
    positions = np.flatnonzero(mask > 0)
    running = 0.0
    for p in positions[::-1]:
        running = adv[p] + discount * running
        adv[p] = running
    return adv


class RebatchedDataset(RLDataset):
    """Any RLDataset served `groups_per_batch` groups at a time (its own batch size aside).
    A `GroupIndexedDataset` builds just the groups asked for; any other dataset is asked for
    each of its batches a step's groups come from once."""

    def __init__(self, dataset: RLDataset, groups_per_batch: int):
        if groups_per_batch < 1:
            raise ValueError(f"groups_per_batch={groups_per_batch} must be >= 1")
        self.dataset, self.groups_per_batch = dataset, groups_per_batch
        if isinstance(dataset, GroupIndexedDataset):
            self.total = dataset.num_groups()
        else:
            self.native = len(dataset.get_batch(0))
            if self.native == 0:
                raise ValueError("the dataset's first batch is empty")
            self.total = len(dataset) * self.native
        if self.total == 0:
            raise ValueError(f"{type(dataset).__name__} has no env groups")

    def __len__(self) -> int:
        return max(self.total // self.groups_per_batch, 1)

    def get_batch(self, index: int) -> list[EnvGroupBuilder]:
        if isinstance(self.dataset, GroupIndexedDataset):
            return batch_of_groups(self.dataset, index, self.groups_per_batch)
        # Keyed by (lap, inner batch): a step that wraps around the dataset gets fresh groups
        # for a second lap, never the same builder object twice.
        first = index * self.groups_per_batch
        wanted = [first + i for i in range(self.groups_per_batch)]
        keys = {(j // self.total, (j % self.total) // self.native) for j in wanted}
        batches = {key: self.dataset.get_batch(key[1]) for key in keys}
        return [
            batches[(j // self.total, (j % self.total) // self.native)][
                j % self.total % self.native
            ]
            for j in wanted
        ]


class TeacherScorer:
    """Scores one dataset's datums with its teacher and writes the KL into the advantages."""

    def __init__(
        self, name: str, teacher: TeacherConfig, client: SamplingClientLike, config: Config
    ):
        self.name, self.teacher, self.client, self.config = name, teacher, client, config
        self.own_prompt = bool(teacher.renderer_name or teacher.system_prompt)
        self.named_renderer = (
            get_renderer(teacher.renderer_name, get_tokenizer(teacher.base_model))
            if teacher.renderer_name
            else None
        )

    async def __call__(
        self,
        datums: list[types.Datum],
        origins: list[DatumSource],
        builders: Sequence[EnvGroupBuilder],
    ) -> tuple[list[types.Datum], Metrics]:
        try:
            teacher_lps = await asyncio.gather(
                *[
                    self._teacher_logprobs(d, builders[o.group_index])
                    for d, o in zip(datums, origins, strict=True)
                ]
            )
        except TeacherError:
            raise
        except Exception as exc:
            raise TeacherError(
                f"teacher {self.teacher.describe()} of dataset {self.name!r} failed while scoring: {type(exc).__name__}: {exc}"
            ) from exc
        out, kl_sum, tokens = [], 0.0, 0.0
        for datum, teacher_lp in zip(datums, teacher_lps, strict=True):
            x = datum.loss_fn_inputs
            mask = x["mask"].to_numpy()
            student_lp = (
                x["student_logprobs"] if "student_logprobs" in x else x["logprobs"]
            ).to_numpy()
            reverse_kl = (student_lp - teacher_lp) * mask
            kl_sum += float(reverse_kl.sum())
            tokens += float(mask.sum())
            adv = kl_advantages(
                reverse_kl, mask, self.config.kl_penalty_coef, self.config.kl_discount_factor
            )
            out.append(
                with_inputs(datum, advantages=(x["advantages"].to_numpy() + adv).astype(np.float32))
            )
        return out, {
            f"teacher_kl/{self.name}": kl_sum / max(tokens, 1.0),
            f"teacher_kl_tokens/{self.name}": tokens,
        }

    async def _teacher_logprobs(self, datum: types.Datum, builder: EnvGroupBuilder) -> np.ndarray:
        mask = datum.loss_fn_inputs["mask"].to_numpy()
        if not self.own_prompt:
            return await target_logprobs(self.client, datum)
        tokens = datum_sequence(datum).to_ints()
        # The teacher's own prompt + the student's completion (single-turn only).
        sampled = np.flatnonzero(mask > 0)
        if (
            len(sampled) == 0
            or sampled[-1] - sampled[0] + 1 != len(sampled)
            or sampled[-1] != len(mask) - 1
        ):
            raise TeacherError(
                f"dataset {self.name!r}: a teacher prompt of its own needs single-turn episodes"
            )
        if not isinstance(builder, ConversationGroupBuilder):
            raise TeacherError(
                f"dataset {self.name!r}: its env groups ({type(builder).__name__}) expose no "
                "`messages` to re-render the prompt for the teacher"
            )
        messages = builder.messages
        if self.teacher.system_prompt:
            messages = [{"role": "system", "content": self.teacher.system_prompt}] + [
                m for m in messages if m["role"] != "system"
            ]
        completion = tokens[sampled[0] + 1 :]
        # Only a system prompt of its own: the student's chat format (e.g. a pre-filled empty
        # think block) is kept, so the completion continues the same kind of prompt.
        renderer = self.named_renderer or (
            builder.renderer if isinstance(builder, RenderingGroupBuilder) else None
        )
        if renderer is None:
            raise TeacherError(
                f"dataset {self.name!r}: set the teacher's renderer_name (its env groups have "
                "no renderer)"
            )
        prompt = renderer.build_generation_prompt(messages).to_ints()
        lps = await self.client.compute_logprobs(types.ModelInput.from_ints(prompt + completion))
        out = np.zeros(len(mask), dtype=np.float32)
        out[sampled] = np.asarray(lps[-len(completion) :], dtype=np.float32)
        return out


def check_same_tokenizer(student: str, teacher: str) -> None:
    """Token-level KL needs one vocabulary: compare them before any sampling."""
    if student == teacher:
        return
    s, t = get_tokenizer(student), get_tokenizer(teacher)
    if s.get_vocab() != t.get_vocab():
        raise ValueError(
            f"teacher {teacher!r} and student {student!r} have different tokenizers "
            f"({len(t.get_vocab())} vs {len(s.get_vocab())} tokens); on-policy distillation scores "
            "the student's tokens with the teacher, so both must share one vocabulary"
        )


@runtime_checkable
class ConversationGroupBuilder(Protocol):
    """An env group built from one conversation prefix: what a teacher with a prompt of its
    own re-renders its way."""

    messages: list[Message]


@runtime_checkable
class RenderingGroupBuilder(Protocol):
    """An env group that says which renderer built its prompts (a teacher without a
    renderer of its own renders with it)."""

    renderer: Renderer


@runtime_checkable
class NamedDatasetBuilder(Protocol):
    dataset_name: str


def dataset_name(index: int, cfg: DistillationDatasetConfig) -> str:
    builder = cfg.dataset_builder
    named = builder.dataset_name if isinstance(builder, NamedDatasetBuilder) else None
    return cfg.name or named or f"dataset{index}"


def student_renderer_name(config: Config, cfg: DistillationDatasetConfig) -> str:
    return (
        renderer_name_of(cfg.dataset_builder)
        or config.renderer_name
        or get_recommended_renderer_name(config.model_name)
    )


def with_checkpoint_renderer(
    teacher: TeacherConfig, student_renderer: str, service: ServiceClientLike | None = None
) -> TeacherConfig:
    """A teacher checkpoint trained with another renderer than the student's scores the
    student's replies in its own chat format (unless `renderer_name` was set); says which."""
    if teacher.renderer_name or not teacher.load_checkpoint_path:
        return teacher
    recorded = get_renderer_name_from_checkpoint(service, teacher.load_checkpoint_path)
    if recorded is None or recorded == student_renderer:
        return teacher
    print(
        f"teacher {teacher.describe()}: renderer {recorded} (recorded with its checkpoint; "
        f"the student uses {student_renderer})"
    )
    return chz.replace(teacher, renderer_name=recorded)


def overall_teacher_kl(metrics: Metrics) -> Metrics:
    """`teacher_kl` over every dataset's sampled tokens (a token-weighted mean)."""
    tokens = {
        k.split("/", 1)[1]: v for k, v in metrics.items() if k.startswith("teacher_kl_tokens/")
    }
    if tokens:
        total = sum(tokens.values())
        metrics["teacher_kl"] = sum(
            metrics[f"teacher_kl/{n}"] * t for n, t in tokens.items()
        ) / max(total, 1.0)
    return metrics


async def main(config: Config) -> dict:
    for i, cfg in enumerate(config.dataset_configs):
        if cfg.teacher_config is None:
            raise ValueError(
                f"dataset_configs[{i}] ({dataset_name(i, cfg)}) has no teacher_config: every dataset needs a teacher"
            )
        check_same_tokenizer(config.model_name, cfg.teacher_config.base_model)

    async def make_sources(service: ServiceClientLike) -> list[BatchSource]:
        teachers: dict[tuple[str, str | None], SamplingClientLike] = {}
        sources = []
        for i, cfg in enumerate(config.dataset_configs):
            teacher = with_checkpoint_renderer(
                cfg.teacher_config, student_renderer_name(config, cfg), service
            )
            key = (teacher.base_model, teacher.load_checkpoint_path)
            service.require_model(teacher.base_model)  # served? fails before any sampling
            if key not in teachers:
                teachers[key] = await service.create_sampling_client(
                    base_model=teacher.base_model, model_path=teacher.load_checkpoint_path
                )
            name = dataset_name(i, cfg)
            train, test = await cfg.dataset_builder()
            scorer = TeacherScorer(name, teacher, teachers[key], config)
            batches = RebatchedDataset(train, cfg.groups_per_batch)
            sources.append(BatchSource(name, batches, scorer, test_dataset=test))
        return sources

    return await run_rl(config, make_sources, finalize_metrics=overall_teacher_kl)
