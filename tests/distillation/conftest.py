import json
from pathlib import Path

import pytest
from tinker import types

from tinker_cookbook.renderers import datum_from_tokens_weights, get_renderer

FIXTURES = Path(__file__).parents[1] / "fixtures"
DEEPMATH = FIXTURES / "deepmath_sample.jsonl"
TULU3 = FIXTURES / "tulu3_sample.jsonl"


@pytest.fixture(scope="session")
def trained_teacher(service):
    """tiny-qwen3-1m taught to answer the DeepMath fixture as `The answer is \\boxed{N}.`:
    a peaked teacher whose distribution differs sharply from the untrained base."""
    trainer = service.create_lora_training_client("tiny-qwen3-1m", rank=16, seed=0).result()
    renderer = get_renderer("qwen3", trainer.get_tokenizer())
    data = []
    for line in DEEPMATH.read_text().splitlines():
        row = json.loads(line)
        convo = [
            {"role": "user", "content": row["question"]},
            {"role": "assistant", "content": f"The answer is \\boxed{{{row['final_answer']}}}."},
        ]
        data.append(datum_from_tokens_weights(*renderer.build_supervised_example(convo)))
    for _ in range(30):
        trainer.forward_backward(data, "cross_entropy")
        trainer.optim_step(types.AdamParams(learning_rate=5e-3))
    return trainer.save_weights_for_sampler("deepmath-teacher").result().path
