"""Does a long on-policy distillation run hold on to memory? Resident memory step by step.

Runs `on_policy_distillation` on the built-in tiny models (the student is tiny-qwen3-1m, the
teacher tiny-qwen3-1m with a LoRA adapter, as in the quick-start study) and records the
process's resident set size (RSS) after every step. Prints one JSON object: RSS after warm-up
and at the end (each a median over 10 steps), their ratio, whether the end is within 10% of
the warm-up value, glibc's own count of heap bytes in use at both points (RSS growing while
the heap in use does not is fragmentation, not a leak), and the run's settings.

    OMP_NUM_THREADS=1 python benchmarks/memory_growth.py [--steps 100] [--warmup-step 10]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import io
import json
import os
import random
import tempfile
import time
from pathlib import Path

import torch
from tinker import types

from tinker_cookbook.local import LocalBackendConfig, ServiceClient
from tinker_cookbook.recipes.distillation import on_policy_distillation
from tinker_cookbook.utils import ml_log

MODEL = "tiny-qwen3-1m"
MB = 1024 * 1024


def rss_bytes() -> int:
    """Resident set size now (Linux: /proc/self/statm), not the peak `ru_maxrss` gives."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )  # fmt: skip
    ]


def heap_in_use_bytes() -> int | None:
    """Bytes glibc's malloc has handed out and not had back (None off glibc >= 2.33)."""
    try:
        mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return info.uordblks + info.hblkhd


TEMPLATES = ("{a}+{b}=?", "Add {a} and {b}.", "What is {a} plus {b}? Show the steps.")


def write_prompts(path: Path, n: int, seed: int) -> None:
    """DeepMath-schema questions (question, final_answer): sums of 1- to 4-digit numbers in a
    few phrasings, so prompt and reply lengths vary from step to step as in a real run."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = (rng.randint(1, 10 ** rng.randint(1, 4)) for _ in range(2))
        question = rng.choice(TEMPLATES).format(a=a, b=b)
        rows.append({"question": question, "final_answer": str(a + b)})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def train_teacher(work: Path, steps: int) -> str:
    """A teacher adapter (a few steps of SFT on worked answers), saved for sampling."""
    service = ServiceClient(LocalBackendConfig(checkpoint_dir=str(work / "teacher")))
    trainer = service.create_lora_training_client(MODEL, rank=32, seed=0).result()
    tok = trainer.get_tokenizer()
    texts = [
        f"<|im_start|>user\nAdd {a} and {a + 1}.<|im_end|>\n<|im_start|>assistant\n"
        f"\\boxed{{{2 * a + 1}}}<|im_end|>"
        for a in range(100, 116)
    ]
    data = []
    for text in texts:
        ids = tok.encode(text)
        data.append(
            types.Datum(
                model_input=types.ModelInput.from_ints(ids[:-1]),
                loss_fn_inputs={"target_tokens": ids[1:]},
            )
        )
    for _ in range(steps):
        trainer.forward_backward(data, "cross_entropy")
        trainer.optim_step(types.AdamParams(learning_rate=3e-3))
    return trainer.save_weights_for_sampler("teacher").result().path


def record_each_step(samples: list[dict]) -> None:
    """Note RSS (and the heap in use) whenever the loop logs a step's metrics."""
    original = ml_log.MetricsLogger.log_metrics

    def log_metrics(self, metrics, step):
        original(self, metrics, step)
        samples.append({"step": step, "rss": rss_bytes(), "heap": heap_in_use_bytes()})

    ml_log.MetricsLogger.log_metrics = log_metrics


def run(args: argparse.Namespace) -> dict:
    work = Path(tempfile.mkdtemp(prefix="memory-growth-"))
    write_prompts(work / "prompts.jsonl", n=args.steps * args.groups_per_batch, seed=0)
    teacher = train_teacher(work, args.teacher_steps)
    samples: list[dict] = []
    record_each_step(samples)
    cli = on_policy_distillation.CLIConfig(
        model_name=MODEL,
        teacher_model=MODEL,
        teacher_checkpoint=teacher,
        dataset="deepmath",
        dataset_path=str(work / "prompts.jsonl"),
        eval_size=0,
        groups_per_batch=args.groups_per_batch,
        group_size=args.group_size,
        max_tokens=args.max_tokens,
        lora_rank=32,
        learning_rate=1e-4,
        max_steps=args.steps,
        save_every=0,
        eval_every=0,
        log_path=str(work / "run"),
        backend="local",
    )
    gc.collect()
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # the loop prints a table per step
        on_policy_distillation.main(cli)
    seconds = time.perf_counter() - start
    return summarize(samples, args, seconds)


def summarize(samples: list[dict], args: argparse.Namespace, seconds: float) -> dict:
    """RSS at one instant includes the step in flight (the next step's rollouts already run),
    so each point is the median over a window of steps: `window` steps from the warm-up step,
    and the last `window` steps."""
    by_step = {s["step"]: s for s in samples}
    if len(by_step) != args.steps:
        raise RuntimeError(f"expected {args.steps} logged steps, got {sorted(by_step)}")
    warm = range(args.warmup_step, args.warmup_step + args.window)
    end = range(args.steps - args.window, args.steps)
    rss_warm, rss_end = (_median([by_step[i]["rss"] for i in r]) for r in (warm, end))
    ratio = rss_end / rss_warm
    return {
        "rss_mb_after_warmup": _mb(rss_warm),
        "rss_mb_end": _mb(rss_end),
        "ratio": round(ratio, 3),
        "within_10pct": ratio <= 1.10,
        "heap_in_use_mb_after_warmup": _mb(_median([by_step[i]["heap"] for i in warm])),
        "heap_in_use_mb_end": _mb(_median([by_step[i]["heap"] for i in end])),
        "rss_mb_every_10_steps": [_mb(by_step[i]["rss"]) for i in range(0, args.steps, 10)],
        "heap_in_use_mb_every_10_steps": [
            _mb(by_step[i]["heap"]) for i in range(0, args.steps, 10)
        ],
        "seconds": round(seconds, 1),
        "settings": {
            "student": MODEL,
            "teacher": f"{MODEL} + LoRA ({args.teacher_steps} SFT steps)",
            "steps": args.steps,
            "warmup_window": [warm.start, warm.stop - 1],
            "end_window": [end.start, end.stop - 1],
            "groups_per_batch": args.groups_per_batch,
            "group_size": args.group_size,
            "max_tokens": args.max_tokens,
            "lora_rank": 32,
            "torch_threads": torch.get_num_threads(),
        },
    }


def _median(values: list[int | None]) -> int | None:
    return None if None in values else sorted(values)[len(values) // 2]


def _mb(value: int | None) -> float | None:
    return None if value is None else round(value / MB, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--warmup-step", type=int, default=10)
    parser.add_argument("--window", type=int, default=10, help="steps per median")
    parser.add_argument("--groups-per-batch", type=int, default=4)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--teacher-steps", type=int, default=5)
    args = parser.parse_args()
    if args.window < 1 or not 0 <= args.warmup_step <= args.steps - 2 * args.window:
        parser.error(
            f"need 1 <= --window and 0 <= --warmup-step <= --steps - 2 * --window, got "
            f"window={args.window}, warmup_step={args.warmup_step}, steps={args.steps}"
        )
    print(json.dumps(run(args), indent=1))


if __name__ == "__main__":
    main()
