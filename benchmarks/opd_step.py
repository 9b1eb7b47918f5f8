"""One on-policy distillation step: this project's loop against TRL's GKDTrainer, same models.

    python benchmarks/opd_step.py [--repeats 3] [--steps 5] [--warmup 2] [--threads 2]

Builds once, under .cache/opd-bench/, a Qwen3-architecture student (~12M parameters: hidden
320, 8 layers, 5 heads and 5 KV heads of 64, MLP 960) and teacher (~42M: hidden 640, 8 layers,
10 / 5 heads of 64, MLP 1920) with seeded random weights and untied embeddings, sharing a
2,048-token byte-level BPE (trained on generated arithmetic text) with the chat tokens the
`qwen3` renderer needs and a ChatML template. In each of `--repeats` rounds, five fresh child
processes (benchmarks/opd_child.py) train `--warmup` + `--steps` steps, each on `--batch`
arithmetic chat prompts, group size 1, `--max-tokens` sampled tokens at temperature 1, LoRA
rank 8, learning rate 1e-4. They run at once but in lockstep: one step of one child at a time,
each in turn (the others wait, idle), so that this VM's speed, which drifts by up to 2x within
minutes, reaches every contestant alike:
- ours: `recipes.distillation.on_policy_distillation`, its real loop on the local backend
  (reverse-KL advantages, importance_sampling loss; LoRA on attention, MLP and lm_head, alpha
  32); replies end early when the student samples the stop token;
- ours_compiled: the same with `local_compile=True` (decode steps, scoring and the training
  pass compiled with torch.compile; the compile happens in the first step, which the warm-up
  drops; its time is `first_step_s`);
- trl_autocast: TRL's GKDTrainer with lmbda=1 (always on-policy) and beta=1 (TRL's generalized
  JSD at beta=1 is KL(student || teacher), the reverse KL; beta=0 is the forward KL), fp32
  weights and `bf16=True` (CPU autocast); LoRA r=8, alpha 16 on attention and MLP (not
  lm_head) via peft; replies forced to exactly `--max-tokens` tokens (`min_new_tokens`);
  `gradient_checkpointing=False` (TRL's default, True, also turns the generation KV cache off,
  which made its steps 3-4x slower here: its best is without);
- trl_autocast_compile: trl_autocast with TRL's `torch_compile=True` (its first step compiles;
  the warm-up drops it);
- trl_bf16_weights: the same with both models loaded in bfloat16 and no autocast.
TRL goes into .cache/opd-bench/trl-VERSION with pip (reused when there; the children put it on
PYTHONPATH), never into the project's environment. Then ours runs at each `--scaling-batches`
size, all in one lockstep group, and once for `--memory-steps` steps. Progress goes to stderr; stdout gets one JSON object:
- ours, ours_compiled, trl_*: `s_per_step`, the median over rounds of each run's
  median after warm-up (ours: the loop's `time/step` when it logs one, else time/rollouts +
  time/train; TRL: on_step_begin to on_step_end); `s_between_steps`, the wall time from one
  step's end to the next (a cross-check); `sampled_tokens_per_step`; `sampled_tok_per_s`;
  `split_s` (ours: sampling = time/rollouts, and the loop's other time/* metrics as it logs
  them, all of which are in `metrics_s`; TRL: generation, teacher forward, the rest);
  `setup` (LoRA targets, precision); `per_round_s_per_step`.
- trl_best, the faster TRL variant; ratio = its s_per_step / ours' (goal >= 2), and
  ratio_compiled the same for ours_compiled; tok_per_s_ratio = ours' sampled tok/s / its
  (ours may stop a reply early).
- scaling: ours' s_per_step at each batch size and a least-squares line of it against sampled
  tokens per step: slope_s_per_token, intercept_s, r2 (goal >= 0.95).
- memory: ours' resident memory (and glibc heap in use) after warm-up (median over 5 steps from
  step 10; fewer and earlier in a short run) and at the end (the last 5), and end / warm-up
  (goal: within 10%).
- environment: torch threads in the children, versions, model shapes and parameter counts.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Literal

ROOT = Path(__file__).resolve().parent.parent
CHILD = Path(__file__).resolve().parent / "opd_child.py"
MODELS_VERSION = "1"  # bump when the built models or tokenizer change
TRL_VARIANTS = ("autocast", "autocast-compile", "bf16-weights")
VOCAB = 2048
SHAPES = {  # hidden, layers, heads, kv heads, head_dim, MLP, seed
    "student": (320, 8, 5, 5, 64, 960, 1),
    "teacher": (640, 8, 10, 5, 64, 1920, 2),
}
WORDS = ("what", "is", "the", "sum", "of", "and", "plus", "times", "product", "add", "answer",
         "result", "first", "number", "then", "so", "we", "get", "total", "step")  # fmt: skip
FIXED = {"group_size": 1, "temperature": 1.0, "lora_rank": 8, "learning_rate": 1e-4}


def log(msg: str) -> None:
    print(f"[opd_step] {msg}", file=sys.stderr, flush=True)


def arithmetic_text(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        a, b = (rng.randint(0, 10 ** rng.randint(1, 5)) for _ in range(2))
        filler = " ".join(rng.choice(WORDS) for _ in range(8))
        lines.append(
            f"What is {a} plus {b}? {a} + {b} = {a + b}. {a} times {b} is {a * b}. {filler}"
        )
    return lines


def build_tokenizer():
    """Byte-level BPE (2,048 tokens in all) with the project's chat tokens and ChatML template."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers, trainers
    from tokenizers.models import BPE

    from tinker_cookbook.offline_tokenizers import TINY_ADDED_TOKENS, added_tokens, wrap

    tok = Tokenizer(BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB - len(TINY_ADDED_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(arithmetic_text(20000, seed=0), trainer)
    tok.add_tokens(added_tokens(TINY_ADDED_TOKENS))
    if tok.get_vocab_size() != VOCAB:
        raise RuntimeError(f"tokenizer has {tok.get_vocab_size()} tokens, not {VOCAB}")
    return wrap(tok, eos="<|im_end|>", name="opd-bench")


def build_models(cache: Path) -> dict:
    """The student and teacher folders (built once) and their shapes and parameter counts."""
    folder = cache / f"models-v{MODELS_VERSION}"
    meta_file = folder / "meta.json"
    if meta_file.exists():
        log(f"reusing the models in {folder}")
        return with_paths(json.loads(meta_file.read_text()), folder)
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    log(f"building the student, teacher and tokenizer in {folder}")
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".models-", dir=cache))
    tok = build_tokenizer()
    meta = {}
    for name, (hidden, layers, heads, kv, head_dim, mlp, seed) in SHAPES.items():
        config = Qwen3Config(
            vocab_size=VOCAB, hidden_size=hidden, num_hidden_layers=layers,
            num_attention_heads=heads, num_key_value_heads=kv, head_dim=head_dim,
            intermediate_size=mlp, max_position_embeddings=4096, tie_word_embeddings=False,
            bos_token_id=None, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        )  # fmt: skip
        torch.manual_seed(seed)
        model = Qwen3ForCausalLM(config)
        model.save_pretrained(tmp / name)
        tok.save_pretrained(tmp / name)
        meta[name] = {
            "parameters": sum(p.numel() for p in model.parameters()),
            "shape": dict(hidden=hidden, layers=layers, heads=heads, kv_heads=kv,
                          head_dim=head_dim, mlp=mlp, vocab=VOCAB, tied_embeddings=False),
        }  # fmt: skip
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return with_paths(meta, folder)


