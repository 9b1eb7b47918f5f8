"""A tiny tool-use world for the quick start's multi-turn study: arithmetic Harbor tasks.

Each task keeps one integer expression (e.g. `4721+3859`) in /app/problem.txt (copied in by its
Dockerfile) and asks for its value in /app/answer.txt; the task's own `tests/test.sh` grades the
file, so the library's `HarborReward` scores an episode with no special casing. A correct agent
runs one fixed bash command that reads the file, gets the tool's reply, and ends with a short
final reply, so a tiny byte-level model learns the whole episode in seconds: nothing has to be
copied from the instruction, whose wording varies a little.

The study around it (`run_multi_turn_stage`) is what a user would do with real models:
1. `write_tool_transcripts`: correct tool-using transcripts (`messages` rows with `tool_calls`),
2. `build_tool_teacher`: SFT of a teacher on them with the off-policy recipe's public entry point
   (the student gets a shorter SFT warm-up the same way, the usual start for distillation),
3. `on_policy_distillation_harbor_multi_turn.main`: the student samples episodes in the sandboxes
   and learns from the teacher's per-token KL (no environment reward),
4. `evaluate_tool_reward`: held-out task reward (the tasks' own grading) of the base student,
   its warm start, the teacher and the distilled student, through the library's env builders
   and rollouts.

    python -m tinker_cookbook.recipes.quickstart.tool_world out_dir=/tmp/tool_world steps=16
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import chz

from tinker_cookbook.backend import make_service_client
from tinker_cookbook.completers import TinkerTokenCompleter
from tinker_cookbook.model_info import get_recommended_renderer_name
from tinker_cookbook.recipes.common import settings_tag
from tinker_cookbook.recipes.distillation import off_policy_reasoning
from tinker_cookbook.recipes.distillation import (
    on_policy_distillation_harbor_multi_turn as multi_turn,
)
from tinker_cookbook.recipes.harbor_rl.harbor_env import HarborDatasetBuilder, opening_messages
from tinker_cookbook.renderers import Message, Renderer, ToolCall, get_renderer
from tinker_cookbook.rl.rollouts import do_group_rollouts
from tinker_cookbook.sandbox.local_environment import BASE_IMAGE
from tinker_cookbook.tokenizer_utils import get_tokenizer

TASK_PREFIX = "arith-"
PROBLEM_FILE = "/app/problem.txt"
ANSWER_FILE = "/app/answer.txt"
# The one command every correct episode runs (the tasks' reference solution).
COMMAND = f"echo $(( $(cat {PROBLEM_FILE}) )) > {ANSWER_FILE}"
FINAL_REPLY = "Done."
# What HarborBashTool returns for a command with no output and exit code 0.
SILENT_TOOL_OUTPUT = "[exit code 0]"
# A short system prompt and tool description in place of the default prompt and the bash tool's
# JSON schema (~760 of ~950 prompt tokens on the byte-level tiny models).
SHORT_SYSTEM_PROMPT = "You are an agent in a Linux shell."
SHORT_TOOL_DESCRIPTION = (
    'Tool: bash. Call it as <tool_call>{"name": "bash", "arguments": {"command": "..."}}'
    "</tool_call>; reply without a call when done."
)
INSTRUCTIONS = (
    "Compute the expression in {problem} and write the result to {answer}.",
    "Evaluate the arithmetic in {problem}; put the value in {answer}.",
    "{problem} holds an integer expression. Write its value to {answer}.",
)

TASK_TOML = """version = "1.0"

[metadata]
difficulty = "easy"
category = "arithmetic"
tags = ["shell-arithmetic", "quickstart"]

[verifier]
timeout_sec = 30.0

[agent]
timeout_sec = 60.0

[environment]
build_timeout_sec = 30.0
cpus = 1
memory_mb = 256
"""

DOCKERFILE = f"FROM {BASE_IMAGE}\nWORKDIR /app\nCOPY problem.txt {PROBLEM_FILE}\n"

TEST_SH = """#!/bin/bash
# Grades the task: writes 1 (pass) or 0 (fail) to /logs/verifier/reward.txt.
mkdir -p /logs/verifier
if [ "$(tr -d "[:space:]" < {answer_file} 2>/dev/null)" = "{answer}" ]; then
  echo 1 > /logs/verifier/reward.txt
else
  echo 0 > /logs/verifier/reward.txt
