"""Environments and what rolling them out produces.

An `Env` is token-level: it gives an observation (the prompt tokens) and a stop condition,
takes the policy's sampled tokens, and answers with a reward and the next observation. Envs
come in groups (several samples of one prompt) from an `EnvGroupBuilder`; an `RLDataset`
hands out batches of builders.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import chz
from tinker import types

StopCondition = list[int] | list[str]
Metrics = dict[str, float]


@dataclass
class StepResult:
    reward: float
    episode_done: bool
    next_observation: types.ModelInput
    next_stop_condition: StopCondition
    metrics: Metrics = field(default_factory=dict)


class Env(ABC):
    """One episode. Not reused: a new Env per episode."""

    @abstractmethod
    async def initial_observation(self) -> tuple[types.ModelInput, StopCondition]: ...

    @abstractmethod
    async def step(self, action: list[int]) -> StepResult: ...


@dataclass
class TokensWithLogprobs:
    tokens: list[int]
    logprobs: list[float] | None
    stop_reason: str = "stop"


@dataclass
class Transition:
    observation: types.ModelInput
    action: TokensWithLogprobs
    reward: float
    episode_done: bool
    metrics: Metrics = field(default_factory=dict)


@dataclass
class Trajectory:
    transitions: list[Transition]
    final_observation: types.ModelInput

    @property
    def total_reward(self) -> float:
        return sum(t.reward for t in self.transitions)


@dataclass
class TrajectoryGroup:
    """The rollouts of one EnvGroupBuilder; `final_rewards` come from the group's scoring."""

    trajectories: list[Trajectory]
    final_rewards: list[float]
    metrics: list[Metrics]
    tags: list[str] = field(default_factory=list)

    def total_rewards(self) -> list[float]:
        return [
            t.total_reward + r for t, r in zip(self.trajectories, self.final_rewards, strict=True)
        ]


class EnvGroupBuilder(ABC):
    """Makes the envs of one group (e.g. `group_size` attempts at one prompt)."""

    @abstractmethod
    async def make_envs(self) -> Sequence[Env]: ...

    async def compute_group_rewards(
        self, trajectories: list[Trajectory], envs: Sequence[Env]
    ) -> list[tuple[float, Metrics]]:
        """Rewards that need the whole group (e.g. pairwise preferences); none by default."""
        return [(0.0, {}) for _ in trajectories]

    async def cleanup(self) -> None:  # noqa: B027 - an optional hook
        """Release sandboxes or other resources; called once the group is done, always."""

    def logging_tags(self) -> list[str]:
        """Names metrics are also grouped under (e.g. the dataset's name)."""
        return []

    def grading_errors(self) -> list[str]:
        """Why graders of this group's episodes produced no reward (empty: all graded). The
        training loop drops such groups rather than train on rewards nobody computed."""
        return []


class RLDataset(ABC):
    @abstractmethod
    def get_batch(self, index: int) -> Sequence[EnvGroupBuilder]: ...

    @abstractmethod
    def __len__(self) -> int: ...


@chz.chz
class RLDatasetBuilder:
    """Returns (train, optional test) datasets; subclass it for a new domain."""

    async def __call__(self) -> tuple[RLDataset, RLDataset | None]:
        raise NotImplementedError(f"{type(self).__name__} must implement __call__")
