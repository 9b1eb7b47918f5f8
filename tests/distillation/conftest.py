import json
from pathlib import Path

import pytest
from tinker import types

from tinker_cookbook.renderers import get_renderer
from tinker_cookbook.supervised.common import datum_from_model_input_weights

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
        data.append(datum_from_model_input_weights(*renderer.build_supervised_example(convo)))
    for _ in range(30):
        trainer.forward_backward(data, "cross_entropy")
        trainer.optim_step(types.AdamParams(learning_rate=5e-3))
    return trainer.save_weights_for_sampler("deepmath-teacher").result().path


@pytest.fixture(scope="session")
def role_colon_checkpoint(tmp_path_factory):
    """One SFT step of tiny-qwen3-1m rendered with role_colon: a checkpoint whose record
    names another renderer than the model's recommended qwen3."""
    import chz

    from tinker_cookbook.recipes.distillation import off_policy_reasoning

    log_path = tmp_path_factory.mktemp("role_colon_sft")
    cli = chz.Blueprint(off_policy_reasoning.CLIConfig).make_from_argv(
        [
            "model_name=tiny-qwen3-1m",
            f"dataset_path={FIXTURES / 'openthoughts3_sample.jsonl'}",
            "renderer_name=role_colon",
            "batch_size=4",
            "lora_rank=8",
            "max_steps=1",
            "max_length=128",
            f"log_path={log_path}",
            "eval_every=0",
        ]  # fmt: skip
    )
    return off_policy_reasoning.main(cli)
