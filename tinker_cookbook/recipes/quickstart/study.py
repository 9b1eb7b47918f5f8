"""The quick-start study: the seed's distillation story at small scale, on a CPU, in minutes.

Stages (each a public recipe; each cached or resumed when the command is rerun):
1. teacher: `off_policy_reasoning` on correct worked solutions of the arithmetic world;
2. teacher data: the teacher answers `teacher_samples` training questions (OpenThoughts3 schema);
3. SFT: `off_policy_reasoning` of the student base on those teacher answers;
4. from the SFT checkpoint, for a tenth of SFT's steps, two arms: `on_policy_distillation` on
   fresh training questions (DeepMath schema) and continued SFT on the same teacher answers;
5. shorter runs: two teachers at once (`on_policy_multi_teacher`) and multi-turn tool use
   (`on_policy_distillation_harbor_multi_turn` on generated Harbor tasks);
6. held-out pass@1 and teacher KL for base, teacher, SFT, both arms; a table and a plot.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

import chz

from tinker_cookbook.backend import BackendName, make_service_client
from tinker_cookbook.model_info import get_recommended_renderer_name
from tinker_cookbook.recipes.common import settings_tag
from tinker_cookbook.recipes.distillation import (
    off_policy_reasoning,
    on_policy_distillation,
    on_policy_multi_teacher,
)
from tinker_cookbook.recipes.quickstart.evaluate import (
    evaluate_student,
    exact_match_rate,
    seeded_params,
)
from tinker_cookbook.recipes.quickstart.notes_world import (
    house_note,
    note_pairs,
    note_prompt_rows,
    note_request,
    note_sft_rows,
)
from tinker_cookbook.recipes.quickstart.tool_world.stage import MultiTurnStage, run_multi_turn_stage
from tinker_cookbook.recipes.quickstart.world import (
    ArithmeticWorld,
    make_problems,
    prompt_row,
    solution_row,
    write_jsonl,
)
from tinker_cookbook.renderers import get_renderer, get_text_content
from tinker_cookbook.utils.checkpoints import get_last_checkpoint

logger = logging.getLogger(__name__)


@chz.chz
class TeacherSettings:
    train_problems: int = 20000
    steps: int = 500
    batch_size: int = 64
    learning_rate: float = 4e-3
    lora_rank: int = 32


@chz.chz
class StudentSettings:
    # The fixed off-policy dataset: one teacher answer to each of this many questions.
    teacher_samples: int = 2048
    sft_steps: int = 800
    sft_batch_size: int = 32
    sft_learning_rate: float = 3e-3
    extra_steps: int | None = None  # both arms after SFT; default a tenth of sft_steps
    opd_groups_per_batch: int = 32
    opd_group_size: int = 4
    opd_learning_rate: float = 1e-4
    cont_learning_rate: float | None = None  # continued SFT; default the OPD rate (a fair arm)
    opd_prompts: int = 5000
    lora_rank: int = 32
    curve_points: int = 4  # evaluated checkpoints along SFT (fewer along the arms)

    @property
    def arm_steps(self) -> int:
        return self.extra_steps or max(self.sft_steps // 10, 1)


@chz.chz
class StudyConfig:
    model_name: str = "tiny-qwen3-1m"  # the teacher's base
    student_model: str | None = None  # default: the same built-in tiny model, untrained
    out_dir: str = "/tmp/tinker-examples/quickstart"
    seed: int = 0
    world: ArithmeticWorld = chz.field(default_factory=ArithmeticWorld)
    teacher: TeacherSettings = chz.field(default_factory=TeacherSettings)
    student: StudentSettings = chz.field(default_factory=StudentSettings)
    multi_teacher_steps: int = 10  # 0 skips the multi-teacher run
    multi_turn: bool = True  # the Harbor tool-use stage (tool_world.stage.MultiTurnStage defaults)
    notes_teacher_steps: int = 150
    eval_problems: int = 200
    eval_samples: int = 3
    max_tokens: int = 80
    max_length: int = 256
    backend: BackendName = "auto"
    base_url: str | None = None

    @property
    def student_base(self) -> str:
        return self.student_model or self.model_name


class Study:
    """Paths, clients and the evaluation cache shared by the stages of one study run."""

    def __init__(self, config: StudyConfig):
        self.config = config
        self.root = Path(config.out_dir)
        self.data = self.root / "data"
        tag = settings_tag(config.model_name, config.world, config.teacher)
        self.teacher_dir = self.root / f"teacher-{tag}"
        student_tag = settings_tag(
            tag,
            config.student_base,
            config.student,
            config.max_length,
            config.max_tokens,
            "derive_seed per-request seeds",  # a new seeding scheme: new samples, new run
        )
        self.run_dir = self.root / f"seed{config.seed}-{student_tag}"
        self.service = make_service_client(config.backend, config.base_url)
        self.renderer = None
        self.evals_path = self.run_dir / "evals.jsonl"

    # ---- data -------------------------------------------------------------------------
    def write_world(self) -> None:
        c = self.config
        files = {
            "teacher_train.jsonl": lambda: [
                solution_row(p) for p in make_problems(c.teacher.train_problems, 1, c.world)
            ],
            "held_out.jsonl": lambda: [
                prompt_row(p) for p in make_problems(c.eval_problems, 2, c.world, held_out=True)
            ],
            "opd_prompts.jsonl": lambda: [
                prompt_row(p) for p in make_problems(c.student.opd_prompts, 3, c.world)
            ],
        }
        for name, rows in files.items():
            if not (self.data / name).exists():
                write_jsonl(self.data / name, rows())

    def held_out(self) -> list[tuple[str, str]]:
        rows = [json.loads(line) for line in (self.data / "held_out.jsonl").open()]
        return [(r["question"], r["final_answer"]) for r in rows]

    # ---- stages -----------------------------------------------------------------------
    def train_teacher(self) -> dict:
        t = self.config.teacher
        return self._sft(
            self.teacher_dir, self.config.model_name, self.data / "teacher_train.jsonl",
            steps=t.steps, batch_size=t.batch_size, learning_rate=t.learning_rate,
            lora_rank=t.lora_rank, lr_schedule="cosine", seed=0,
        )  # fmt: skip

    def teacher_answers(self, teacher_path: str) -> Path:
        """The off-policy dataset: one sampled teacher answer per training question."""
        s, c = self.config.student, self.config
        path = self.run_dir / "teacher_answers.jsonl"
        if path.exists():
            return path
        problems = make_problems(s.teacher_samples, 100 + c.seed, c.world)
        client = self.sampler(c.model_name, teacher_path)
        renderer = self.get_renderer()

        async def sample_all():
            prompts = [
                renderer.build_generation_prompt([{"role": "user", "content": p.question}])
                for p in problems
            ]
            return await asyncio.gather(
                *[
                    client.sample(p, 1, seeded_params(c.max_tokens, renderer, 1000 + c.seed, i))
                    for i, p in enumerate(prompts)
                ]
            )

        rows = []
        for problem, result in zip(problems, asyncio.run(sample_all()), strict=True):
            message, complete = renderer.parse_response(list(result.sequences[0].tokens))
            if complete:
                rows.append(solution_row(problem, get_text_content(message)))
        check_unfinished(len(problems) - len(rows), len(problems), c.max_tokens)
        write_jsonl(path, rows)
        return path

    def sft_student(self, answers: Path) -> dict:
        s = self.config.student
        return self._sft(
            self.run_dir / "sft", self.config.student_base, answers, steps=s.sft_steps,
            batch_size=s.sft_batch_size, learning_rate=s.sft_learning_rate,
            lora_rank=s.lora_rank, lr_schedule="linear", seed=self.config.seed,
            save_every=max(s.sft_steps // s.curve_points, 1),
        )  # fmt: skip

    def continue_sft(self, answers: Path, sft_state: str) -> dict:
        s = self.config.student
        return self._sft(
            self.run_dir / "continued_sft", self.config.student_base, answers,
            steps=s.arm_steps, batch_size=s.sft_batch_size,
            learning_rate=s.cont_learning_rate or s.opd_learning_rate, lora_rank=s.lora_rank,
            lr_schedule="constant", seed=self.config.seed + 1,
            save_every=max(s.arm_steps // 2, 1), load_checkpoint_path=sft_state,
        )  # fmt: skip

    def distill_on_policy(self, teacher_path: str, sft_state: str) -> dict:
        s, c = self.config.student, self.config
        log_path = self.run_dir / "on_policy"
        on_policy_distillation.main(
            on_policy_distillation.CLIConfig(
                model_name=c.student_base,
                teacher_model=c.model_name,
                teacher_checkpoint=teacher_path,
                dataset="deepmath",
                dataset_path=str(self.data / "opd_prompts.jsonl"),
                eval_size=0,
                groups_per_batch=s.opd_groups_per_batch,
                group_size=s.opd_group_size,
                learning_rate=s.opd_learning_rate,
                lora_rank=s.lora_rank,
                max_tokens=c.max_tokens,
                max_steps=s.arm_steps,
                save_every=max(s.arm_steps // 2, 1),
                **self.branch_args(log_path, sft_state),
            )
        )
        return get_last_checkpoint(str(log_path))

    def branch_args(self, log_path: Path, start_state: str) -> dict:
        """Settings every on-policy run branching from the SFT checkpoint shares."""
        c = self.config
        return dict(
            eval_every=0, log_path=str(log_path), load_checkpoint_path=start_state, seed=c.seed,
            backend=c.backend, base_url=c.base_url,
        )  # fmt: skip

    def _sft(self, log_path: Path, model: str, data: Path, **kw) -> dict:
        c = self.config
        save_every = kw.pop("save_every", 0)
        steps = kw.pop("steps")
        off_policy_reasoning.main(
            off_policy_reasoning.CLIConfig(
                model_name=model,
                dataset_path=str(data),
                max_length=c.max_length,
                max_steps=steps,
                num_epochs=10_000,
                save_every=save_every,
                eval_every=0,
                log_path=str(log_path),
                backend=c.backend,
                base_url=c.base_url,
                **kw,
            )  # fmt: skip
        )
        return get_last_checkpoint(str(log_path))

    def multi_teacher(self, teacher_path: str, sft_state: str) -> dict:
        """Two teachers at once from the SFT checkpoint: arithmetic questions scored by the
        arithmetic teacher, thank-you-note requests by the notes teacher."""
        c, s = self.config, self.config.student
        notes = note_sft_rows(repeats=40, seed=0)
        write_jsonl(self.data / "notes_sft.jsonl", notes)
        write_jsonl(self.data / "notes_prompts.jsonl", note_prompt_rows(held_out=False))
        tag = settings_tag(c.model_name, c.notes_teacher_steps, notes)
        notes_dir = self.root / f"notes-teacher-{tag}"
        notes_teacher = self._sft(
            notes_dir, c.model_name, self.data / "notes_sft.jsonl", steps=c.notes_teacher_steps,
            batch_size=32, learning_rate=3e-3, lora_rank=s.lora_rank, lr_schedule="cosine",
            seed=0,
        )["sampler_path"]  # fmt: skip
        log_path = self.run_dir / f"multi_teacher-{tag}"
        half = max(s.opd_groups_per_batch // 2, 1)
        on_policy_multi_teacher.main(
            on_policy_multi_teacher.CLIConfig(
                model_name=c.student_base,
                deepmath_teacher_model=c.model_name,
                deepmath_teacher_checkpoint=teacher_path,
                deepmath_dataset_path=str(self.data / "opd_prompts.jsonl"),
                deepmath_groups_per_batch=half,
                tulu3_teacher_model=c.model_name,
                tulu3_teacher_checkpoint=notes_teacher,
                tulu3_dataset_path=str(self.data / "notes_prompts.jsonl"),
                tulu3_groups_per_batch=half,
                group_size=s.opd_group_size,
                eval_size=0,
                learning_rate=s.opd_learning_rate,
                lora_rank=s.lora_rank,
                max_tokens=c.max_tokens,
                max_steps=c.multi_teacher_steps,
                save_every=0,
                **self.branch_args(log_path, sft_state),
            )
        )
        return {"last": get_last_checkpoint(str(log_path)), "notes_teacher": notes_teacher}

    def notes_score(self, label: str, path: str | None) -> float:
        c = self.config
        base = c.student_base if label != "notes_teacher" else c.model_name
        items = [(note_request(n, g), house_note(n, g)) for n, g in note_pairs(held_out=True)]

        def compute() -> dict:
            client = self.sampler(base, path)
            rate = exact_match_rate(client, self.get_renderer(), items, 4, c.max_tokens, c.seed)
            return {"exact": asyncio.run(rate)}

        return self.cached(f"notes|{label}|{path}|{c.max_tokens}", label, compute)["exact"]

    # ---- evaluation -------------------------------------------------------------------
    def get_renderer(self):
        if self.renderer is None:
            tokenizer = self.sampler(self.config.model_name, None).get_tokenizer()
            name = get_recommended_renderer_name(self.config.model_name)
            self.renderer = get_renderer(name, tokenizer)
        return self.renderer

    def sampler(self, base_model: str, path: str | None):
        client = self.service.create_sampling_client(base_model=base_model, model_path=path)
        return client.result() if hasattr(client, "result") else client

    def cached(self, key: str, label: str, compute) -> dict:
        """`compute()`'s metrics, stored in `evals.jsonl` under `key` (checkpoint + evaluation
        settings), so a rerun of the study redoes no evaluation."""
        if self.evals_path.exists():
            for line in self.evals_path.open():
                row = json.loads(line)
                if row["key"] == key:
                    return row["metrics"]
        started = time.perf_counter()
        metrics = compute()
        metrics["seconds"] = time.perf_counter() - started
        self.evals_path.parent.mkdir(parents=True, exist_ok=True)
        with self.evals_path.open("a") as f:
            f.write(json.dumps({"key": key, "label": label, "metrics": metrics}) + "\n")
        return metrics

    def evaluate(self, label: str, base_model: str, path: str | None, teacher_path: str) -> dict:
        """Held-out pass@1 and teacher KL of one checkpoint (cached)."""
        c = self.config

        def compute() -> dict:
            return asyncio.run(
                evaluate_student(
                    self.sampler(base_model, path),
                    self.sampler(c.model_name, teacher_path),
                    self.get_renderer(),
                    self.held_out(),
                    c.eval_samples,
                    c.max_tokens,
                    seed=c.seed,
                )  # fmt: skip
            )

        key = f"{label}|{path}|{c.eval_problems}x{c.eval_samples}|{c.max_tokens}"
        return self.cached(key, label, compute)

    def curve(self, label: str, log_path: Path, teacher_path: str, step_offset: int) -> list:
        """(step, pass@1, teacher_kl) for every checkpoint a run saved, in step order."""
        points = []
        for line in (log_path / "checkpoints.jsonl").open():
            record = json.loads(line)
            path = record.get("sampler_path") or record["state_path"]
            m = self.evaluate(label, self.config.student_base, path, teacher_path)
            points.append((step_offset + record["step"], m["pass@1"], m.get("teacher_kl")))
        return sorted(points)


def check_unfinished(unfinished: int, total: int, max_tokens: int) -> None:
    """Teacher answers cut off by `max_tokens` are left out of the SFT data; say so, and stop
    when so many are cut that the student would learn from a skewed sample (e.g. no carries)."""
    if not unfinished:
        return
    message = (
        f"{unfinished} of {total} teacher answers did not finish within max_tokens={max_tokens} "
        "and were left out of the off-policy dataset"
    )
    if unfinished > total // 4:
        raise ValueError(message + "; raise max_tokens (the worked solutions need more tokens)")
    logger.warning(message)


def main_comparison(study: Study) -> dict:
    """Stages 1-4 and their evaluations: the numbers behind the seed's claim."""
    c, s = study.config, study.config.student
    study.write_world()
    teacher = study.train_teacher()["sampler_path"]
    answers = study.teacher_answers(teacher)
    sft = study.sft_student(answers)
    opd = study.distill_on_policy(teacher, sft["state_path"])
    cont = study.continue_sft(answers, sft["state_path"])
    scores = {
        "base": study.evaluate("base", c.student_base, None, teacher),
        "teacher": study.evaluate("teacher", c.model_name, teacher, teacher),
    }
    curves = {
        "off-policy SFT": study.curve("sft", study.run_dir / "sft", teacher, 0),
        "continued SFT": study.curve("cont", study.run_dir / "continued_sft", teacher, s.sft_steps),
        "on-policy distillation": study.curve(
            "opd", study.run_dir / "on_policy", teacher, s.sft_steps
        ),
    }
    base = scores["base"]
    curves["off-policy SFT"].insert(0, (0, base["pass@1"], base.get("teacher_kl")))
    for label, points in curves.items():
        if label != "off-policy SFT":
            points.insert(0, curves["off-policy SFT"][-1])
    scores["sft"] = study.evaluate("sft", c.student_base, sft["sampler_path"], teacher)
    scores["continued_sft"] = study.evaluate("cont", c.student_base, cont["sampler_path"], teacher)
    scores["on_policy"] = study.evaluate("opd", c.student_base, opd["sampler_path"], teacher)
    return {"scores": scores, "curves": curves, "teacher_path": teacher, "sft": sft}


