"""Single-turn question -> answer environments: a subclass says what the question is and how
to grade a reply; `ProblemEnv` renders the prompt, parses the reply and computes the reward.

Reward: `format_coef * (format - 1) + correct`, so a correct, well-formed reply earns 1, a
correct but ill-formed one `1 - format_coef`, and a wrong one 0 or `-format_coef`.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import tinker

from tinker_cookbook.completers import StopCondition
from tinker_cookbook.renderers import Message, Renderer
from tinker_cookbook.renderers.messages import ParseTermination, get_text_content
from tinker_cookbook.rl.types import (
    Action,
    ActionExtra,
    Env,
    EnvGroupBuilder,
    Observation,
    StepResult,
)


class ProblemEnv(Env):
    """One question, one reply, one grade. Subclasses implement the four abstract methods.

    `require_stop_sequence_for_format`: only a reply that ended with the format's end-of-turn
    marker counts as well formed (not one that ran to the model's EOS or was cut off).
    """

    def __init__(
        self,
        renderer: Renderer,
        convo_prefix: list[Message] | None = None,
        format_coef: float = 0.1,
        require_stop_sequence_for_format: bool = True,
    ):
        self.renderer = renderer
        self.convo_prefix = list(convo_prefix or [])
        self.format_coef = format_coef
        self.require_stop_sequence_for_format = require_stop_sequence_for_format

    @property
    def stop_condition(self) -> StopCondition:
        return self.renderer.get_stop_sequences()

    @abstractmethod
    def get_question(self) -> str: ...

    @abstractmethod
    def check_answer(self, sample_str: str) -> bool:
        """Whether the reply's text (reasoning excluded) answers the question correctly."""

    @abstractmethod
    def check_format(self, sample_str: str) -> bool:
        """Whether the reply's text follows the format the task asks for."""

    @abstractmethod
    def get_reference_answer(self) -> str:
        """The expected answer, for logs."""

    def conversation(self) -> list[Message]:
        return [*self.convo_prefix, {"role": "user", "content": self.get_question()}]

    async def initial_observation(self) -> tuple[Observation, StopCondition]:
        return self.renderer.build_generation_prompt(self.conversation()), self.stop_condition

    async def step(self, action: Action, *, extra: ActionExtra | None = None) -> StepResult:
        message, termination = self.renderer.parse_response(action)
        text = get_text_content(message)
        well_formed = self._ended_well(termination) and self.check_format(text)
        correct = self.check_answer(text)
        reward = self.format_coef * (float(well_formed) - 1.0) + float(correct)
        return StepResult(
            reward=reward,
            episode_done=True,
            next_observation=tinker.ModelInput.empty(),
            next_stop_condition=self.stop_condition,
            metrics={"format": float(well_formed), "correct": float(correct)},
            logs={
                "question": self.get_question(),
                "response": text,
                "reference_answer": self.get_reference_answer(),
            },
        )

    def _ended_well(self, termination: ParseTermination) -> bool:
        if self.require_stop_sequence_for_format:
            return termination.is_stop_sequence
        return termination.is_clean


@dataclass(frozen=True)
class ProblemGroupBuilder(EnvGroupBuilder):
    """`num_envs` attempts at one problem; `env_thunk` makes a fresh env for each."""

    env_thunk: Callable[[], ProblemEnv]
    num_envs: int
    dataset_name: str = "problems"

    async def make_envs(self) -> Sequence[Env]:
        return [self.env_thunk() for _ in range(self.num_envs)]

    def logging_tags(self) -> list[str]:
        return [self.dataset_name]
