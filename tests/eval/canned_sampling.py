"""Sampling clients with known replies and log-probabilities, so an evaluation's metrics can be
checked exactly against what was sampled."""

from tinker import types

STUDENT_LOGPROB = -0.25  # every sampled token's log-probability under the canned student


class CannedSampler:
    """Answers each prompt with fixed replies (cycled), like a sampling client would, and keeps
    the sampling settings of every request it got (prompt text -> params)."""

    def __init__(self, tokenizer, replies: dict[str, list[str]]):
        self.tokenizer, self.replies = tokenizer, replies
        self.requests: dict[str, types.SamplingParams] = {}

    async def sample(self, prompt, num_samples, sampling_params):
        question = self.tokenizer.decode(prompt.to_ints())
        self.requests[question] = sampling_params
        key = next(k for k in self.replies if k in question)
        replies = self.replies[key]
        return types.SampleResponse(
            sequences=[self._sequence(replies[i % len(replies)], i) for i in range(num_samples)]
        )

    def _sequence(self, reply: str, index: int) -> types.SampledSequence:
        tokens = self.tokenizer.encode(reply) + [self.tokenizer.eos_token_id]
        return types.SampledSequence(
            stop_reason="stop",
            sequence_id=str(index),
            _tokens_list=tokens,
            _logprobs_list=[STUDENT_LOGPROB] * len(tokens),
        )


class CannedTeacher:
    """Scores every token with the same log-probability (None for the first, as a client does)."""

    def __init__(self, logprob: float):
        self.logprob = logprob

    async def compute_logprobs(self, model_input):
        return [None] + [self.logprob] * (model_input.length - 1)
