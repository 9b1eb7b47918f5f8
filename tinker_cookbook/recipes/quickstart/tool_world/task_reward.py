"""Held-out task reward in the tool world: the tasks' own grading of one episode per task,
run through the library's env builders and rollouts as a user's evaluation would."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tinker_cookbook.backend import BackendName, make_service_client
from tinker_cookbook.completers import TinkerTokenCompleter
from tinker_cookbook.recipes.harbor_rl.harbor_env import HarborDatasetBuilder
from tinker_cookbook.recipes.quickstart.tool_world.tasks import (
    SANDBOX_SETTINGS,
    trajectory_token_limit,
)
from tinker_cookbook.recipes.quickstart.tool_world.transcripts import (
    SHORT_SYSTEM_PROMPT,
    SHORT_TOOL_DESCRIPTION,
)
from tinker_cookbook.rl.rollouts import Policy, do_group_rollouts


@dataclass(frozen=True)
class HeldOutEpisodes:
    """Which tasks an evaluation runs (the first `n` of `tasks_dir`, one episode each) and how
    each episode opens and is cut off."""

    tasks_dir: str | Path
    n: int
    system_prompt: str = SHORT_SYSTEM_PROMPT
    tool_description: str | None = SHORT_TOOL_DESCRIPTION
    max_tokens: int = 160
    max_turns: int = 3


async def task_reward(
    policy: Policy, model_name: str, episodes: HeldOutEpisodes
) -> dict[str, float]:
    """`policy`'s mean reward over the `episodes` (rendered in `model_name`'s chat format): a
    success rate, so an episode ended by a cut-off or an unparseable reply scores 0 (a failed
    task), not the training penalty. Also the share of episodes whose environment failed (they
    count as failed tasks too) and how many ran."""
    e = episodes
    builder = HarborDatasetBuilder(
        model_name=model_name,
        tasks_dir=str(e.tasks_dir),
        group_size=1,
        batch_size=e.n,
        max_turns=e.max_turns,
        max_trajectory_tokens=trajectory_token_limit(e.max_tokens, e.max_turns),
        system_prompt=e.system_prompt,
        tool_description=e.tool_description,
        context_overflow_reward=0.0,
        failed_parse_reward=0.0,
        **SANDBOX_SETTINGS,
    )
    dataset, _ = await builder()
    groups, errors = await do_group_rollouts(list(dataset.get_batch(0))[: e.n], policy)
    rewards = [r for g in groups if g is not None for r in g.get_total_rewards()]
    rewards += [0.0] * len(errors)  # an episode that could not run did not solve its task
    return {
        "reward": sum(rewards) / len(rewards),
        "env_errors": len(errors) / len(rewards),
        "episodes": float(len(rewards)),
    }


async def evaluate_tool_reward_async(
    model_name: str,
    model_path: str | None,
    episodes: HeldOutEpisodes,
    temperature: float = 1.0,
    seed: int = 0,
    backend: BackendName = "auto",
) -> dict[str, float]:
    """`task_reward` of `model_name` (+ `model_path` weights), sampled at `temperature`."""
    service = make_service_client(backend)
    client = await service.create_sampling_client_async(
        base_model=model_name, model_path=model_path
    )
    policy = TinkerTokenCompleter(client, episodes.max_tokens, temperature, seed=seed)
    return await task_reward(policy, model_name, episodes)