def multi_teacher_rows(study: Study, result: dict) -> list[tuple[str, str, str, str]]:
    c = study.config
    if not c.multi_teacher_steps:
        return []
    run = study.multi_teacher(result["teacher_path"], result["sft"]["state_path"])
    after = study.evaluate(
        "multi_teacher", c.student_base, run["last"]["sampler_path"], result["teacher_path"]
    )
    notes_before = study.notes_score("sft", result["sft"]["sampler_path"])
    notes_after = study.notes_score("multi_teacher", run["last"]["sampler_path"])
    notes_teacher = study.notes_score("notes_teacher", run["notes_teacher"])
    steps = f"{c.student.sft_steps}+{c.multi_teacher_steps}"
    return [
        (
            "Notes teacher (SFT on house-style notes)",
            "thank-you notes",
            f"{100 * notes_teacher:.1f}% exact notes",
            str(c.notes_teacher_steps),
        ),
        (
            "Off-policy SFT student, on notes",
            "(never saw notes)",
            f"{100 * notes_before:.1f}% exact notes",
            str(c.student.sft_steps),
        ),
        (
            "+ multi-teacher on-policy distillation",
            "questions + note requests",
            f"{100 * after['pass@1']:.1f}% pass@1, {100 * notes_after:.1f}% exact notes",
            steps,
        ),
    ]


