"""The quick start's arithmetic tool world: tasks load through the Harbor loader with the
expression in the task's /app/problem.txt, the one fixed command really runs in the sandbox
and the task's own grader rewards only the right answer, the teacher's SFT transcripts are
exactly the episodes the environment shows (loss only on the assistant's tokens), held-out task
reward is the share of tasks whose own grading passed, and the stage trains, caches and
evaluates through the library's public entry points."""

import asyncio
import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest

from tinker_cookbook.local import get_tokenizer
from tinker_cookbook.model_info import get_recommended_renderer_name
from tinker_cookbook.recipes.distillation import off_policy_reasoning
from tinker_cookbook.recipes.harbor_rl.harbor_env import HarborDatasetBuilder
from tinker_cookbook.recipes.harbor_rl.harbor_tasks import load_tasks
from tinker_cookbook.recipes.quickstart.arithmetic import ArithProblem
from tinker_cookbook.recipes.quickstart.tool_world.sft import SFTSettings
from tinker_cookbook.recipes.quickstart.tool_world.stage import (
    MultiTurnStage,
    run_multi_turn_stage,
)
from tinker_cookbook.recipes.quickstart.tool_world.task_reward import (
    HeldOutEpisodes,
    task_reward,
)
from tinker_cookbook.recipes.quickstart.tool_world.tasks import (
    ANSWER_FILE,
    COMMAND,
    PROBLEM_FILE,
    ToolWorld,
    instruction,
    make_problems,
    read_problem,
    write_tool_tasks,
)
from tinker_cookbook.recipes.quickstart.tool_world.transcripts import (
    SHORT_SYSTEM_PROMPT,
    SHORT_TOOL_DESCRIPTION,
    reference_messages,
    write_tool_transcripts,
)
from tinker_cookbook.renderers import RenderContext, ToolCall, get_renderer
from tinker_cookbook.rl.rollouts import do_group_rollout
from tinker_cookbook.rl.types import TokensWithLogprobs
from tinker_cookbook.sandbox import available_backends
from tinker_cookbook.utils.checkpoints import load_checkpoints

needs_sandbox = pytest.mark.skipif(not available_backends(), reason="no sandbox backend")
TOKENIZER = get_tokenizer("tiny-qwen3-1m")
RENDERER = get_renderer(get_recommended_renderer_name("tiny-qwen3-1m"), TOKENIZER)


def folder_contents(root) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def test_tasks_load_through_the_harbor_loader_with_the_expression_in_a_file(tmp_path):
    paths = write_tool_tasks(tmp_path, 6, seed=0)
    tasks = load_tasks(tmp_path).tasks
    assert sorted(t.path for t in tasks) == sorted(paths)
    for task in tasks:
        problem = read_problem(task.path)
        assert PROBLEM_FILE in task.instruction and ANSWER_FILE in task.instruction
        assert problem.expression not in task.instruction
        problem_file = task.path / "environment" / "problem.txt"
        assert problem_file.read_text() == problem.expression + "\n"
        assert task.harbor.config.verifier.timeout_sec == 30.0
    assert len({t.instruction for t in tasks}) > 1  # the wording varies a little


def test_generation_is_deterministic_and_splits_do_not_overlap(tmp_path):
    write_tool_tasks(tmp_path / "a", 20, seed=3)
    write_tool_tasks(tmp_path / "b", 20, seed=3)
    assert folder_contents(tmp_path / "a") == folder_contents(tmp_path / "b")

    train = make_problems(400, seed=0)
    held_out = make_problems(400, seed=1, held_out=True)
    assert len({p.expression for p in train}) == 400
    assert not {p.expression for p in train} & {p.expression for p in held_out}
    # Even the same seed cannot put one problem in both splits.
    same_seed = make_problems(50, seed=0, held_out=True)
    assert not {p.expression for p in make_problems(50, seed=0)} & {p.expression for p in same_seed}
    assert make_problems(5, seed=0) != make_problems(5, seed=1)


def test_rewriting_a_folder_with_fewer_tasks_leaves_only_those(tmp_path):
    write_tool_tasks(tmp_path, 5, seed=0)
    (tmp_path / "notes.txt").write_text("mine")
    write_tool_tasks(tmp_path, 2, seed=1)
    assert len(load_tasks(tmp_path).tasks) == 2
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_problems_use_the_chosen_digits_and_operators():
    problems = make_problems(30, seed=0, world=ToolWorld(digits=3, ops="*"))
    assert all(p.op == "*" and 100 <= p.a <= 999 and 100 <= p.b <= 999 for p in problems)
    assert all(p.answer == p.a * p.b for p in problems)
    with pytest.raises(ValueError, match="operator '/'"):
        make_problems(1, seed=0, world=ToolWorld(ops="+/"))


