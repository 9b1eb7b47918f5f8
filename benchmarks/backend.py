"""Local backend throughput against plain transformers/torch on the same work, in one run.

Prints one JSON object. Each `*_ratio_*` is this backend's tokens/s divided by the baseline's
(>= 1 means at least as fast); `concurrent_speedup` is 64 concurrent single-sample requests
against the same requests issued one at a time.

    python benchmarks/backend.py [--model tiny-qwen3-4m] [--repeats 7]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import torch
from tinker import types
from transformers import AutoModelForCausalLM

from tinker_cookbook.local import LocalBackendConfig, ServiceClient
from tinker_cookbook.local.models import resolve_model_dir

BATCH, PROMPT_LEN, NEW_TOKENS, SCORE_LEN = 8, 32, 64, 256


def on_engine_thread(service, fn):
    """Run a baseline on the backend's compute thread: torch keeps one OpenMP thread team per
    calling thread, and two teams spinning against each other would distort both timings."""
    return lambda: service.engine.run_op(fn).result()


def timed_pair(ours, theirs, repeats: int) -> tuple[float, float]:
    """Median seconds of each, measured alternately so machine noise hits both alike."""
    ours(), theirs()  # warm-up
    a, b = [], []
    for _ in range(repeats):
        for fn, out in ((ours, a), (theirs, b)):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return statistics.median(a), statistics.median(b)


def prompts(vocab: int, n: int, length: int, seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, min(vocab, 256), (n, length), generator=g).tolist()


def bench_sampling(service, hf, model, repeats):
    client = service.create_sampling_client(base_model=model).result()
    batch = prompts(hf.config.vocab_size, BATCH, PROMPT_LEN)
    params = types.SamplingParams(max_tokens=NEW_TOKENS, temperature=1.0, stop=[])

    async def ours_async():
        return await asyncio.gather(
            *[client.sample(types.ModelInput.from_ints(p), 1, params) for p in batch]
        )

    def theirs():
        ids = torch.tensor(batch)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            hf.generate(
                ids, attention_mask=torch.ones_like(ids), do_sample=True, top_k=0, top_p=1.0,
                max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, pad_token_id=0,
            )  # fmt: skip

    ours_s, hf_s = timed_pair(
        lambda: asyncio.run(ours_async()), on_engine_thread(service, theirs), repeats
    )
    work = BATCH * NEW_TOKENS
    return work / ours_s, work / hf_s, client


def bench_scoring(service, client, hf, repeats):
    batch = prompts(hf.config.vocab_size, BATCH, SCORE_LEN, seed=1)

    async def ours_async():
        return await asyncio.gather(
            *[client.compute_logprobs(types.ModelInput.from_ints(p)) for p in batch]
        )

    def theirs():
        ids = torch.tensor(batch)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            logits = hf(ids).logits.float()
        return torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None])

    ours_s, hf_s = timed_pair(
        lambda: asyncio.run(ours_async()), on_engine_thread(service, theirs), repeats
    )
    return BATCH * SCORE_LEN / ours_s, BATCH * SCORE_LEN / hf_s


def bench_training(service, model, repeats):
    from peft import LoraConfig, get_peft_model

    batch = prompts(256, BATCH, SCORE_LEN, seed=2)
    data = [
        types.Datum(
            model_input=types.ModelInput.from_ints(p[:-1]), loss_fn_inputs={"target_tokens": p[1:]}
        )
        for p in batch
    ]
    trainer = service.create_lora_training_client(model, rank=16, seed=0).result()

    def ours():
        trainer.forward_backward(data, "cross_entropy")
        trainer.optim_step(types.AdamParams(learning_rate=1e-4)).result()

    base = AutoModelForCausalLM.from_pretrained(str(resolve_model_dir(model)))
    targets = [
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
        "lm_head",
    ]
    peft_model = get_peft_model(base, LoraConfig(r=16, lora_alpha=32, target_modules=targets))
    opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.tensor(batch)

    def theirs():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = peft_model(ids[:, :-1]).logits.float()
        loss = -torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None]).sum()
        loss.backward()
        opt.step()
        opt.zero_grad()

    ours_s, torch_s = timed_pair(ours, on_engine_thread(service, theirs), repeats)
    return BATCH * (SCORE_LEN - 1) / ours_s, BATCH * (SCORE_LEN - 1) / torch_s


def bench_concurrency(client, repeats):
    prompt = types.ModelInput.from_ints(prompts(256, 1, PROMPT_LEN, seed=3)[0])
    params = [
        types.SamplingParams(max_tokens=16, temperature=1.0, seed=i, stop=[]) for i in range(64)
    ]

    async def concurrent():
        await asyncio.gather(*[client.sample(prompt, 1, p) for p in params])

    async def one_at_a_time():
        for p in params:
            await client.sample(prompt, 1, p)

    serial_s, concurrent_s = timed_pair(
        lambda: asyncio.run(one_at_a_time()), lambda: asyncio.run(concurrent()), repeats
    )
    return serial_s / concurrent_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-qwen3-4m")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.manual_seed(0)
    service = ServiceClient(LocalBackendConfig(device="cpu"))
    hf = AutoModelForCausalLM.from_pretrained(str(resolve_model_dir(args.model))).eval()

    sample_ours, sample_hf, client = bench_sampling(service, hf, args.model, args.repeats)
    score_ours, score_hf = bench_scoring(service, client, hf, args.repeats)
    train_ours, train_torch = bench_training(service, args.model, args.repeats)
    speedup = bench_concurrency(client, args.repeats)
    print(
        json.dumps(
            {
                "model": args.model,
                "torch_threads": torch.get_num_threads(),
                "sample_tokens_per_s": round(sample_ours),
                "hf_generate_tokens_per_s": round(sample_hf),
                "sample_ratio_vs_hf_generate": round(sample_ours / sample_hf, 3),
                "logprobs_tokens_per_s": round(score_ours),
                "forward_tokens_per_s": round(score_hf),
                "logprobs_ratio_vs_forward": round(score_ours / score_hf, 3),
                "train_tokens_per_s": round(train_ours),
                "torch_loop_tokens_per_s": round(train_torch),
                "train_ratio_vs_torch_loop": round(train_ours / train_torch, 3),
                "concurrent_speedup": round(speedup, 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
