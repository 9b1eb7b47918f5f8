"""Rows with tool use: assistant `tool_calls` and named tool results survive into the rendered
training sequence (loss only on the assistant's tokens), and malformed calls are named."""

import json

import pytest

from tinker_cookbook.renderers import ToolCall, TrainOnWhat, get_renderer
from tinker_cookbook.renderers.messages import get_text_content
from tinker_cookbook.supervised.datasets import (
    ChatDatasetBuilderCommonConfig,
    FromConversationFileBuilder,
)
from tinker_cookbook.supervised.rows import BadRowError, messages_from_row

CALL = {"name": "bash", "arguments": {"command": "echo $((2+3)) > /app/answer.txt"}}
TOOL_CALL = ToolCall.from_arguments(CALL["name"], CALL["arguments"])  # what rows become
TOOL_ROW = {
    "messages": [
        {"role": "system", "content": "You have a bash tool."},
        {"role": "user", "content": "Compute 2+3."},
        {"role": "assistant", "content": "", "tool_calls": [CALL]},
        {"role": "tool", "name": "bash", "content": "[exit code 0]"},
        {"role": "assistant", "content": "Done."},
    ]
}


def weighted_and_all_text(tokenizer, datum) -> tuple[str, str]:
    targets = datum.loss_fn_inputs["target_tokens"].tolist()
    weights = datum.loss_fn_inputs["weights"].tolist()
    trained = tokenizer.decode([t for t, w in zip(targets, weights, strict=True) if w > 0])
    return trained, tokenizer.decode(targets)


def test_tool_calls_and_tool_names_are_kept():
    messages = messages_from_row(TOOL_ROW, "row 0")
    assert messages[2] == {"role": "assistant", "content": "", "tool_calls": [TOOL_CALL]}
    assert messages[3] == {"role": "tool", "name": "bash", "content": "[exit code 0]"}
    # Plain rows are unchanged: no empty tool_calls or names appear.
    plain = messages_from_row(
        {"messages": TOOL_ROW["messages"][:2] + [TOOL_ROW["messages"][4]]}, "r"
    )
    assert all(set(m) == {"role", "content"} for m in plain)


def test_a_tool_row_trains_only_on_the_assistant_turns_in_qwen3_format(tmp_path, tokenizer):
    path = tmp_path / "tools.jsonl"
    path.write_text(json.dumps(TOOL_ROW) + "\n")
    common = ChatDatasetBuilderCommonConfig(
        model_name_for_tokenizer="tiny-qwen3-1m",
        renderer_name="qwen3",
        batch_size=1,
        train_on_what=TrainOnWhat.ALL_ASSISTANT_MESSAGES,
    )
    (datum,) = FromConversationFileBuilder(common_config=common, file_path=str(path))()[
        0
    ].get_batch(0)
    trained, everything = weighted_and_all_text(tokenizer, datum)
    call_json = json.dumps(CALL)
    assert trained.startswith(f"<tool_call>\n{call_json}\n</tool_call><|im_end|>")
    assert trained.endswith("Done.<|im_end|>") and "tool_response" not in trained
    assert (
        "<|im_start|>user\n<tool_response>\n[exit code 0]\n</tool_response><|im_end|>" in everything
    )
    # What the model learns to say parses back into the same tool call.
    renderer = get_renderer("qwen3", tokenizer)
    model_input, weights = renderer.build_supervised_example(
        messages_from_row(TOOL_ROW, "r")[:3], train_on_what=TrainOnWhat.LAST_ASSISTANT_MESSAGE
    )
    body = [t for t, w in zip(model_input.to_ints(), weights.tolist(), strict=True) if w > 0]
    parsed, complete = renderer.parse_response(body)
    calls = [(c.function.name, c.parsed_arguments()) for c in parsed["tool_calls"]]
    assert complete and calls == [("bash", CALL["arguments"])]
    assert get_text_content(parsed) == ""


def test_openai_shaped_calls_and_json_string_arguments_are_normalised():
    row = json.loads(json.dumps(TOOL_ROW))
    row["messages"][2] = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_0",
                "type": "function",
                "function": {"name": "bash", "arguments": json.dumps(CALL["arguments"])},
            }
        ],
    }
    assert messages_from_row(row, "r")[2] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [TOOL_CALL.model_copy(update={"id": "call_0"})],  # the row's id is kept
    }


def test_columnar_rows_with_none_for_absent_keys(tmp_path, tokenizer):
    import pyarrow as pa
    import pyarrow.parquet as pq

    turns = [
        {"role": "user", "content": "Compute 2+3.", "tool_calls": None, "name": None},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"name": "bash", "arguments": json.dumps(CALL["arguments"])}],
            "name": None,
        },
        {"role": "tool", "content": "", "tool_calls": None, "name": "bash"},
        {"role": "assistant", "content": "Done.", "tool_calls": None, "name": None},
    ]
    pq.write_table(pa.Table.from_pylist([{"messages": turns}]), tmp_path / "rows.parquet")
    common = ChatDatasetBuilderCommonConfig(
        model_name_for_tokenizer="tiny-qwen3-1m",
        batch_size=1,
        train_on_what="all_assistant_messages",
    )
    builder = FromConversationFileBuilder(
        common_config=common, file_path=str(tmp_path / "rows.parquet")
    )
    (datum,) = builder()[0].get_batch(0)
    assert weighted_and_all_text(tokenizer, datum)[0].startswith(f"<tool_call>\n{json.dumps(CALL)}")


def with_turn(index: int, turn: dict) -> dict:
    row = json.loads(json.dumps(TOOL_ROW))
    row["messages"][index] = turn
    return row


BAD = [
    (with_turn(2, {"role": "assistant", "content": "", "tool_calls": {"name": "bash"}}),
     "messages[2].tool_calls must be a list of tool calls, got {'name': 'bash'}"),
    (with_turn(2, {"role": "assistant", "content": "", "tool_calls": ["bash"]}),
     "messages[2].tool_calls[0] must be an object"),
    (with_turn(2, {"role": "assistant", "content": "", "tool_calls": [{"arguments": {}}]}),
     "messages[2].tool_calls[0].name is None; it must be a non-empty string"),
    (with_turn(2, {"role": "assistant", "content": "",
                   "tool_calls": [{"name": "bash", "arguments": ["ls"]}]}),
     "messages[2].tool_calls[0].arguments is ['ls']; it must be an object"),
    (with_turn(2, {"role": "assistant", "content": "",
                   "tool_calls": [{"name": "bash", "arguments": "{command: ls"}]}),
     "messages[2].tool_calls[0].arguments is '{command: ls', not valid JSON"),
    (with_turn(1, {"role": "user", "content": "hi", "tool_calls": [CALL]}),
     "messages[1].tool_calls is set on a 'user' turn"),
    (with_turn(2, {"role": "assistant", "content": "", "tool_calls": []}),
     "messages[2].content is empty"),
    (with_turn(3, {"role": "tool", "name": 7, "content": "ok"}),
     "messages[3].name is 7; a tool turn's name must be a non-empty string"),
]  # fmt: skip


@pytest.mark.parametrize("row, message", BAD)
def test_malformed_tool_use_is_named_by_row_field_and_value(tmp_path, row, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(TOOL_ROW) + "\n" + json.dumps(row) + "\n")
    common = ChatDatasetBuilderCommonConfig(model_name_for_tokenizer="tiny-qwen3-1m")
    with pytest.raises(BadRowError) as err:
        FromConversationFileBuilder(common_config=common, file_path=str(path))()
    assert str(err.value).startswith(f"{path} row 1 (line 2): {message}")
