"""Environments and what rolling them out produces (the Tinker cookbook's RL types).

An `Env` is token-level and single-use: it gives an observation (prompt tokens) and a stop
condition, takes the policy's sampled tokens, and answers with a reward and the next
observation. Envs come in groups (several attempts at one prompt, so rewards can be centred)
from an `EnvGroupBuilder`; an `RLDataset` hands out batches of builders.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypedDict

import chz
import tinker

from tinker_cookbook.completers import StopCondition, TokensWithLogprobs

__all__ = [
    "Action",
    "ActionExtra",
    "Env",
    "EnvGroupBuilder",
    "Logprobs",
    "Logs",
    "Metrics",
    "Observation",
    "RLDataset",
    "RLDatasetBuilder",
    "RolloutError",
    "StepResult",
    "StopCondition",
    "StopReason",
    "TokensWithLogprobs",
    "Trajectory",
    "TrajectoryGroup",
    "Transition",
]

Action = list[int]
Observation = tinker.ModelInput
Logprobs = list[float]
Metrics = dict[str, float | int]
"""Numbers that are averaged into the training logs."""
Logs = dict[str, str | int | float]
"""Per-episode details for people reading a run (not aggregated)."""

STOP_METRIC_PREFIX = "stop/"


class StopReason(StrEnum):
    """Why an episode ended. An env that knows reports it as the metric `stop/<reason>` = 1 on
    its last step; the rollout copies it to `Trajectory.stop_reason`."""

    COMPLETED = "completed"
    TOOL_STOPPED = "tool_stopped"
    MAX_TURNS = "max_turns"
    MAX_TOKENS = "max_tokens"
    MAX_SAMPLED_TOKENS = "max_sampled_tokens"
    MAX_TOOL_CALLS = "max_tool_calls"
    CONTEXT_OVERFLOW = "context_overflow"
    PARSE_ERROR = "parse_error"
    ROLLOUT_TIMEOUT = "rollout_timeout"


@dataclass
class StepResult:
    reward: float
    episode_done: bool
    next_observation: Observation
    next_stop_condition: StopCondition
    metrics: Metrics = field(default_factory=dict)
    logs: Logs = field(default_factory=dict)


@dataclass
class Transition:
    """What the policy saw (`ob`), what it sampled (`ac`), and what that earned."""

    ob: Observation
    ac: TokensWithLogprobs
    reward: float
    episode_done: bool
    metrics: Metrics = field(default_factory=dict)
    logs: Logs = field(default_factory=dict)


class ActionExtra(TypedDict, total=False):
    """What the rollout knows about an action besides its tokens, passed to `Env.step`."""

    stop_reason: tinker.StopReason  # "stop": hit a stop sequence; "length": ran out of tokens


class Env(ABC):
    """One episode; a new Env per episode.

    `step` may leave out `extra` (`async def step(self, action)`): the rollout passes it only
    to envs whose `step` accepts it.
    """

    @abstractmethod
    async def initial_observation(self) -> tuple[Observation, StopCondition]: ...

    @abstractmethod
    async def step(self, action: Action, *, extra: ActionExtra | None = None) -> StepResult: ...


@dataclass(frozen=True)
class Trajectory:
    """One episode: its transitions and the observation after the last action."""

    transitions: list[Transition]
    final_ob: Observation
    stop_reason: str | None = None  # a StopReason when the env reported one


@dataclass(frozen=True)
class RolloutError:
    """A trajectory that failed, kept as plain data (it may cross process boundaries)."""

    error_type: str
    error_message: str


class EnvGroupBuilder(ABC):
    """Makes the envs of one group (e.g. `group_size` attempts at one prompt); rewards are
    centred within the group, and `compute_group_rewards` sees the whole group (for pairwise
    or ranking rewards)."""

    @abstractmethod
    async def make_envs(self) -> Sequence[Env]: ...

    async def compute_group_rewards(
        self, trajectory_group: list[Trajectory], env_group: Sequence[Env]
    ) -> list[tuple[float, Metrics]]:
        """A final (reward, metrics) per trajectory, added to its step rewards; none here."""
        return [(0.0, {}) for _ in trajectory_group]

    async def cleanup(self) -> None:  # noqa: B027 - an optional hook
        """Release sandboxes or other resources; called once the group is done, always."""

    def logging_tags(self) -> list[str]:
        """Names metrics are also grouped under (e.g. the dataset's name)."""
        return []

    def grading_errors(self) -> list[str]:
        """Why graders of this group's episodes produced no reward (empty: all graded). The
        training loop drops such groups rather than train on rewards nobody computed."""
        return []


@dataclass
class TrajectoryGroup:
    """The rollouts of one EnvGroupBuilder; `final_rewards_G` come from the group's scoring."""

    trajectories_G: list[Trajectory]
    final_rewards_G: list[float]
    metrics_G: list[Metrics]
    rollout_errors: list[RolloutError] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)  # the builder's logging_tags()

    def get_total_rewards(self) -> list[float]:
        """Each trajectory's return: its step rewards plus its group reward."""
        return [
            sum(t.reward for t in trajectory.transitions) + final
            for trajectory, final in zip(self.trajectories_G, self.final_rewards_G, strict=True)
        ]


class RLDataset(ABC):
    """Batches of EnvGroupBuilders; batch `index` is one training step's worth."""

    @abstractmethod
    def get_batch(self, index: int) -> Sequence[EnvGroupBuilder]: ...

    @abstractmethod
    def __len__(self) -> int: ...


class GroupIndexedDataset(RLDataset):
    """An RLDataset whose env groups are addressable one by one. Batching happens in one place
    (`get_batch` here, or `batch_of_groups` for another batch size) and builds only the groups
    of the batch asked for: a step of 512 groups builds 512 group objects, whatever the
    dataset's size."""

    groups_per_batch: int

    @abstractmethod
    def num_groups(self) -> int: ...

    @abstractmethod
    def get_group(self, index: int) -> EnvGroupBuilder:
        """Group `index` (0 <= index < num_groups())."""

    def __len__(self) -> int:
        return max(self.num_groups() // self.groups_per_batch, 1)

    def get_batch(self, index: int) -> list[EnvGroupBuilder]:
        return batch_of_groups(self, index, self.groups_per_batch)


def batch_of_groups(
    dataset: GroupIndexedDataset, index: int, groups_per_batch: int
) -> list[EnvGroupBuilder]:
    """Batch `index` of `groups_per_batch` consecutive groups, wrapping around the end."""
    total = dataset.num_groups()
    if total == 0:
        raise ValueError(f"{type(dataset).__name__} has no env groups")
    first = index * groups_per_batch
    return [dataset.get_group((first + i) % total) for i in range(groups_per_batch)]


@chz.chz
class RLDatasetBuilder:
    """Returns (train, optional test) datasets; subclass it (with `@chz.chz`) for a domain."""

    async def __call__(self) -> tuple[RLDataset, RLDataset | None]:
        raise NotImplementedError(f"{type(self).__name__} must implement __call__")