def scripted_policy(replies: list[list[int]]):
    remaining = iter(replies)

    async def policy(observation, stop):
        tokens = next(remaining)
        return TokensWithLogprobs(tokens, [-0.1] * len(tokens))

    return policy


def replies_for(messages) -> list[list[int]]:
    """The token replies a model would sample to say `messages`' assistant turns: each turn's
    rendered output (content and end-of-turn token), as the renderer lays it out."""
    turns = [m for m in messages if m["role"] == "assistant"]
    return [
        [t for chunk in RENDERER.render_message(m, RenderContext(idx=0, is_last=False)).output
         for t in chunk.tokens]
        for m in turns
    ]  # fmt: skip


def wrong_answer_messages(problem):
    messages = reference_messages(problem)
    command = f"echo {problem.answer + 1} > {ANSWER_FILE}"
    messages[0]["tool_calls"] = [ToolCall.from_arguments("bash", {"command": command})]
    return messages


def short_prompt_builder(tasks_dir, groups: int) -> HarborDatasetBuilder:
    return HarborDatasetBuilder(
        model_name="tiny-qwen3-1m",
        tasks_dir=str(tasks_dir),
        group_size=1,
        batch_size=groups,
        environment="local",
        max_turns=3,
        system_prompt=SHORT_SYSTEM_PROMPT,
        tool_description=SHORT_TOOL_DESCRIPTION,
    )


def rollout(groups, scripts):
    async def run_all():
        rollouts = []
        for group, script in zip(groups, scripts, strict=True):
            replies = replies_for(script(read_problem(group.task.path)))
            rollouts.append(do_group_rollout(group, scripted_policy(replies)))
        return await asyncio.gather(*rollouts)

    return asyncio.run(run_all())


@needs_sandbox
def test_the_fixed_command_runs_in_the_sandbox_and_only_the_right_answer_scores(tmp_path):
    write_tool_tasks(tmp_path, 3, seed=0, held_out=True)
    train, _ = asyncio.run(short_prompt_builder(tmp_path, 3)())
    groups = train.get_batch(0)
    scripts = [reference_messages, wrong_answer_messages, lambda p: reference_messages(p)[-1:]]
    correct, wrong, idle = rollout(groups, scripts)
    assert [g.get_total_rewards() for g in (correct, wrong, idle)] == [[1.0], [0.0], [0.0]]
    (episode,) = correct.trajectories_G
    assert len(episode.transitions) == 2
    # The short system prompt is what the episode's prompt starts with.
    first = TOKENIZER.decode(episode.transitions[0].ob.to_ints())
    assert first.startswith(
        f"<|im_start|>system\n{SHORT_SYSTEM_PROMPT}\n\n{SHORT_TOOL_DESCRIPTION}<|im_end|>\n"
        f"<|im_start|>user\n{groups[0].task.instruction}<|im_end|>"
    )
    # The transcript's tool message is exactly what the bash tool answered in the sandbox.
    observation = TOKENIZER.decode(episode.transitions[1].ob.to_ints())
    tool_reply = reference_messages(read_problem(groups[0].task.path))[1]["content"]
    assert observation.endswith(
        f"<tool_response>\n{tool_reply}\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
    )
    for group in (correct, wrong, idle):
        assert group.trajectories_G[0].transitions[-1].metrics["grading_error"] == 0.0
    assert episode.transitions[-1].metrics["stop/completed"] == 1.0
    assert COMMAND in first + TOKENIZER.decode(episode.transitions[0].ac.tokens)


@needs_sandbox
def test_sft_transcripts_are_the_environment_episodes_with_loss_on_assistant_tokens(tmp_path):
    write_tool_tasks(tmp_path / "tasks", 2, seed=0)
    train, _ = asyncio.run(short_prompt_builder(tmp_path / "tasks", 2)())
    groups = train.get_batch(0)
    problems = [read_problem(g.task.path) for g in groups]
    path = write_tool_transcripts(tmp_path / "rows.jsonl", problems, RENDERER)
    assert all("tool_calls" in json.loads(line)["messages"][2] for line in path.open())

    cli = off_policy_reasoning.CLIConfig(
        model_name="tiny-qwen3-1m", dataset_path=str(path), batch_size=2
    )
    sft_data, _ = off_policy_reasoning.dataset_builder(cli)()
    sequences = {}
    for datum in sft_data.get_batch(0):
        targets = datum.loss_fn_inputs["target_tokens"].tolist()
        sequences[tuple(datum.model_input.to_ints() + targets[-1:])] = datum
    for group, episodes in zip(groups, rollout(groups, [reference_messages] * 2), strict=True):
        (episode,) = episodes.trajectories_G
        assert episodes.get_total_rewards() == [1.0]
        last = episode.transitions[-1]
        tokens = last.ob.to_ints() + last.ac.tokens
        # The SFT sequence is the episode token for token.
        datum = sequences[tuple(tokens)]
        assert group.task.instruction in TOKENIZER.decode(tokens)
        targets = datum.loss_fn_inputs["target_tokens"].tolist()
        weights = datum.loss_fn_inputs["weights"].tolist()
        trained = TOKENIZER.decode([t for t, w in zip(targets, weights, strict=True) if w > 0])
        call = json.dumps({"name": "bash", "arguments": {"command": COMMAND}})
        assert trained == f"<tool_call>\n{call}\n</tool_call><|im_end|>Done.<|im_end|>"


