"""One measured run for `benchmarks/opd_step.py` (run by it, one fresh process per run).

    python benchmarks/opd_child.py ours [--compile] --student DIR --teacher DIR --prompts FILE ...
    python benchmarks/opd_child.py trl --variant autocast|autocast-compile|bf16-weights ...   (TRL on PYTHONPATH)

`ours` runs the project's on-policy distillation recipe in this process (its real loop and
local backend) and notes, whenever the loop logs a step, the wall clock and the resident
memory; the step times themselves are read back from the run's `metrics.jsonl`. `trl` runs
TRL's `GKDTrainer` on the same models and prompts, timing each step with a callback and the
student's generation and the teacher's forward passes inside it. Before its first step and
after each one it says "ready" on stdout and waits for "go" on stdin (see `Gate`). At the end
it prints one JSON object on stdout (torch threads, the run's setup, a record per step);
everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

import torch
from memory_growth import heap_in_use_bytes, rss_bytes


class Gate:
    """Lockstep with `opd_step.py`, which runs every contestant of a round at once but lets
    one step run at a time, in turn, so that this machine's drifting speed falls on all of
    them alike. `wait()` says "ready" on stdout and blocks until the parent answers "go";
    `clock()` is the wall clock less the time spent waiting."""

    def __init__(self) -> None:
        self.waited = 0.0

    def wait(self) -> None:
        start = time.perf_counter()
        sys.__stdout__.write("ready\n")
        sys.__stdout__.flush()
        if sys.stdin.readline().strip() != "go":
            raise SystemExit("opd_child: the benchmark that runs this child went away")
        self.waited += time.perf_counter() - start

    def clock(self) -> float:
        return time.perf_counter() - self.waited


# TRL's student adapters: attention and MLP (ours also adapts lm_head).
TRL_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def run_ours(args: argparse.Namespace, gate: Gate) -> tuple[list[dict], dict]:
    from tinker_cookbook.local import LocalBackendConfig, lora
    from tinker_cookbook.recipes.distillation import on_policy_distillation
    from tinker_cookbook.utils import ml_log

    marks: dict[int, dict] = {}
    original = ml_log.MetricsLogger.log_metrics

    def log_metrics(self, metrics, step):
        original(self, metrics, step)
        marks[step] = {"at": gate.clock(), "rss": rss_bytes(), "heap": heap_in_use_bytes()}
        gate.wait()

    ml_log.MetricsLogger.log_metrics = log_metrics
    cli = on_policy_distillation.CLIConfig(
        model_name=args.student,
        teacher_model=args.teacher,
        dataset="deepmath",
        dataset_path=args.prompts,
        renderer_name="qwen3",
        eval_size=0,
        groups_per_batch=args.batch,
        group_size=1,
        max_tokens=args.max_tokens,
        temperature=1.0,
        lora_rank=8,
        learning_rate=1e-4,
        max_steps=args.steps,
        save_every=0,
        eval_every=0,
        log_path=args.log_path,
        backend="local",
        local_compile=args.compile,
    )
    start = gate.clock()
    on_policy_distillation.main(cli)
    metrics_file = Path(args.log_path) / "metrics.jsonl"
    logged = [json.loads(line) for line in metrics_file.read_text().splitlines()]
    records = []
    for row in sorted(
        (r for r in logged if "optim/num_sampled_tokens" in r), key=lambda r: r["step"]
    ):
        step = row["step"]
        before = marks[step - 1]["at"] if step - 1 in marks else start
        records.append(
            {
                "step": step,
                "times": {k: v for k, v in row.items() if k.startswith("time/")},
                "sampled_tokens": row["optim/num_sampled_tokens"],
                "between_s": marks[step]["at"] - before,
                "rss": marks[step]["rss"],
                "heap": marks[step]["heap"],
            }
        )
    setup = {
        "bf16_autocast": LocalBackendConfig().use_bf16,
        "lora_targets": [*lora.ATTN_TARGETS, *lora.MLP_TARGETS, *lora.UNEMBED_TARGETS],
        "lora_alpha": lora.LORA_ALPHA,
    }
    return records, setup


class Stopwatch:
    """Seconds spent inside the wrapped callables since the last `take()`."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, fn):
        def timed(*a, **kw):
            start = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                self.seconds += time.perf_counter() - start

        return timed

    def take(self) -> float:
        seconds, self.seconds = self.seconds, 0.0
        return seconds