fi
"""


@chz.chz
class ToolWorld:
    """What the generated problems look like."""

    digits: int = 4
    ops: str = "+-*"  # one character per operator bash's $(( )) understands
    held_out_share: int = 2  # one expression in this many is reserved for held-out splits


@dataclass(frozen=True)
class ArithProblem:
    """One task: `a op b` in the problem file, and how its instruction is worded."""

    a: int
    op: str
    b: int
    wording: int = 0  # index into INSTRUCTIONS

    @property
    def expression(self) -> str:
        return f"{self.a}{self.op}{self.b}"

    @property
    def answer(self) -> int:
        return {"+": self.a + self.b, "-": self.a - self.b, "*": self.a * self.b}[self.op]

    @property
    def instruction(self) -> str:
        return INSTRUCTIONS[self.wording].format(problem=PROBLEM_FILE, answer=ANSWER_FILE)


def is_held_out(problem: ArithProblem, world: ToolWorld) -> bool:
    """A fixed property of the expression (not of the seed) decides its split, so a train and
    a held-out set can never share a problem, whatever seeds and sizes they use."""
    digest = hashlib.sha256(problem.expression.encode()).digest()
    return digest[0] % world.held_out_share == 0


def make_problems(
    n: int, seed: int, held_out: bool = False, world: ToolWorld | None = None
) -> list[ArithProblem]:
    """`n` distinct problems of one split, the same for the same (n, seed, held_out, world)."""
    world = world or ToolWorld()
    for op in world.ops:
        if op not in "+-*":
            raise ValueError(f"operator {op!r} is not one of + - *")
    rng = random.Random(f"tool-world/{seed}")
    low, high = 10 ** (world.digits - 1), 10**world.digits - 1
    problems: list[ArithProblem] = []
    seen: set[str] = set()
    while len(problems) < n:
        problem = ArithProblem(
            rng.randint(low, high),
            rng.choice(world.ops),
            rng.randint(low, high),
            rng.randrange(len(INSTRUCTIONS)),
        )
        if is_held_out(problem, world) != held_out or problem.expression in seen:
            continue
        seen.add(problem.expression)
        problems.append(problem)
    return problems


def task_name(problem: ArithProblem, index: int) -> str:
    """Sorted like the generation order; the operator spelled out (file-name safe)."""
    op = {"+": "plus", "-": "minus", "*": "times"}[problem.op]
    return f"{TASK_PREFIX}{index:04d}-{problem.a}-{op}-{problem.b}"


def write_task(folder: Path, problem: ArithProblem) -> Path:
    """One task folder in the Harbor layout that `load_harbor_task` reads."""
    (folder / "environment").mkdir(parents=True, exist_ok=True)
    (folder / "tests").mkdir(exist_ok=True)
    (folder / "solution").mkdir(exist_ok=True)
    (folder / "task.toml").write_text(TASK_TOML)
    # No trailing newline: Harbor shows instruction.md as it is, and the transcripts must match.
    (folder / "instruction.md").write_text(problem.instruction)
    (folder / "environment" / "Dockerfile").write_text(DOCKERFILE)
    (folder / "environment" / "problem.txt").write_text(problem.expression + "\n")
    test_sh = TEST_SH.format(answer_file=ANSWER_FILE, answer=problem.answer)
    (folder / "tests" / "test.sh").write_text(test_sh)
    (folder / "solution" / "solve.sh").write_text(
        f"#!/bin/bash\n# Reference solution.\n{COMMAND}\n"
    )
    (folder / "problem.json").write_text(
        json.dumps({"a": problem.a, "op": problem.op, "b": problem.b, "wording": problem.wording})
    )
    return folder


def read_problem(task_dir: str | Path) -> ArithProblem:
    """The problem a generated task folder was written from."""
    data = json.loads((Path(task_dir) / "problem.json").read_text())
    return ArithProblem(int(data["a"]), str(data["op"]), int(data["b"]), int(data["wording"]))


def write_tool_tasks(
    folder: str | Path,
    n: int,
    seed: int,
    held_out: bool = False,
    world: ToolWorld | None = None,
) -> list[Path]:
    """Write `n` arithmetic tasks under `folder` (one subfolder each) and return their paths.

    Deterministic in its arguments. Task folders of an earlier call with other settings are
    removed first (only those this module names), so the loader sees exactly these tasks."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    problems = make_problems(n, seed, held_out, world)
    paths = [folder / task_name(p, i) for i, p in enumerate(problems)]
    keep = {p.name for p in paths}
    for stale in folder.glob(f"{TASK_PREFIX}*"):
        if stale.is_dir() and stale.name not in keep:
            shutil.rmtree(stale)
    return [write_task(path, problem) for path, problem in zip(paths, problems, strict=True)]


