"""Trajectories -> Datums: masks, merging of turns, advantages."""

import numpy as np
from tinker import types

from tinker_cookbook.rl.data_processing import groups_to_data, trajectory_to_sequences
from tinker_cookbook.rl.types import TokensWithLogprobs, Trajectory, TrajectoryGroup, Transition


def tr(ob, ac, lps=None, reward=0.0):
    return Transition(
        types.ModelInput.from_ints(ob),
        TokensWithLogprobs(ac, lps or [-0.5] * len(ac)),
        reward,
        False,
    )


def test_multi_turn_trajectory_masks_only_sampled_tokens_and_merges_turns():
    # turn 1: prompt [1,2,3] -> sampled [10,11]; turn 2 extends it with tool output [20,21].
    traj = Trajectory(
        [tr([1, 2, 3], [10, 11], [-0.1, -0.2]), tr([1, 2, 3, 10, 11, 20, 21], [12], [-0.3])],
        types.ModelInput.empty(),
    )
    (seq,) = trajectory_to_sequences(traj, advantage=2.0)
    assert seq.tokens == [1, 2, 3, 10, 11, 20, 21, 12]
    assert seq.mask == [0, 0, 0, 1, 1, 0, 0, 1]
    assert seq.logprobs == [0, 0, 0, -0.1, -0.2, 0, 0, -0.3]
    assert seq.advantages == [0, 0, 0, 2.0, 2.0, 0, 0, 2.0]


def test_a_turn_that_does_not_extend_starts_a_new_datum():
    traj = Trajectory([tr([1, 2], [10]), tr([5, 6], [11])], types.ModelInput.empty())
    seqs = trajectory_to_sequences(traj, advantage=1.0)
    assert [s.tokens for s in seqs] == [[1, 2, 10], [5, 6, 11]]


def test_datums_are_shifted_and_empty_completions_dropped():
    good = Trajectory([tr([1, 2, 3], [10, 11], reward=1.0)], types.ModelInput.empty())
    empty = Trajectory([tr([1, 2, 3], [], reward=0.0)], types.ModelInput.empty())
    group = TrajectoryGroup([good, empty], [0.0, 0.0], [{}, {}])
    data, sources, dropped = groups_to_data([group, None])
    assert dropped == 1 and len(data) == 1 and sources[0].trajectory_index == 0
    x = data[0].loss_fn_inputs
    assert data[0].model_input.to_ints() == [1, 2, 3, 10]
    assert x["target_tokens"].tolist() == [2, 3, 10, 11]
    assert x["mask"].tolist() == [0, 0, 1, 1]
    # group-centred reward: 1.0 - mean(1.0, 0.0) = 0.5 on sampled tokens only
    np.testing.assert_allclose(x["advantages"].to_numpy(), [0, 0, 0.5, 0.5])