def with_paths(meta: dict, folder: Path) -> dict:
    return {name: {**m, "path": str(folder / name)} for name, m in meta.items()}


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", *args], check=True)


def trl_env(cache: Path, version: str) -> Path:
    """A folder holding TRL (and any requirement of it the project's venv lacks), for
    PYTHONPATH; installed once and reused."""
    from packaging.requirements import Requirement

    target = cache / f"trl-{version}"
    if (target / ".complete").exists():
        log(f"reusing TRL {version} in {target}")
        return target
    log(f"installing TRL {version} into {target} (not into the project's venv)")
    shutil.rmtree(target, ignore_errors=True)
    pip("--target", str(target), "--no-deps", f"trl=={version}")
    dist = metadata.PathDistribution(target / f"trl-{version}.dist-info")
    missing = []
    for req in map(Requirement, dist.requires or []):
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        try:
            if metadata.version(req.name) in req.specifier:
                continue
        except metadata.PackageNotFoundError:
            pass
        missing.append(f"{req.name}{req.specifier}")
    if missing:
        log(f"TRL needs what the venv lacks; adding (without their own deps): {missing}")
        pip("--target", str(target), "--no-deps", *missing)
    else:
        log("the venv already has every requirement of TRL; installed TRL alone")
    (target / ".complete").write_text(version)
    return target