def instruction_policy(solves: Callable[[str], bool]):
    """Answers every task with the reference episode's turns, but writes a wrong answer to the
    tasks whose instruction text `solves` rejects."""
    call, final = replies_for(reference_messages(ArithProblem(1, "+", 1)))
    wrong = ToolCall.from_arguments("bash", {"command": f"echo wrong > {ANSWER_FILE}"})
    (wrong_call,) = replies_for([{"role": "assistant", "content": "", "tool_calls": [wrong]}])

    async def policy(observation, stop):
        text = TOKENIZER.decode(observation.to_ints())
        tokens = final if "<tool_response>" in text else call if solves(text) else wrong_call
        return TokensWithLogprobs(tokens, [-0.1] * len(tokens))

    return policy


@needs_sandbox
def test_task_reward_is_the_share_of_tasks_whose_own_grading_passed(tmp_path):
    paths = write_tool_tasks(tmp_path, 6, seed=0, held_out=True)
    first_wording = instruction(ArithProblem(1, "+", 1, phrasing=0))
    solved = sum(read_problem(p).phrasing == 0 for p in paths)
    assert 0 < solved < 6  # some tasks are solved, some are not
    policy = instruction_policy(lambda text: first_wording in text)
    result = asyncio.run(task_reward(policy, "tiny-qwen3-1m", HeldOutEpisodes(tmp_path, 6)))
    assert result == {"reward": solved / 6, "env_errors": 0.0, "episodes": 6.0}


@needs_sandbox
def test_an_episode_whose_sandbox_cannot_start_counts_as_a_failed_task(tmp_path):
    broken, _ = write_tool_tasks(tmp_path, 2, seed=0, held_out=True)
    (broken / "environment" / "problem.txt").unlink()  # its Dockerfile's COPY now fails
    policy = instruction_policy(lambda text: True)
    result = asyncio.run(task_reward(policy, "tiny-qwen3-1m", HeldOutEpisodes(tmp_path, 2)))
    assert result == {"reward": 0.5, "env_errors": 0.5, "episodes": 2.0}


@needs_sandbox
def test_the_stage_runs_end_to_end_and_a_rerun_reuses_its_finished_runs(tmp_path):
    config = MultiTurnStage(
        out_dir=str(tmp_path / "stage"),
        train_tasks=4,
        eval_tasks=2,
        teacher=SFTSettings(steps=2),
        student_sft_steps=1,
        steps=1,
        group_size=2,
        groups_per_batch=1,
        max_tokens=16,
        backend="local",
    )
    result = run_multi_turn_stage(config)
    # Every evaluation ran its episodes in the sandbox and had them graded (what the rewards
    # mean is checked with known policies in the task-reward test above).
    evaluations = {"base": 0.0, "student_start": 0.0, "teacher": 0.0, "after": 0.0}
    assert result["env_errors"] == evaluations
    # One step: first and last are the same measurement. A single-sample estimate of reverse
    # KL between a 1-step student and a 2-step teacher can fall on either side of 0, but it is
    # computed (finite) and not 0: the teacher differs from the student.
    kl = result["first_teacher_kl"]
    assert result["steps"] == 1 and kl == result["last_teacher_kl"]
    assert math.isfinite(kl) and kl != 0.0
    assert set(result["seconds"]) == {
        "teacher_sft", "student_sft", "eval_base", "eval_student_start", "eval_teacher",
        "distillation", "eval_after",
    }  # fmt: skip
    paths = result["paths"]
    teacher_runs = load_checkpoints(paths["teacher_log"])
    assert teacher_runs[-1]["name"] == "final"
    assert teacher_runs[-1]["sampler_path"] == paths["teacher_sampler"]
    distilled = json.loads(Path(paths["distilled_log"], "config.json").read_text())
    assert distilled["dataset_configs"][0]["dataset_builder"]["tool_description"] == (
        SHORT_TOOL_DESCRIPTION
    )
    # A rerun trains nothing: every run is found finished.
    logs = [paths[k] for k in ("teacher_log", "student_sft_log", "distilled_log")]
    before = [Path(log, "checkpoints.jsonl").read_text() for log in logs]
    assert run_multi_turn_stage(config)["paths"] == paths
    assert [Path(log, "checkpoints.jsonl").read_text() for log in logs] == before
