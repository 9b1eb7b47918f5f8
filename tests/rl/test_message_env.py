"""`EnvFromMessageEnv`: a message-level env as the token-level env the loops train on. The
one-character-per-token renderer makes every token visible; the last tests use the real Qwen3
renderer on the built-in tiny tokenizer."""

import asyncio

import pytest

from tests.tool_use.char_renderer import STOP, CharRenderer, decode, encode, reply
from tinker_cookbook.local import get_tokenizer
from tinker_cookbook.renderers import get_renderer
from tinker_cookbook.rl.message_env import EnvFromMessageEnv, MessageEnv, MessageStepResult

QUESTION = [{"role": "user", "content": "2+2?"}]


class EchoEnv(MessageEnv):
    """Answers each reply with a user message; ends on `done`. Returns the whole history
    (`full=True`, as the tool env does) or only the new message, as in the cookbook's docs."""

    def __init__(self, full: bool = True, stop=None):
        self.history, self.full, self.stop = list(QUESTION), full, stop

    async def initial_observation(self):
        return list(self.history)

    async def step(self, message):
        self.history.append(message)
        done = "done" in message["content"]
        new = [{"role": "user", "content": f"you said {message['content']}"}]
        self.history += new
        return MessageStepResult(
            reward=1.0 if done else 0.0,
            episode_done=done,
            next_messages=list(self.history) if self.full else new,
            metrics={"turn": 1.0},
            logs={"said": message["content"]},
            next_stop_condition=self.stop,
        )


def run(coro):
    return asyncio.run(coro)


def episode(env, *replies, extras=None):
    async def go():
        ob, stop = await env.initial_observation()
        steps = []
        for i, action in enumerate(replies):
            extra = extras[i] if extras else None
            steps.append(await env.step(action, extra=extra))
        return ob, stop, steps

    return run(go())


def test_a_growing_conversation_extends_the_observation_with_the_sampled_tokens():
    env = EnvFromMessageEnv(CharRenderer(), EchoEnv())
    first = reply("  four ")  # parses to "four": re-rendering would lose the spaces
    ob, stop, (s1, s2) = episode(env, first, reply("done"))
    assert stop == [STOP] and decode(ob.to_ints()) == "[user]2+2?|[assistant]"
    assert s1.next_observation.to_ints() == ob.to_ints() + first + encode("[user]you said four") + [
        STOP
    ] + encode("[assistant]")
    assert (s1.reward, s1.episode_done, s1.metrics, s1.logs) == (
        0.0,
        False,
        {"turn": 1.0},
        {"said": "four"},
    )
    assert s2.episode_done and s2.reward == 1.0
    assert decode(s2.next_observation.to_ints()).endswith("you said done|[assistant]")


def test_a_conversation_that_did_not_grow_is_rendered_anew():
    env = EnvFromMessageEnv(CharRenderer(), EchoEnv(full=False), max_trajectory_tokens=1000)
    _, _, (step,) = episode(env, reply("four"))
    assert decode(step.next_observation.to_ints()) == "[user]you said four|[assistant]"


def test_the_message_env_may_change_the_stop_condition():
    env = EnvFromMessageEnv(CharRenderer(), EchoEnv(stop=["\n"]))
    _, _, (step,) = episode(env, reply("four"))
    assert step.next_stop_condition == ["\n"]


def test_a_reply_cut_off_at_max_tokens_ends_with_the_overflow_reward():
    env = EnvFromMessageEnv(CharRenderer(), EchoEnv(), context_overflow_reward=-0.5)
    _, _, (step,) = episode(env, encode("fo"))  # no end-of-turn token: the sampler's cap
    assert step.episode_done and step.reward == -0.5
    assert step.metrics == {"max_tokens_reached": 1.0, "stop/max_tokens": 1.0}
    said_length = EnvFromMessageEnv(CharRenderer(), EchoEnv())
    extra = {"stop_reason": "length"}
    _, _, (step,) = episode(said_length, reply("four"), extras=[extra])
    assert step.metrics["stop/max_tokens"] == 1.0


def test_an_unparseable_reply_earns_failed_parse_reward():
    ended = EnvFromMessageEnv(CharRenderer(), EchoEnv(), failed_parse_reward=-2.0)
    _, _, (step,) = episode(ended, encode("four"), extras=[{"stop_reason": "stop"}])
    assert step.episode_done and step.reward == -2.0
    assert step.metrics == {"parse_error": 1.0, "stop/parse_error": 1.0}
    kept = EnvFromMessageEnv(
        CharRenderer(), EchoEnv(), failed_parse_reward=-2.0, terminate_on_parse_error=False
    )
    _, _, (step,) = episode(kept, encode("done"), extras=[{"stop_reason": "stop"}])
    assert step.reward == -2.0 + 1.0 and step.metrics["parse_error"] == 1.0


