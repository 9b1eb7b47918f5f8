"""Chat dataset builders: batching, splits, schemas, bad rows, truncation, streaming."""

import json
from pathlib import Path

import pytest

from tinker_cookbook.renderers import TrainOnWhat
from tinker_cookbook.supervised.datasets import (
    ChatDatasetBuilderCommonConfig,
    FromConversationFileBuilder,
    HFChatDatasetBuilder,
)
from tinker_cookbook.supervised.rows import BadRowError

FIXTURE = Path(__file__).parents[1] / "fixtures" / "openthoughts3_sample.jsonl"


def common(**kw):
    kw.setdefault("batch_size", 4)
    return ChatDatasetBuilderCommonConfig(model_name_for_tokenizer="tiny-qwen3-1m", **kw)


def weighted_text(tokenizer, datum):
    targets = datum.loss_fn_inputs["target_tokens"].tolist()
    weights = datum.loss_fn_inputs["weights"].tolist()
    return tokenizer.decode([t for t, w in zip(targets, weights, strict=True) if w > 0])


def test_file_builder_batches_and_trains_only_on_the_answer(tokenizer):
    train, test = FromConversationFileBuilder(
        common_config=common(), file_path=str(FIXTURE), test_size=8
    )()
    assert test is not None and len(train) == 6 and len(test) == 2
    batch = train.get_batch(0)
    assert len(batch) == 4
    for datum in batch:
        text = weighted_text(tokenizer, datum)
        assert text.startswith("<think>\nWe need") and text.endswith("$.<|im_end|>")
    train_inputs = {
        tuple(d.model_input.to_ints()) for i in range(len(train)) for d in train.get_batch(i)
    }
    test_inputs = {
        tuple(d.model_input.to_ints()) for i in range(len(test)) for d in test.get_batch(i)
    }
    assert len(train_inputs) == 24 and len(test_inputs) == 8 and not train_inputs & test_inputs


def test_order_is_seeded_and_reshuffled_per_epoch():
    def first_batch(seed, epoch=0):
        train, _ = FromConversationFileBuilder(
            common_config=common(), file_path=str(FIXTURE), shuffle_seed=seed
        )()
        train.set_epoch(epoch)
        return [d.model_input.to_ints() for d in train.get_batch(0)]

    assert first_batch(0) == first_batch(0)
    assert first_batch(0) != first_batch(1)
    assert first_batch(0, epoch=1) != first_batch(0, epoch=0)


def test_messages_schema_and_parquet_and_json(tmp_path, tokenizer):
    rows = [
        {
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": f"yo {i}"},
            ]
        }
        for i in range(4)
    ]
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "rows.parquet")
    for name in ("rows.json", "rows.parquet"):
        train, _ = FromConversationFileBuilder(
            common_config=common(), file_path=str(tmp_path / name)
        )()
        texts = sorted(weighted_text(tokenizer, d) for d in train.get_batch(0))
        # (the qwen3 format may open an answer with an empty think block)
        assert [t.split("</think>\n\n")[-1] for t in texts] == [
            f"yo {i}<|im_end|>" for i in range(4)
        ]


BAD_ROWS = [
    ("{\"text\": \"no conversation here\"}", "no 'messages' or 'conversations' field"),
    ("{\"conversations\": [{\"from\": \"human\", \"value\": \"q\"}, {\"from\": \"bot\", \"value\": \"a\"}]}",
     "conversations[1].from is 'bot', not a known role"),
    ("{\"conversations\": [{\"from\": \"human\", \"value\": \"  \"}, {\"from\": \"gpt\", \"value\": \"a\"}]}",
     "conversations[0].value is empty"),
    ("{\"conversations\": [{\"from\": \"human\", \"value\": \"q\"", "not valid JSON"),
    ("{\"conversations\": [{\"from\": \"human\", \"value\": \"only a question\"}]}",
     "field 'conversations' has no assistant turn"),
]  # fmt: skip
GOOD_ROW = FIXTURE.read_text().splitlines()[0]


@pytest.mark.parametrize("line, message", BAD_ROWS)
def test_a_malformed_row_is_named_by_file_row_line_and_field(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(GOOD_ROW + "\n\n" + line + "\n")  # a blank line: row 1 is on line 3
    with pytest.raises(BadRowError) as err:
        FromConversationFileBuilder(common_config=common(), file_path=str(path))()
    assert str(err.value).startswith(f"{path} row 1 (line 3): {message}")


def test_bad_rows_can_be_skipped_and_counted(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join([GOOD_ROW] + [line for line, _ in BAD_ROWS]) + "\n")
    train, _ = FromConversationFileBuilder(
        common_config=common(), file_path=str(path), skip_bad_rows=True
    )()
    assert train.stats.skipped_rows == len(BAD_ROWS)
    assert len(train.get_batch(0)) == 1


def test_long_conversations_are_truncated_not_dropped(tokenizer):
    train, _ = FromConversationFileBuilder(
        common_config=common(max_length=40), file_path=str(FIXTURE)
    )()
    batch = train.get_batch(0)
    assert len(batch) == 4 and all(d.model_input.length == 39 for d in batch)
    assert train.stats.truncated_sequences == 4


def test_train_on_all_messages(tokenizer):
    cfg = common(train_on_what=TrainOnWhat.ALL_MESSAGES)
    train, _ = FromConversationFileBuilder(common_config=cfg, file_path=str(FIXTURE))()
    assert "Put the final answer" in weighted_text(tokenizer, train.get_batch(0)[0])


def test_streaming_builder_resumes_at_any_batch():
    builder = HFChatDatasetBuilder(
        common_config=common(),
        dataset_name="json",
        data_files=str(FIXTURE),
        shuffle_buffer=8,
        test_size=4,
        num_rows=32,
    )
    train, test = builder()
    assert len(train) == 7 and len(test) == 1
    in_order = [[d.model_input.to_ints() for d in train.get_batch(i)] for i in range(3)]
    fresh, _ = builder()
    assert [d.model_input.to_ints() for d in fresh.get_batch(2)] == in_order[2]
    test_inputs = {tuple(d.model_input.to_ints()) for d in test.get_batch(0)}
    assert not test_inputs & {tuple(x) for batch in in_order for x in batch}