def reference_messages(problem: ArithProblem) -> list[Message]:
    """What a correct agent says after the task's instruction: the fixed bash call, the tool's
    reply (the command prints nothing), and a short final answer with no tool call."""
    return [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [ToolCall.from_arguments("bash", {"command": COMMAND}, id="call_0")],
        },
        {"role": "tool", "name": "bash", "tool_call_id": "call_0", "content": SILENT_TOOL_OUTPUT},
        {"role": "assistant", "content": FINAL_REPLY},
    ]


def model_renderer(model_name: str) -> Renderer:
    """The chat format a model's transcripts and episodes are written in."""
    return get_renderer(get_recommended_renderer_name(model_name), get_tokenizer(model_name))


def transcript(
    problem: ArithProblem,
    renderer: Renderer,
    system_prompt: str = SHORT_SYSTEM_PROMPT,
    tool_description: str | None = SHORT_TOOL_DESCRIPTION,
) -> list[Message]:
    """A whole correct episode, opening with exactly the system message and instruction the
    Harbor environment shows (`system_message`, the task's instruction.md)."""
    return [
        *opening_messages(renderer, system_prompt, tool_description),
        {"role": "user", "content": problem.instruction},
        *reference_messages(problem),
    ]


def write_tool_transcripts(
    path: str | Path,
    problems: list[ArithProblem],
    renderer: Renderer,
    system_prompt: str = SHORT_SYSTEM_PROMPT,
    tool_description: str | None = SHORT_TOOL_DESCRIPTION,
) -> Path:
    """Correct transcripts as a `messages` JSONL file (assistant `tool_calls`, named tool
    results): what `off_policy_reasoning dataset_path=...` (FromConversationFileBuilder)
    trains on, rendering the calls in the model's tool format with loss on assistant turns."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w") as f:
        for problem in problems:
            row = {"messages": transcript(problem, renderer, system_prompt, tool_description)}
            f.write(json.dumps(row, default=lambda call: call.model_dump()) + "\n")
    tmp.replace(path)
    return path


@chz.chz
class SFTSettings:
    """LoRA SFT on the transcripts: `steps` batches of `batch_size` rows (the rows repeat as
    needed). All the sequences share one target, so small batches and a constant learning rate
    learn it fastest."""

    model_name: str = "tiny-qwen3-1m"
    steps: int = 100
    batch_size: int = 2
    learning_rate: float = 3e-3
    lr_schedule: str = "constant"
    lora_rank: int = 32
    max_length: int = 1024


def sft_on_transcripts(
    transcripts_path: str | Path,
    log_path: str | Path,
    sft: SFTSettings | None = None,
    backend: str = "auto",
) -> dict[str, Any]:
    """SFT on `transcripts_path` with the off-policy (SFT) recipe's public entry point; returns
    the final checkpoint record (`state_path`, `sampler_path`). A finished run in `log_path` is
    reused (the recipe resumes from `log_path/checkpoints.jsonl`), so give each setting its
    own `log_path`."""
    sft = sft or SFTSettings()
    rows = sum(1 for line in Path(transcripts_path).read_text().splitlines() if line.strip())
    cli = off_policy_reasoning.CLIConfig(
        log_path=str(log_path),
        model_name=sft.model_name,
        dataset_path=str(transcripts_path),
        batch_size=sft.batch_size,
        learning_rate=sft.learning_rate,
        lr_schedule=sft.lr_schedule,
        lora_rank=sft.lora_rank,
        max_length=sft.max_length,
        # Enough epochs over the rows for `steps` batches; max_steps stops it there.
        num_epochs=max(1, -(-sft.steps * sft.batch_size // max(rows, 1))),
        max_steps=sft.steps,
        eval_every=0,
        save_every=0,
        backend=backend,
    )
    return off_policy_reasoning.main(cli)


def build_tool_teacher(
    transcripts_path: str | Path,
    log_path: str | Path,
    sft: SFTSettings | None = None,
    backend: str = "auto",
) -> str:
    """Train the teacher on the transcripts (`sft_on_transcripts`); its sampler path."""
    return str(sft_on_transcripts(transcripts_path, log_path, sft, backend)["sampler_path"])


async def evaluate_tool_reward_async(
    model_name: str,
    model_path: str | None,
    tasks_dir: str | Path,
    n: int,
    system_prompt: str = SHORT_SYSTEM_PROMPT,
    tool_description: str | None = SHORT_TOOL_DESCRIPTION,
    temperature: float = 1.0,
    max_tokens: int = 160,
    max_turns: int = 3,
    seed: int = 0,
    backend: str = "auto",
) -> dict[str, float]:
    """Mean task reward (the tasks' own grading) of `model_name` (+ `model_path` weights) over
    the first `n` tasks of `tasks_dir`, one episode each, via HarborDatasetBuilder and
    do_group_rollouts: a success rate, so an episode ended by a cut-off or unparseable reply
    scores 0 (a failed task), not the training penalty. Also the share of episodes whose
    environment failed."""
    builder = HarborDatasetBuilder(
        model_name=model_name,
        tasks_dir=str(tasks_dir),
        group_size=1,
        batch_size=n,
        max_turns=max_turns,
        max_trajectory_tokens=4 * max_tokens * max_turns + 2048,
        command_timeout=10.0,
        environment="local",
        environment_kwargs={"memory_mb": "256"},
        system_prompt=system_prompt,
        tool_description=tool_description,
        context_overflow_reward=0.0,
        failed_parse_reward=0.0,
    )
    dataset, _ = await builder()
    service = make_service_client(backend)
    client = await service.create_sampling_client_async(
        base_model=model_name, model_path=model_path
    )
    policy = TinkerTokenCompleter(client, max_tokens, temperature, seed=seed)
    groups, errors = await do_group_rollouts(list(dataset.get_batch(0))[:n], policy)
    rewards = [r for g in groups if g is not None for r in g.get_total_rewards()]
    rewards += [0.0] * len(errors)  # an episode that could not run did not solve its task
    return {"reward": sum(rewards) / len(rewards), "env_errors": len(errors) / len(rewards)}


def evaluate_tool_reward(
    model_name: str, model_path: str | None, tasks_dir: str | Path, n: int, **kwargs: Any
) -> float:
    """`evaluate_tool_reward_async`'s mean reward, from synchronous code."""
    return asyncio.run(evaluate_tool_reward_async(model_name, model_path, tasks_dir, n, **kwargs))[
        "reward"
    ]


@chz.chz
class MultiTurnStage:
    """The multi-turn tool-use stage of the quick-start study: a teacher learns the tool-using
    episodes by SFT; the student gets a shorter SFT warm-up on the same transcripts (the usual
    off-policy start) and is then distilled on-policy in the Harbor sandboxes."""

    out_dir: str = "/tmp/tinker-examples/quickstart/tool_world"
    world: ToolWorld = chz.field(default_factory=ToolWorld)
    train_tasks: int = 64
    eval_tasks: int = 32
    system_prompt: str = SHORT_SYSTEM_PROMPT
    tool_description: str | None = SHORT_TOOL_DESCRIPTION
    teacher: SFTSettings = chz.field(default_factory=SFTSettings)
    student_model: str = "tiny-qwen3-1m"
    # SFT steps (teacher's other settings) before distillation; 0: distil the base model.
    student_sft_steps: int = 60
    # The distillation run.
    steps: int = 24
    group_size: int = 4
    groups_per_batch: int = 4
    learning_rate: float = 5e-4
    lora_rank: int = 32
    temperature: float = 0.7  # the student's sampling temperature while it is distilled
    max_tokens: int = 128
    max_turns: int = 3
    kl_penalty_coef: float = 1.0
    # The evaluations: one episode per held-out task at this temperature.
    eval_temperature: float = 0.5
    seed: int = 0
    backend: str = "auto"
    # torch intra-op threads while the stage runs (None: leave torch's setting). The tiny
    # models gain nothing from more, and lose a lot when other processes share the cores.
    torch_threads: int | None = 1


def run_multi_turn_stage(config: MultiTurnStage) -> dict[str, Any]:
    """Run the stage; returns held-out rewards (`base_reward`: the untrained student,
    `student_start_reward`: after its SFT warm-up, `teacher_reward`, `after_reward`: after
    distillation), the distillation's steps and first/last teacher_kl, seconds per part and
    the paths involved. Finished runs in `out_dir` are reused on a rerun."""
    import torch

    threads = torch.get_num_threads()
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    try:
        return _run_stage(config)
    finally:
        torch.set_num_threads(threads)


def _run_stage(config: MultiTurnStage) -> dict[str, Any]:
    out = Path(config.out_dir)
    train_dir, eval_dir = out / "tasks" / "train", out / "tasks" / "held_out"
    write_tool_tasks(train_dir, config.train_tasks, config.seed, world=config.world)
    write_tool_tasks(eval_dir, config.eval_tasks, config.seed + 1, True, config.world)
    transcripts = write_tool_transcripts(
        out / "transcripts.jsonl",
        make_problems(config.train_tasks, config.seed, world=config.world),
        model_renderer(config.teacher.model_name),
        config.system_prompt,
        config.tool_description,
    )
    data_tag = transcripts.read_text()
    seconds: dict[str, float] = {}
    rewards: dict[str, float] = {}

    def timed(part: str, fn, *args, **kwargs):
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        seconds[part] = round(time.perf_counter() - start, 1)
        return result

    def evaluate(part: str, model_name: str, model_path: str | None) -> None:
        rewards[part] = timed(
            f"eval_{part}", evaluate_tool_reward, model_name, model_path, eval_dir,
            config.eval_tasks, system_prompt=config.system_prompt,
            tool_description=config.tool_description, temperature=config.eval_temperature,
            max_tokens=config.max_tokens, max_turns=config.max_turns, seed=config.seed,
            backend=config.backend,
        )  # fmt: skip

    teacher_log = out / f"teacher-{settings_tag(config.teacher, data_tag)}"
    teacher = timed(
        "teacher_sft", sft_on_transcripts, transcripts, teacher_log, config.teacher, config.backend
    )
    student_start, student_sft_log = None, None
    if config.student_sft_steps:
        student_sft = chz.replace(
            config.teacher, model_name=config.student_model, steps=config.student_sft_steps
        )
        student_sft_log = out / f"student-sft-{settings_tag(student_sft, data_tag)}"
        student_start = timed(
            "student_sft", sft_on_transcripts, transcripts, student_sft_log, student_sft,
            config.backend,
        )  # fmt: skip
    evaluate("base", config.student_model, None)
    if student_start is not None:
        evaluate("student_start", config.student_model, student_start["sampler_path"])
    evaluate("teacher", config.teacher.model_name, teacher["sampler_path"])

    student_log = out / f"distilled-{settings_tag(config, data_tag)}"
    cli = multi_turn.CLIConfig(
        log_path=str(student_log),
        model_name=config.student_model,
        load_checkpoint_path=student_start["state_path"] if student_start else None,
        teacher_model=config.teacher.model_name,
        teacher_checkpoint=teacher["sampler_path"],
        tasks_dir=str(train_dir),
        system_prompt=config.system_prompt,
        tool_description=config.tool_description,
        group_size=config.group_size,
        groups_per_batch=config.groups_per_batch,
        max_turns=config.max_turns,
        max_tokens=config.max_tokens,
        max_trajectory_tokens=4 * config.max_tokens * config.max_turns + 2048,
        command_timeout=10.0,
        environment="local",
        environment_kwargs={"memory_mb": "256"},
        learning_rate=config.learning_rate,
        lora_rank=config.lora_rank,
        temperature=config.temperature,
        kl_penalty_coef=config.kl_penalty_coef,
        max_steps=config.steps,
        save_every=0,
        seed=config.seed,
        backend=config.backend,
    )
    final = timed("distillation", multi_turn.main, cli)
    evaluate("after", config.student_model, final["sampler_path"])
    kls = [
        row["teacher_kl"]
        for row in map(json.loads, (student_log / "metrics.jsonl").read_text().splitlines())
        if "teacher_kl" in row
    ]
    return {
        "base_reward": rewards["base"],
        "student_start_reward": rewards.get("student_start", rewards["base"]),
        "teacher_reward": rewards["teacher"],
        "after_reward": rewards["after"],
        "eval_temperature": config.eval_temperature,
        "eval_episodes": config.eval_tasks,
        "steps": config.steps,
        "first_teacher_kl": kls[0] if kls else None,
        "last_teacher_kl": kls[-1] if kls else None,
        "teacher_kl": kls,
        "seconds": seconds,
        "total_seconds": round(sum(seconds.values()), 1),
        "paths": {
            "train_tasks": str(train_dir),
            "held_out_tasks": str(eval_dir),
            "transcripts": str(transcripts),
            "teacher_log": str(teacher_log),
            "teacher_sampler": str(teacher["sampler_path"]),
            "student_sft_log": str(student_sft_log) if student_sft_log else None,
            "distilled_log": str(student_log),
            "distilled_sampler": str(final["sampler_path"]),
        },
    }


if __name__ == "__main__":
    print(json.dumps(chz.nested_entrypoint(run_multi_turn_stage), indent=2))
