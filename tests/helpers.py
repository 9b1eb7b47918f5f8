"""Small builders shared by the tests."""

from tinker import types


def chat_tokens(tokenizer, user: str, assistant: str) -> list[int]:
    return tokenizer.encode(
        f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n{assistant}<|im_end|>"
    )


def next_token_datum(tokens: list[int], **extra) -> types.Datum:
    """A datum predicting tokens[1:] from tokens[:-1] (the SDK's pre-shifted convention)."""
    inputs = {"target_tokens": tokens[1:], **extra}
    return types.Datum(model_input=types.ModelInput.from_ints(tokens[:-1]), loss_fn_inputs=inputs)
