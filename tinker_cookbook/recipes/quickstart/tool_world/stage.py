"""The quick start's multi-turn tool-use stage, run the way a user would with real models:

1. `tasks.write_tool_tasks` and `transcripts.write_tool_transcripts`: train and held-out
   Harbor tasks, and correct tool-using transcripts of the training tasks;
2. `sft.sft_on_transcripts`: SFT of a teacher on them with the off-policy recipe's public entry
   point (the student gets a shorter SFT warm-up the same way, the usual start for
   distillation);
3. `on_policy_distillation_harbor_multi_turn.main`: the student samples episodes in the
   sandboxes and learns from the teacher's per-token KL (no environment reward);
4. `task_reward.evaluate_tool_reward_async`: held-out task reward of the base student, its warm
   start, the teacher and the distilled student.

    python -m tinker_cookbook.recipes.quickstart.tool_world out_dir=/tmp/tool_world steps=16
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import chz

from tinker_cookbook.backend import BackendName
from tinker_cookbook.recipes.common import settings_tag
from tinker_cookbook.recipes.distillation import (
    on_policy_distillation_harbor_multi_turn as multi_turn,
)
from tinker_cookbook.recipes.quickstart.tool_world.sft import SFTSettings, sft_on_transcripts
from tinker_cookbook.recipes.quickstart.tool_world.task_reward import (
    HeldOutEpisodes,
    evaluate_tool_reward_async,
)
from tinker_cookbook.recipes.quickstart.tool_world.tasks import (
    SANDBOX_SETTINGS,
    ToolWorld,
    make_problems,
    trajectory_token_limit,
    write_tool_tasks,
)
from tinker_cookbook.recipes.quickstart.tool_world.transcripts import (
    SHORT_SYSTEM_PROMPT,
    SHORT_TOOL_DESCRIPTION,
    model_renderer,
    write_tool_transcripts,
)


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
    backend: BackendName = "auto"
    # torch intra-op threads while the stage runs (None: leave torch's setting). The tiny
    # models gain nothing from more, and lose a lot when other processes share the cores.
    torch_threads: int | None = 1


def run_multi_turn_stage(config: MultiTurnStage) -> dict[str, Any]:
    """Run the stage; returns held-out rewards (`base_reward`: the untrained student,
    `student_start_reward`: after its SFT warm-up, `teacher_reward`, `after_reward`: after
    distillation) with each evaluation's share of failed environments (`env_errors`), the
    distillation's steps and first/last teacher_kl, seconds per part and the paths involved.
    Finished runs in `out_dir` are reused on a rerun."""
    import torch

    threads = torch.get_num_threads()
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    try:
        return _StageRun(config).run()
    finally:
        torch.set_num_threads(threads)


class _StageRun:
    """One run of the stage: its folders, and the seconds, rewards and paths of its parts."""

    def __init__(self, config: MultiTurnStage):
        self.config = config
        self.out = Path(config.out_dir)
        self.train_dir = self.out / "tasks" / "train"
        self.eval_dir = self.out / "tasks" / "held_out"
        self.seconds: dict[str, float] = {}
        self.evals: dict[str, dict[str, float]] = {}
        self.paths: dict[str, str | None] = {
            "train_tasks": str(self.train_dir),
            "held_out_tasks": str(self.eval_dir),
        }

    def run(self) -> dict[str, Any]:
        c = self.config
        transcripts = self.write_data()
        data_tag = transcripts.read_text()
        teacher = self.train_teacher(transcripts, data_tag)
        student_start = self.warm_up_student(transcripts, data_tag)
        self.evaluate("base", c.student_model, None)
        if student_start is not None:
            self.evaluate("student_start", c.student_model, student_start["sampler_path"])
        self.evaluate("teacher", c.teacher.model_name, teacher["sampler_path"])
        student_log = self.out / f"distilled-{settings_tag(c, data_tag)}"
        start_state = student_start["state_path"] if student_start else None
        cli = self.distillation(student_log, teacher["sampler_path"], start_state)
        final = self.timed("distillation", multi_turn.main, cli)
        self.paths |= {
            "distilled_log": str(student_log),
            "distilled_sampler": str(final["sampler_path"]),
        }
        self.evaluate("after", c.student_model, final["sampler_path"])
        return self.summary(_teacher_kls(student_log))

    def write_data(self) -> Path:
        """Train and held-out tasks, and the training tasks' transcripts; their path."""
        c = self.config
        write_tool_tasks(self.train_dir, c.train_tasks, c.seed, world=c.world)
        write_tool_tasks(self.eval_dir, c.eval_tasks, c.seed + 1, True, c.world)
        transcripts = write_tool_transcripts(
            self.out / "transcripts.jsonl",
            make_problems(c.train_tasks, c.seed, world=c.world),
            model_renderer(c.teacher.model_name),
            c.system_prompt,
            c.tool_description,
        )
        self.paths["transcripts"] = str(transcripts)
        return transcripts

    def train_teacher(self, transcripts: Path, data_tag: str) -> dict[str, Any]:
        """SFT of the teacher on the transcripts: its final checkpoint record."""
        c = self.config
        log = self.out / f"teacher-{settings_tag(c.teacher, data_tag)}"
        teacher = self.timed(
            "teacher_sft", sft_on_transcripts, transcripts, log, c.teacher, c.backend
        )
        self.paths |= {"teacher_log": str(log), "teacher_sampler": str(teacher["sampler_path"])}
        return teacher

    def warm_up_student(self, transcripts: Path, data_tag: str) -> dict[str, Any] | None:
        """The student's SFT warm-up (teacher's settings, fewer steps): its final checkpoint
        record, or None when `student_sft_steps` is 0."""
        c = self.config
        self.paths["student_sft_log"] = None
        if not c.student_sft_steps:
            return None
        settings = chz.replace(c.teacher, model_name=c.student_model, steps=c.student_sft_steps)
        log = self.out / f"student-sft-{settings_tag(settings, data_tag)}"
        self.paths["student_sft_log"] = str(log)
        return self.timed("student_sft", sft_on_transcripts, transcripts, log, settings, c.backend)

    def distillation(
        self, log_path: Path, teacher_sampler: str, start_state: str | None
    ) -> multi_turn.CLIConfig:
        """The on-policy distillation run's settings, from the stage's."""
        c = self.config
        return multi_turn.CLIConfig(
            log_path=str(log_path),
            model_name=c.student_model,
            load_checkpoint_path=start_state,
            teacher_model=c.teacher.model_name,
            teacher_checkpoint=teacher_sampler,
            tasks_dir=str(self.train_dir),
            system_prompt=c.system_prompt,
            tool_description=c.tool_description,
            group_size=c.group_size,
            groups_per_batch=c.groups_per_batch,
            max_turns=c.max_turns,
            max_tokens=c.max_tokens,
            max_trajectory_tokens=trajectory_token_limit(c.max_tokens, c.max_turns),
            learning_rate=c.learning_rate,
            lora_rank=c.lora_rank,
            temperature=c.temperature,
            kl_penalty_coef=c.kl_penalty_coef,
            max_steps=c.steps,
            save_every=0,
            seed=c.seed,
            backend=c.backend,
            **SANDBOX_SETTINGS,
        )

    def timed(self, part: str, fn: Callable[..., Any], *args: Any) -> Any:
        start = time.perf_counter()
        result = fn(*args)
        self.seconds[part] = round(time.perf_counter() - start, 1)
        return result

    def evaluate(self, part: str, model_name: str, model_path: str | None) -> None:
        """One episode per held-out task (`eval_temperature`), stored under `part`."""
        c = self.config
        episodes = HeldOutEpisodes(self.eval_dir, c.eval_tasks, c.system_prompt,
                                   c.tool_description, c.max_tokens, c.max_turns)  # fmt: skip
        run = evaluate_tool_reward_async(
            model_name, model_path, episodes, c.eval_temperature, c.seed, c.backend
        )
        self.evals[part] = self.timed(f"eval_{part}", asyncio.run, run)

    def summary(self, kls: list[float]) -> dict[str, Any]:
        c, evals = self.config, self.evals
        return {
            "base_reward": evals["base"]["reward"],
            "student_start_reward": evals.get("student_start", evals["base"])["reward"],
            "teacher_reward": evals["teacher"]["reward"],
            "after_reward": evals["after"]["reward"],
            "env_errors": {part: e["env_errors"] for part, e in evals.items()},
            "eval_temperature": c.eval_temperature,
            "eval_episodes": c.eval_tasks,
            "steps": c.steps,
            "first_teacher_kl": kls[0] if kls else None,
            "last_teacher_kl": kls[-1] if kls else None,
            "teacher_kl": kls,
            "seconds": self.seconds,
            "total_seconds": round(sum(self.seconds.values()), 1),
            "paths": self.paths,
        }


def _teacher_kls(log_path: Path) -> list[float]:
    """The distillation's teacher_kl, step by step, from its metrics log."""
    rows = map(json.loads, (log_path / "metrics.jsonl").read_text().splitlines())
    return [row["teacher_kl"] for row in rows if "teacher_kl" in row]