def run_trl(args: argparse.Namespace, gate: Gate) -> tuple[list[dict], dict]:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import __version__ as trl_version
    from trl.experimental.gkd import GKDConfig, GKDTrainer

    rows = [json.loads(line) for line in Path(args.prompts).read_text().splitlines()]
    dataset = Dataset.from_list(
        [
            {
                "messages": [
                    {"role": "user", "content": r["question"]},
                    {"role": "assistant", "content": r["final_answer"]},
                ]
            }
            for r in rows
        ]
    )
    dtype = torch.bfloat16 if args.variant == "bf16-weights" else torch.float32
    student = AutoModelForCausalLM.from_pretrained(args.student, dtype=dtype)
    teacher = AutoModelForCausalLM.from_pretrained(args.teacher, dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(args.student)
    config = GKDConfig(
        output_dir=args.log_path,
        lmbda=1.0,  # always the student's own samples
        beta=1.0,  # generalized JSD at beta=1 is KL(student || teacher): reverse KL
        temperature=1.0,
        max_new_tokens=args.max_tokens,
        per_device_train_batch_size=args.batch,
        gradient_accumulation_steps=1,
        learning_rate=1e-4,
        max_steps=args.steps,
        bf16=args.variant.startswith("autocast"),
        torch_compile=args.variant == "autocast-compile",
        # TRL's SFT-derived configs default to gradient checkpointing, which also turns the KV
        # cache off in generation (every new token re-reads the whole sequence): 4x slower
        # sampling here. Off, as anyone tuning TRL for speed at this size would set it.
        gradient_checkpointing=False,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
    )
    lora = LoraConfig(
        r=8,
        lora_alpha=16,
        lora_dropout=0.0,
        target_modules=TRL_LORA_TARGETS,
        task_type="CAUSAL_LM",
    )
    generation, scoring = Stopwatch(), Stopwatch()
    records: list[dict] = []
    sampled = [0]

    class StepTimer(TrainerCallback):
        def on_step_begin(self, *_, **__):
            generation.take()
            scoring.take()
            sampled[0] = 0
            self.begin = time.perf_counter()

        def on_step_end(self, *_, **__):
            end = time.perf_counter()
            records.append(
                {
                    "step": len(records),
                    "step_s": end - self.begin,
                    "generation_s": generation.take(),
                    "teacher_s": scoring.take(),
                    "sampled_tokens": sampled[0],
                    "end": gate.clock(),
                }
            )
            gate.wait()

    trainer = GKDTrainer(
        model=student,
        teacher_model=teacher,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora,
        callbacks=[StepTimer()],
    )
    # Exactly `max_tokens` new tokens per completion: the stop token is masked out until then.
    trainer.generation_config.min_new_tokens = args.max_tokens
    generate = generation.wrap(trainer.generate_on_policy_outputs)

    def generate_and_count(model, inputs, generation_config):
        ids, mask, labels = generate(model, inputs, generation_config)
        sampled[0] += int((labels != -100).sum())
        return ids, mask, labels

    trainer.generate_on_policy_outputs = generate_and_count
    trainer.teacher_model.forward = scoring.wrap(trainer.teacher_model.forward)
    trainer.train()
    setup = {
        "trl": trl_version,
        "mixed_precision": trainer.accelerator.mixed_precision,
        "weights_dtype": str(student.dtype),
        "trainable_parameters": sum(
            p.numel() for p in trainer.model.parameters() if p.requires_grad
        ),
        "lora_targets": TRL_LORA_TARGETS,
        "lora_alpha": lora.lora_alpha,
        "gradient_checkpointing": config.gradient_checkpointing,
        "generation_kv_cache": trainer.generation_config.use_cache,
    }
    ends = [r.pop("end") for r in records]
    for i, record in enumerate(records):
        record["between_s"] = ends[i] - ends[i - 1] if i else None
    return records, setup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("side", choices=["ours", "trl"])
    parser.add_argument(
        "--variant", choices=["autocast", "autocast-compile", "bf16-weights"], help="trl only"
    )
    parser.add_argument("--compile", action="store_true", help="ours: local_compile=True")
    parser.add_argument("--student", required=True)
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--prompts", required=True, help="DeepMath-schema JSONL")
    parser.add_argument("--batch", type=int, required=True, help="prompts per step")
    parser.add_argument("--steps", type=int, required=True, help="steps in all, warm-up included")
    parser.add_argument("--max-tokens", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--log-path", required=True, help="a fresh folder for the run")
    args = parser.parse_args()
    if (args.side == "trl") != (args.variant is not None):
        parser.error("--variant is required with trl and not taken by ours")
    if args.side == "trl" and args.compile:
        parser.error("--compile is ours only")
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    torch.set_num_threads(args.threads)
    gate = Gate()
    gate.wait()  # the first step and everything before it run on the parent's first "go"
    with contextlib.redirect_stdout(sys.stderr):  # both print progress of their own
        run = run_ours if args.side == "ours" else run_trl
        records, setup = run(args, gate)
    print(json.dumps({"threads": torch.get_num_threads(), "setup": setup, "steps": records}))


if __name__ == "__main__":
    main()