def write_prompts(path: Path, n: int) -> None:
    """Short DeepMath-schema chat prompts (question, final_answer): sums in a few phrasings."""
    rng = random.Random(0)
    templates = ("What is {a} plus {b}?", "Add {a} and {b}.", "Compute {a} + {b}. Show the steps.")
    rows = []
    for _ in range(n):
        a, b = rng.randint(1, 9999), rng.randint(1, 9999)
        rows.append(
            {"question": rng.choice(templates).format(a=a, b=b), "final_answer": str(a + b)}
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@dataclass
class Contestant:
    """One run of a round: which side, how many prompts a step, and its variant."""

    side: Literal["ours", "trl"]
    batch: int
    variant: str | None = None
    compile: bool = False

    @property
    def name(self) -> str:
        parts = [self.side, "compiled" * self.compile, self.variant, f"batch {self.batch}"]
        return " ".join(filter(None, parts))


class Child:
    """A running `opd_child.py`, stepped by `Runner.lockstep`."""

    def __init__(self, cmd: list[str], env: dict, log_file: Path):
        self.cmd, self.log_file, self.output = cmd, log_file, ""
        self.err = open(log_file, "w")  # noqa: SIM115 - closed in finish()
        self.proc = subprocess.Popen(
            cmd, env=env, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.err, text=True,
        )  # fmt: skip

    def until_ready(self) -> bool:
        """Reads until the child waits at its gate (True) or has ended (False)."""
        for line in self.proc.stdout:
            if line == "ready\n":
                return True
            self.output += line
        self.finish()
        return False

    def go(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def finish(self) -> None:
        code = self.proc.wait()
        self.err.close()
        if code != 0:
            tail = self.log_file.read_text()[-3000:]
            raise RuntimeError(f"child {' '.join(self.cmd)} failed ({code}):\n{tail}")


class Runner:
    def __init__(self, args: argparse.Namespace, meta: dict, trl_path: Path, work: Path):
        self.args, self.meta, self.trl_path, self.work = args, meta, trl_path, work
        self.count = 0

    def child(self, contestant: Contestant, steps: int) -> dict:
        return self.lockstep([contestant], steps)[0]

    def lockstep(self, contestants: list[Contestant], steps: int) -> list[dict]:
        """Runs the contestants at once, one step at a time in turn (each waits at its gate
        while another steps), so a drift in this machine's speed reaches every one alike;
        returns each one's JSON."""
        names = ", ".join(c.name for c in contestants)
        log(f"{names}: {steps} steps, in lockstep")
        start = time.perf_counter()
        children = [self._start(c, steps) for c in contestants]
        try:
            live = [c for c in children if c.until_ready()]
            while live:
                for c in list(live):
                    c.go()
                    if not c.until_ready():
                        live.remove(c)
        finally:  # on a failure, the other children go too (their logs stay)
            for c in children:
                if c.proc.poll() is None:
                    c.proc.kill()
                    c.proc.wait()
                c.err.close()
        log(f"  done in {time.perf_counter() - start:.1f} s")
        return [json.loads(c.output) for c in children]

    def _start(self, c: Contestant, steps: int) -> Child:
        self.count += 1
        tag = f"{c.side}{'-compiled' * c.compile}-{c.variant or c.batch}"
        run = self.work / f"run{self.count:03d}-{tag}"
        env = dict(os.environ, OMP_NUM_THREADS=str(self.args.threads),
                   MKL_NUM_THREADS=str(self.args.threads), HF_HUB_OFFLINE="1",
                   TOKENIZERS_PARALLELISM="false", TRL_EXPERIMENTAL_SILENCE="1")  # fmt: skip
        if c.side == "trl":
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(self.trl_path), env.get("PYTHONPATH")) if p
            )
        cmd = [sys.executable, str(CHILD), c.side, "--student", self.meta["student"]["path"],
               "--teacher", self.meta["teacher"]["path"], "--batch", str(c.batch),
               "--prompts", str(self.work / "prompts.jsonl"), "--steps", str(steps),
               "--max-tokens", str(self.args.max_tokens), "--threads", str(self.args.threads),
               "--log-path", str(run)]  # fmt: skip
        if c.variant:
            cmd += ["--variant", c.variant]
        if c.compile:
            cmd.append("--compile")
        return Child(cmd, env, Path(f"{run}.log"))


