"""The interfaces of supervised training: datasets of Datum batches and the chz builders that
make them. New domains subclass `ChatDatasetBuilder` and never touch the training loop."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import chz
from tinker import types

from tinker_cookbook.local.models import get_tokenizer
from tinker_cookbook.renderers import (
    Message,
    Renderer,
    TrainOnWhat,
    get_recommended_renderer_name,
    get_renderer,
)
from tinker_cookbook.supervised.rows import messages_from_row


class SupervisedDataset(ABC):
    """Batches of Datums by index; `len` is the number of batches in one epoch."""

    @abstractmethod
    def get_batch(self, index: int) -> list[types.Datum]: ...

    @abstractmethod
    def __len__(self) -> int: ...

    def set_epoch(self, seed: int = 0) -> None:  # noqa: B027 - an optional hook
        """Called as each epoch starts (`seed` is the epoch number): reshuffle here."""


@chz.chz
class SupervisedDatasetBuilder:
    """Makes (train, test or None) datasets; the data need not be chat."""

    def __call__(self) -> tuple[SupervisedDataset, SupervisedDataset | None]:
        raise NotImplementedError(f"{type(self).__name__} must implement __call__")


@chz.chz
class ChatDatasetBuilderCommonConfig:
    """What every chat dataset needs: the tokenizer, the chat format, lengths and batching."""

    model_name_for_tokenizer: str
    renderer_name: str | None = None  # default: the model's recommended chat format
    max_length: int | None = 16384  # longer conversations are truncated, never dropped
    batch_size: int = 32
    train_on_what: TrainOnWhat | None = None  # default: ALL_ASSISTANT_MESSAGES


@chz.chz
class ChatDatasetBuilder(SupervisedDatasetBuilder):
    """Makes (train, test or None) datasets of rendered conversations."""

    common_config: ChatDatasetBuilderCommonConfig

    @property
    def tokenizer(self) -> Any:
        return get_tokenizer(self.common_config.model_name_for_tokenizer)

    @property
    def renderer_name(self) -> str:
        return self.common_config.renderer_name or get_recommended_renderer_name(
            self.common_config.model_name_for_tokenizer
        )

    @property
    def renderer(self) -> Renderer:
        return get_renderer(self.renderer_name, self.tokenizer)

    @property
    def train_on_what(self) -> TrainOnWhat:
        return TrainOnWhat(self.common_config.train_on_what or TrainOnWhat.ALL_ASSISTANT_MESSAGES)

    def messages_from_row(self, row: dict[str, Any], where: str) -> list[Message]:
        """Override to read another schema; raise BadRowError naming `where` and the field."""
        return messages_from_row(row, where)
