"""A first local training run: LoRA-tune a built-in tiny model on a few chat answers.

    python -m tinker_cookbook.recipes.first_lora_run [model_name=tiny-qwen3-1m] [steps=40] ...

It talks to the backend only through the Tinker API, prints the loss falling step by step,
then samples the tuned model's answer to each question.
"""

from __future__ import annotations

import time

import chz
from tinker import types

from tinker_cookbook.backend import BackendName, make_service_client

EXAMPLES = [
    ("What is 2 + 3?", "2 + 3 = 5."),
    ("What is 7 * 6?", "7 * 6 = 42."),
    ("Spell 'cat' backwards.", "tac"),
    ("Name a primary colour.", "Red."),
]


@chz.chz
class Config:
    model_name: str = "tiny-qwen3-1m"
    steps: int = 40
    learning_rate: float = 3e-3
    lora_rank: int = 8
    seed: int = 0
    backend: BackendName = "auto"
    base_url: str | None = None


def chat_datum(tokenizer, question: str, answer: str) -> types.Datum:
    """Next-token targets over the whole chat, with loss only on the assistant's answer."""
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], add_generation_prompt=True, tokenize=False
    )
    prompt_ids = tokenizer.encode(prompt)
    full = prompt_ids + tokenizer.encode(answer + "<|im_end|>")
    weights = [0.0] * (len(prompt_ids) - 1) + [1.0] * (len(full) - len(prompt_ids))
    return types.Datum(
        model_input=types.ModelInput.from_ints(full[:-1]),
        loss_fn_inputs={"target_tokens": full[1:], "weights": weights},
    )


def main(config: Config) -> list[float]:
    service = make_service_client(config.backend, config.base_url)
    trainer = service.create_lora_training_client(
        base_model=config.model_name, rank=config.lora_rank, seed=config.seed
    ).result()
    tokenizer = trainer.get_tokenizer()
    data = [chat_datum(tokenizer, q, a) for q, a in EXAMPLES]
    n_tokens = sum(sum(d.loss_fn_inputs["weights"].tolist()) for d in data)
    losses, start = [], time.perf_counter()
    print(f"{'step':>5} {'loss/token':>11} {'seconds':>8}")
    for step in range(config.steps):
        fb = trainer.forward_backward(data, "cross_entropy")
        trainer.optim_step(types.AdamParams(learning_rate=config.learning_rate))
        losses.append(fb.result().metrics["loss:sum"] / n_tokens)
        if step % 5 == 0 or step == config.steps - 1:
            print(f"{step:>5} {losses[-1]:>11.4f} {time.perf_counter() - start:>8.1f}")
    sampler = trainer.save_weights_and_get_sampling_client().result()
    params = types.SamplingParams(max_tokens=32, temperature=0.0)
    for question, _ in EXAMPLES:
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], add_generation_prompt=True, tokenize=False
        )
        result = sampler.sample(
            types.ModelInput.from_ints(tokenizer.encode(prompt)), 1, params
        ).result()
        answer = tokenizer.decode(result.sequences[0].tokens, skip_special_tokens=True)
        print(f"Q: {question}\nA: {answer}")
    print(f"loss per token fell from {losses[0]:.3f} to {losses[-1]:.3f} in {config.steps} steps")
    return losses


if __name__ == "__main__":
    chz.nested_entrypoint(main)