def multi_turn_rows(study: Study) -> list[tuple[str, str, str, str]]:
    c = study.config
    if not c.multi_turn:
        return []
    stage = MultiTurnStage(out_dir=str(study.root / "tool_world"), seed=c.seed, backend=c.backend)
    r = run_multi_turn_stage(stage)
    (study.run_dir / "multi_turn.json").write_text(json.dumps(r, indent=1, default=str))
    pct = lambda v: f"{100 * v:.1f}% task reward"  # noqa: E731
    tasks = "Harbor arithmetic tasks (bash)"
    return [
        (
            "Tool-use teacher (SFT on transcripts)",
            tasks,
            pct(r["teacher_reward"]),
            str(stage.teacher.steps),
        ),
        (
            "Student, short SFT warm-up",
            tasks,
            pct(r["student_start_reward"]),
            str(stage.student_sft_steps),
        ),
        (
            "+ multi-turn on-policy distillation",
            tasks,
            pct(r["after_reward"]),
            f"{stage.student_sft_steps}+{r['steps']}",
        ),
    ]


def run_study(config: StudyConfig) -> dict:
    started = time.perf_counter()
    study = Study(config)
    result = main_comparison(study)
    sc, s = result["scores"], config.student
    pct = lambda m: f"{100 * m['pass@1']:.1f}% pass@1"  # noqa: E731
    rows = [
        ("Student base (untrained)", "-", pct(sc["base"]), "0"),
        (
            "Teacher (SFT on correct solutions)",
            "arithmetic solutions",
            pct(sc["teacher"]),
            str(config.teacher.steps),
        ),
        (
            "Off-policy SFT",
            "teacher answers (OpenThoughts3 schema)",
            pct(sc["sft"]),
            str(s.sft_steps),
        ),
        (
            "+ continued SFT",
            "same teacher answers",
            pct(sc["continued_sft"]),
            f"{s.sft_steps}+{s.arm_steps}",
        ),
        (
            "+ on-policy distillation",
            "questions (DeepMath schema)",
            pct(sc["on_policy"]),
            f"{s.sft_steps}+{s.arm_steps}",
        ),
    ]
    from tinker_cookbook.recipes.quickstart.report import plot_study, results_table

    rows += multi_teacher_rows(study, result)
    rows += multi_turn_rows(study)
    table = results_table(rows)
    plot = plot_study(
        result["curves"],
        {"teacher": sc["teacher"]["pass@1"], "base": sc["base"]["pass@1"]},
        study.run_dir / "study.png",
    )
    (study.run_dir / "results.md").write_text(table + "\n")
    (study.run_dir / "results.json").write_text(
        json.dumps({"scores": sc, "curves": result["curves"]}, indent=1)
    )
    print(table)
    print(
        f"table: {study.run_dir / 'results.md'}\nplot: {plot}\ntook {time.perf_counter() - started:.0f} s"
    )
    return result