def median(values: list[float | None]) -> float | None:
    """The median, or None when there is nothing (or only None) to take it of."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def ours_summary(out: dict, warmup: int) -> dict:
    steps = out["steps"][warmup:]
    keys = sorted({k for s in steps for k in s["times"]})
    times = {k: median([s["times"][k] for s in steps if k in s["times"]]) for k in keys}

    def step_s(s: dict) -> float:
        t = s["times"]
        return t["time/step"] if "time/step" in t else t["time/rollouts"] + t["time/train"]

    return {
        "s_per_step": median([step_s(s) for s in steps]),
        "s_between_steps": median([s["between_s"] for s in steps]),
        "sampled_tokens_per_step": median([s["sampled_tokens"] for s in steps]),
        "step_time_from": "time/step" if "time/step" in times else "time/rollouts + time/train",
        "split_s": {
            "sampling": times.get("time/rollouts"),
            "teacher_scoring": times.get("time/teacher_scoring"),
            "training": times.get("time/optim"),
            "teacher_scoring_plus_training": times.get("time/train"),
        },
        "metrics_s": times,
        "setup": out["setup"],
    }


def trl_summary(out: dict, warmup: int) -> dict:
    steps = out["steps"][warmup:]
    step, gen, teacher = (
        median([s[k] for s in steps]) for k in ("step_s", "generation_s", "teacher_s")
    )
    return {
        "s_per_step": step,
        "s_between_steps": median([s["between_s"] for s in steps]),
        "sampled_tokens_per_step": median([s["sampled_tokens"] for s in steps]),
        "split_s": {
            "generation": gen,
            "teacher_forward": teacher,
            "student_forward_backward_optim": step - gen - teacher,
        },
        "setup": out["setup"],
    }


def over_rounds(rounds: list[dict]) -> dict:
    """Median over rounds of each run's medians; sampled tokens per second from them."""
    keys = ("s_per_step", "s_between_steps", "sampled_tokens_per_step", "first_step_s")
    out = {k: median([r[k] for r in rounds]) for k in keys if k in rounds[0]}
    out["sampled_tok_per_s"] = out["sampled_tokens_per_step"] / out["s_per_step"]
    for group in ("split_s", "metrics_s"):
        if group in rounds[0]:
            out[group] = {k: median([r[group][k] for r in rounds]) for k in rounds[0][group]}
    if "step_time_from" in rounds[0]:
        out["step_time_from"] = rounds[0]["step_time_from"]
    if "setup" in rounds[0]:
        out["setup"] = rounds[0]["setup"]
    out["per_round_s_per_step"] = [r["s_per_step"] for r in rounds]
    return out


def fit_line(xs: list[float], ys: list[float]) -> dict:
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    intercept = my - slope * mx
    ss_res = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys, strict=True))
    ss_tot = sum((y - my) ** 2 for y in ys)
    return {"slope_s_per_token": slope, "intercept_s": intercept,
            "r2": 1.0 - ss_res / ss_tot if ss_tot else 1.0}  # fmt: skip