def test_max_generation_tokens_is_room_kept_for_the_next_reply():
    # The first observation has 22 tokens; after one turn the next prompt has 58.
    def env(max_generation_tokens):
        return EnvFromMessageEnv(
            CharRenderer(),
            EchoEnv(),
            max_trajectory_tokens=66,
            max_generation_tokens=max_generation_tokens,
            context_overflow_reward=-0.3,
        )

    _, _, (fits,) = episode(env(8), reply("four"))
    assert not fits.episode_done and fits.next_observation.length == 58
    _, _, (no_room,) = episode(env(9), reply("four"))
    assert no_room.episode_done and no_room.reward == -0.3
    assert no_room.metrics == {"turn": 1.0, "context_overflow": 1.0, "stop/context_overflow": 1.0}
    with pytest.raises(ValueError, match="initial prompt has 22 tokens.*max_generation_tokens=50"):
        run(env(50).initial_observation())


def test_a_finished_episode_keeps_its_reward_whatever_its_length():
    env = EnvFromMessageEnv(
        CharRenderer(), EchoEnv(), max_trajectory_tokens=30, max_generation_tokens=3
    )
    _, _, (step,) = episode(env, reply("done"))
    assert step.episode_done and step.reward == 1.0


def test_round_trip_through_the_qwen3_renderer():
    tokenizer = get_tokenizer("tiny-qwen3-1m")
    renderer = get_renderer("qwen3", tokenizer)
    env = EnvFromMessageEnv(renderer, EchoEnv())
    answer = tokenizer.encode("four", add_special_tokens=False) + renderer.get_stop_sequences()
    ob, stop, (step,) = episode(env, answer)
    assert stop == renderer.get_stop_sequences() and not step.episode_done
    assert step.next_observation.to_ints()[: ob.length + len(answer)] == ob.to_ints() + answer
    said = [{"role": "assistant", "content": "four"}, {"role": "user", "content": "you said four"}]
    full = renderer.build_generation_prompt([*QUESTION, *said])
    assert step.next_observation.to_ints() == full.to_ints()


class BashResultEnv(MessageEnv):
    """Answers every reply with a tool result, or (`new_query`) with a new user question."""

    def __init__(self, new_query: bool):
        self.new_query = new_query
        self.history = [{"role": "user", "content": "list the files"}]

    async def initial_observation(self):
        return list(self.history)

    async def step(self, message):
        answer = (
            {"role": "user", "content": "and now?"}
            if self.new_query
            else {"role": "tool", "content": "a.txt", "tool_call_id": "c0", "name": "bash"}
        )
        self.history += [message, answer]
        return MessageStepResult(reward=0.0, episode_done=False, next_messages=list(self.history))


CALL = '<tool_call>\n{"name": "bash", "arguments": {"command": "ls"}}\n</tool_call>'


@pytest.mark.parametrize(
    ("renderer_name", "reply_text", "new_query"),
    [
        ("qwen3", f"<think>\nlooking\n</think>\n\n{CALL}", False),
        ("qwen3", f"<think>\nlooking\n</think>\n\n{CALL}", True),
        ("qwen3", f"<think>\n\n</think>\n\n{CALL}", False),
        ("qwen3_disable_thinking", CALL, False),
    ],
)
def test_a_format_that_rewrites_history_gets_exactly_its_templates_prompt(
    renderer_name, reply_text, new_query
):
    """Reasoning of earlier turns, an empty think block, the prefilled block of a
    non-thinking prompt: each next prompt is what rendering the conversation gives."""
    tokenizer = get_tokenizer("tiny-qwen3-1m")
    renderer = get_renderer(renderer_name, tokenizer)
    message_env = BashResultEnv(new_query)
    env = EnvFromMessageEnv(renderer, message_env)
    action = tokenizer.encode(reply_text + "<|im_end|>", add_special_tokens=False)
    _, _, steps = episode(env, action, action)
    for step, turns in zip(steps, (3, 5), strict=True):
        expected = renderer.build_generation_prompt(message_env.history[:turns]).to_ints()
        assert step.next_observation.to_ints() == expected
