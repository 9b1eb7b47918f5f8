"""The cookbook's supervised data API: conversation_to_datum (per-example normalisation by
default), datum_from_model_input_weights, the Hugging Face datasets, and a user's own
ChatDatasetBuilder trained through `await train.main(config)`."""

import asyncio
import json

import chz
import datasets
import pytest
import torch

from tinker_cookbook.renderers import TrainOnWhat, get_renderer
from tinker_cookbook.supervised import train
from tinker_cookbook.supervised.common import compute_mean_nll, datum_from_model_input_weights
from tinker_cookbook.supervised.data import (
    StreamingSupervisedDatasetFromHFDataset,
    SupervisedDatasetFromHFDataset,
    conversation_to_datum,
)
from tinker_cookbook.supervised.types import (
    ChatDatasetBuilder,
    ChatDatasetBuilderCommonConfig,
    SupervisedDataset,
)
from tinker_cookbook.utils.checkpoints import load_checkpoints
from tinker_cookbook.utils.ml_log import read_metrics

MODEL = "tiny-qwen3-1m"
CONVO = [
    {"role": "user", "content": "What is 2 + 3?"},
    {"role": "assistant", "content": "2 + 3 = 5"},
]
EXAMPLES = [
    {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
    for q, a in [("2 + 3?", "5"), ("Say hi.", "hi there"), ("Sky colour?", "The sky is blue.")]
] * 4


@pytest.fixture(scope="module")
def renderer(tokenizer):
    return get_renderer("qwen3", tokenizer)


def test_conversation_to_datum_normalises_each_example_by_default(renderer, tokenizer):
    datum = conversation_to_datum(CONVO, renderer, max_length=512)
    weights = datum.loss_fn_inputs["weights"].to_torch()
    targets = datum.loss_fn_inputs["target_tokens"].to_torch()
    assert datum.model_input.length == len(weights) == len(targets)
    assert float(weights.sum()) == pytest.approx(1.0)
    trained = tokenizer.decode(targets[weights > 0].tolist())
    assert "2 + 3 = 5" in trained and "What is" not in trained
    token_sum = conversation_to_datum(CONVO, renderer, 512, reduction="none")
    raw = token_sum.loss_fn_inputs["weights"].to_torch()
    assert set(raw.tolist()) == {0.0, 1.0}
    assert torch.allclose(weights, raw / raw.sum())


def test_conversation_to_datum_train_on_what_and_truncation(renderer, tokenizer):
    everything = conversation_to_datum(CONVO, renderer, 512, TrainOnWhat.ALL_MESSAGES, "none")
    w = everything.loss_fn_inputs["weights"].to_torch()
    trained = everything.loss_fn_inputs["target_tokens"].to_torch()[w > 0].tolist()
    assert "What is 2 + 3?" in tokenizer.decode(trained)
    short = conversation_to_datum(CONVO, renderer, max_length=10)
    assert short.model_input.length == 9  # the first 10 tokens, shifted


def test_datum_from_model_input_weights_keeps_raw_weights_by_default(renderer):
    model_input, weights = renderer.build_supervised_example(CONVO)
    datum = datum_from_model_input_weights(model_input, weights, max_length=64)
    assert datum.loss_fn_inputs["weights"].tolist() == weights[1:].tolist()
    with pytest.raises(ValueError, match="reduction='sum' is not 'none' or 'mean'"):
        datum_from_model_input_weights(model_input, weights, reduction="sum")
    with pytest.raises(ValueError, match="3 weights for a sequence of"):
        datum_from_model_input_weights(model_input, weights[:3])


def test_compute_mean_nll_is_weighted():
    from tinker import types

    lp = [types.TensorData.from_torch(torch.tensor([-1.0, -3.0]))]
    w = [types.TensorData.from_torch(torch.tensor([1.0, 0.0]))]
    assert compute_mean_nll(lp, w) == pytest.approx(1.0)


def test_hf_dataset_batches_map_and_flatmap_and_reshuffle(renderer):
    hf = datasets.Dataset.from_list(EXAMPLES)

    def to_datum(row):
        return conversation_to_datum(row["messages"], renderer, 64)

    mapped = SupervisedDatasetFromHFDataset(hf, batch_size=4, map_fn=to_datum)
    flat = SupervisedDatasetFromHFDataset(hf, 4, flatmap_fn=lambda r: [to_datum(r)] * 2)
    assert len(mapped) == 3 and len(mapped.get_batch(0)) == 4 and len(flat.get_batch(0)) == 8
    before = [d.model_input.to_ints() for d in mapped.get_batch(0)]
    mapped.set_epoch(7)
    assert [d.model_input.to_ints() for d in mapped.get_batch(0)] != before
    with pytest.raises(ValueError, match="exactly one of map_fn and flatmap_fn"):
        SupervisedDatasetFromHFDataset(hf, 4)


def test_streaming_dataset_reads_forward_only(tmp_path, renderer):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in EXAMPLES))
    stream = datasets.load_dataset("json", data_files=str(path), split="train", streaming=True)
    data = StreamingSupervisedDatasetFromHFDataset(
        stream, batch_size=3, length=len(EXAMPLES), buffer_size=4,
        map_fn=lambda row: conversation_to_datum(row["messages"], renderer, 64),
    )  # fmt: skip
    assert len(data) == 4
    assert len(data.get_batch(0)) == 3 and len(data.get_batch(2)) == 3  # skips batch 1
    with pytest.raises(ValueError, match="batch 1 requested after 2"):
        data.get_batch(1)
    data.set_epoch(1)
    assert len(data.get_batch(0)) == 3


@chz.chz
class SimpleDatasetBuilder(ChatDatasetBuilder):
    """The cookbook's tutorial builder: inline rows, the builder's renderer."""

    def __call__(self) -> tuple[SupervisedDataset, SupervisedDataset | None]:
        renderer, max_length = self.renderer, self.common_config.max_length

        def example_to_data(example):
            model_input, weights = renderer.build_supervised_example(example["messages"])
            return [datum_from_model_input_weights(model_input, weights, max_length=max_length)]

        hf = datasets.Dataset.from_list(EXAMPLES)
        bs = self.common_config.batch_size
        return SupervisedDatasetFromHFDataset(hf, bs, flatmap_fn=example_to_data), None


def test_a_users_chat_builder_trains_through_train_main(tmp_path):
    builder = SimpleDatasetBuilder(
        common_config=ChatDatasetBuilderCommonConfig(
            model_name_for_tokenizer=MODEL, renderer_name="role_colon", max_length=128,
            batch_size=4,
        )
    )  # fmt: skip
    config = train.Config(
        log_path=str(tmp_path), model_name=MODEL, recipe_name="tutorial_sft",
        dataset_builder=builder, learning_rate=1e-3, lora_rank=8, max_steps=3, save_every=2,
        eval_every=0,
    )  # fmt: skip
    final = asyncio.run(train.main(config))
    nll = [r["train_mean_nll"] for r in read_metrics(tmp_path) if "train_mean_nll" in r]
    assert len(nll) == 3 and final["sampler_path"]
    assert [(r["name"], r["renderer_name"]) for r in load_checkpoints(tmp_path)] == [
        ("000002", "role_colon"),
        ("final", "role_colon"),
    ]