def memory_summary(out: dict) -> dict:
    """Medians over a window (5 steps, fewer in a short run) from step 10 (earlier in a short
    run), and over the last window."""
    steps = out["steps"]
    n = len(steps)
    window = max(1, min(5, n // 4))
    first = max(0, min(10, n - 2 * window))
    warm, end = steps[first : first + window], steps[n - window :]
    mb = 1024 * 1024
    rss_warm, rss_end = (median([s["rss"] for s in w]) / mb for w in (warm, end))
    heap = [median([s["heap"] for s in w]) for w in (warm, end)]  # None off glibc
    return {
        "steps": n,
        "warmup_window": [warm[0]["step"], warm[-1]["step"]],
        "end_window": [end[0]["step"], end[-1]["step"]],
        "rss_mb_after_warmup": round(rss_warm, 1),
        "rss_mb_end": round(rss_end, 1),
        "ratio": round(rss_end / rss_warm, 3),
        "within_10pct": rss_end <= 1.10 * rss_warm,
        "heap_in_use_mb": [None if h is None else round(h / mb, 1) for h in heap],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--steps", type=int, default=5, help="measured steps per run")
    parser.add_argument("--warmup", type=int, default=2, help="steps dropped first in each run")
    parser.add_argument("--batch", type=int, default=8, help="prompts per step")
    parser.add_argument("--max-tokens", type=int, default=64, help="sampled tokens per reply")
    parser.add_argument("--scaling-batches", default="4,8,16,32", help="comma-separated")
    parser.add_argument("--memory-steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads")
    parser.add_argument("--trl-version", default="1.16.0")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / ".cache" / "opd-bench")
    args = parser.parse_args()
    args.cache_dir = args.cache_dir.resolve()
    scaling = sorted({int(b) for b in args.scaling_batches.split(",")})
    if min(args.steps, args.repeats, args.warmup + 1, args.memory_steps - 1, len(scaling) - 1) < 1:
        parser.error("need --steps, --repeats >= 1, --warmup >= 0, --memory-steps >= 2, and two "
                     "--scaling-batches")  # fmt: skip
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # for torch here, when it builds models
    began = time.perf_counter()
    meta = build_models(args.cache_dir)
    trl_path = trl_env(args.cache_dir, args.trl_version)
    work = Path(tempfile.mkdtemp(prefix="opd-step-"))
    total = args.warmup + args.steps
    need = max(total * max(scaling + [args.batch]), args.memory_steps * args.batch)
    write_prompts(work / "prompts.jsonl", need)
    runner = Runner(args, meta, trl_path, work)
    rounds: dict[str, list[dict]] = {
        "ours": [], "ours_compiled": [],
        "trl_autocast": [], "trl_autocast_compile": [], "trl_bf16_weights": [],
    }  # fmt: skip
    threads = set()
    try:
        contestants = [
            Contestant("ours", args.batch),
            Contestant("ours", args.batch, compile=True),
            *(Contestant("trl", args.batch, variant) for variant in TRL_VARIANTS),
        ]
        for r in range(args.repeats):
            log(f"round {r + 1}/{args.repeats}")
            out, compiled, *trls = runner.lockstep(contestants, total)
            rounds["ours"].append(ours_summary(out, args.warmup))
            summary = ours_summary(compiled, args.warmup)
            summary["first_step_s"] = compiled["steps"][0]["times"].get("time/step")
            rounds["ours_compiled"].append(summary)
            for variant, trl in zip(TRL_VARIANTS, trls, strict=True):
                rounds[f"trl_{variant.replace('-', '_')}"].append(trl_summary(trl, args.warmup))
                threads.add(trl["threads"])
            threads.add(out["threads"])
        result = {name: over_rounds(rs) for name, rs in rounds.items()}
        best = min(
            (f"trl_{v.replace('-', '_')}" for v in TRL_VARIANTS),
            key=lambda k: result[k]["s_per_step"],
        )
        result["trl_best"] = best
        result["ratio"] = result[best]["s_per_step"] / result["ours"]["s_per_step"]
        result["ratio_compiled"] = (
            result[best]["s_per_step"] / result["ours_compiled"]["s_per_step"]
        )
        result["ratio_goal_met"] = max(result["ratio"], result["ratio_compiled"]) >= 2
        # Ours may sample fewer tokens (a reply can end at the stop token): per token too.
        result["tok_per_s_ratio"] = (
            result["ours"]["sampled_tok_per_s"] / result[best]["sampled_tok_per_s"]
        )
        points = []  # in one lockstep group, so that a drift in speed bends no line
        runs = runner.lockstep([Contestant("ours", batch) for batch in scaling], total)
        for batch, run in zip(scaling, runs, strict=True):
            s = ours_summary(run, args.warmup)
            points.append({"batch": batch, "s_per_step": s["s_per_step"],
                           "sampled_tokens_per_step": s["sampled_tokens_per_step"]})  # fmt: skip
        line = fit_line([p["sampled_tokens_per_step"] for p in points],
                        [p["s_per_step"] for p in points])  # fmt: skip
        result["scaling"] = {"points": points, **line, "r2_goal_met": line["r2"] >= 0.95}
        memory_run = runner.child(Contestant("ours", args.batch), args.memory_steps)
        result["memory"] = memory_summary(memory_run)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["environment"] = {
        "torch_threads": sorted(threads),
        "versions": {
            p: metadata.version(p) for p in ("torch", "transformers", "peft", "accelerate")
        }
        | {"trl": (trl_path / ".complete").read_text(), "python": sys.version.split()[0]},
        "models": {k: {"parameters": m["parameters"], **m["shape"]} for k, m in meta.items()},
        "settings": {k: getattr(args, k) for k in ("repeats", "warmup", "steps", "batch")}
        | {"max_tokens": args.max_tokens, **FIXED},
        "seconds": round(time.perf_counter() - began, 1),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
