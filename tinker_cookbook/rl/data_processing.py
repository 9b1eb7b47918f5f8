"""Trajectories -> training Datums.

Only tokens the policy sampled get mask 1 (and carry an advantage); every environment token
(system prompt, user message, tool output, chat header) gets mask 0 and advantage 0. A turn
whose observation extends the previous turn's full sequence continues the same datum, so a
multi-turn episode usually becomes one sequence.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tinker import types

from tinker_cookbook.rl.types import Trajectory, TrajectoryGroup

logger = logging.getLogger(__name__)


@dataclass
class SequenceData:
    """Unshifted per-token arrays of one training sequence (all of length len(tokens))."""

    tokens: list[int] = field(default_factory=list)
    mask: list[float] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    advantages: list[float] = field(default_factory=list)

    def add(
        self,
        tokens: list[int],
        sampled: bool,
        logprobs: list[float] | None = None,
        advantage: float = 0.0,
    ) -> None:
        self.tokens += tokens
        self.mask += [float(sampled)] * len(tokens)
        self.logprobs += list(logprobs) if logprobs is not None else [0.0] * len(tokens)
        self.advantages += [advantage if sampled else 0.0] * len(tokens)

    @property
    def num_sampled(self) -> int:
        return int(sum(self.mask))


def trajectory_to_sequences(trajectory: Trajectory, advantage: float) -> list[SequenceData]:
    sequences: list[SequenceData] = []
    current = SequenceData()
    for transition in trajectory.transitions:
        observation = transition.ob.to_ints()
        n = len(current.tokens)
        if n and observation[:n] == current.tokens:
            observation = observation[n:]  # this turn continues the sequence
        elif n:
            sequences.append(current)
            current = SequenceData()
        action, logprobs = transition.ac, transition.ac.maybe_logprobs
        if logprobs is not None and len(logprobs) != len(action.tokens):
            raise ValueError(
                f"sampler returned {len(logprobs)} logprobs for {len(action.tokens)} tokens"
            )
        current.add(observation, sampled=False)
        current.add(action.tokens, sampled=True, logprobs=logprobs, advantage=advantage)
    if current.tokens:
        sequences.append(current)
    return sequences


def sequence_to_datum(seq: SequenceData) -> types.Datum:
    """Shift to next-token form; `mask` rides along for the trainer and is removed before the
    datum is sent (`rl.train.as_loss_datum`)."""
    return types.Datum(
        model_input=types.ModelInput.from_ints(seq.tokens[:-1]),
        loss_fn_inputs={
            "target_tokens": np.asarray(seq.tokens[1:], dtype=np.int64),
            "logprobs": np.asarray(seq.logprobs[1:], dtype=np.float32),
            "advantages": np.asarray(seq.advantages[1:], dtype=np.float32),
            "mask": np.asarray(seq.mask[1:], dtype=np.float32),
        },
    )


def center_group_rewards(group: TrajectoryGroup) -> list[float]:
    """Advantage of each trajectory: its total reward minus the group mean."""
    rewards = group.get_total_rewards()
    mean = sum(rewards) / len(rewards)
    return [r - mean for r in rewards]


@dataclass
class DatumSource:
    """Where a datum came from: its group (index in the batch) and trajectory."""

    group_index: int
    trajectory_index: int


def groups_to_data(
    groups: list[TrajectoryGroup | None],
) -> tuple[list[types.Datum], list[DatumSource], int]:
    """Datums of every trajectory with at least one sampled token; also returns how many
    trajectories were dropped for having none (e.g. an empty completion)."""
    data, sources, dropped = [], [], 0
    for g, group in enumerate(groups):
        if group is None:
            continue
        for t, (traj, adv) in enumerate(
            zip(group.trajectories_G, center_group_rewards(group), strict=True)
        ):
            for seq in trajectory_to_sequences(traj, adv):
                if seq.num_sampled == 0 or len(seq.tokens) < 2:
                    dropped += 1
                    continue
                data.append(sequence_to_datum(seq))
                sources.append(DatumSource(g, t))
    return data, sources, dropped


# The cookbook's step-by-step names, for loops written by hand (as in its tutorials).


def compute_advantages(trajectory_groups_P: list[TrajectoryGroup]) -> list[torch.Tensor]:
    """Per group, each trajectory's total reward minus the group mean."""
    return [torch.tensor(center_group_rewards(group)) for group in trajectory_groups_P]


def trajectory_to_data(traj: Trajectory, traj_advantage: float) -> list[types.Datum]:
    """The trajectory's training datums (one per run of turns that extend each other); each
    keeps its `mask` (1 on sampled tokens), which a built-in loss does not accept."""
    return [
        sequence_to_datum(seq)
        for seq in trajectory_to_sequences(traj, traj_advantage)
        if len(seq.tokens) >= 2
    ]


def assemble_training_data(
    trajectory_groups_P: list[TrajectoryGroup], advantages_P: Sequence[Sequence[float]]
) -> tuple[list[types.Datum], list[dict[str, int]]]:
    """Datums of every trajectory, and for each the `group_idx` and `traj_idx` it came from."""
    data_D: list[types.Datum] = []
    metadata_D: list[dict[str, int]] = []
    for g, (group, advantages_G) in enumerate(zip(trajectory_groups_P, advantages_P, strict=True)):
        for t, (traj, advantage) in enumerate(zip(group.trajectories_G, advantages_G, strict=True)):
            datums = trajectory_to_data(traj, float(advantage))
            data_D += datums
            metadata_D += [{"group_idx": g, "traj_idx": t} for _ in datums]
    return data_D, metadata_D


def remove_constant_reward_groups(
    trajectory_groups_P: list[TrajectoryGroup],
) -> list[TrajectoryGroup]:
    """Groups whose rewards differ (the others have zero advantage everywhere); if none
    differ, the first group alone, so callers never receive an empty batch."""
    varied = [g for g in trajectory_groups_P if len(set(g.get_total_rewards())) > 1]
    if not varied:
        logger.warning("every group's rewards are constant: this batch has no gradient")
        return trajectory_groups_P[:1]
    return varied


def datum_sequence(datum: types.Datum) -> types.ModelInput:
    """The whole sequence a next-token datum was cut from (its input plus the last target)."""
    last = int(datum.loss_fn_inputs["target_tokens"].to_numpy()[-1])
    return types.ModelInput.from_ints(datum.model_input.to_ints() + [last])


async def target_logprobs(sampler, datum: types.Datum) -> np.ndarray:
    """`sampler`'s logprob of each of the datum's target tokens (aligned with its inputs)."""
    lps = await sampler.compute_logprobs(datum_sequence(datum))
    return np.asarray([0.0 if v is None else v for v in lps[1:]], dtype=np.float32)
