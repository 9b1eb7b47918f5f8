"""Chat datasets for supervised training: builders (chz configs) that make batches of Datums.

New domains subclass `ChatDatasetBuilder` (override `__call__`, or only `messages_from_row`)
and never touch the training loop.
"""

from __future__ import annotations

import logging
import random
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import chz
from tinker import types

from tinker_cookbook.local.models import get_tokenizer
from tinker_cookbook.renderers import (
    Message,
    Renderer,
    TrainOnWhat,
    datum_from_tokens_weights,
    get_recommended_renderer_name,
    get_renderer,
)
from tinker_cookbook.supervised.rows import BadRowError, LocalRows, messages_from_row

logger = logging.getLogger(__name__)


@dataclass
class DataStats:
    """What the dataset did to rows: skipped as malformed, or truncated to max_length."""

    skipped_rows: int = 0
    truncated_sequences: int = 0


class SupervisedDataset(ABC):
    """Batches of Datums by index; `len` is the number of batches in one epoch."""

    stats: DataStats

    @abstractmethod
    def get_batch(self, index: int) -> list[types.Datum]: ...

    @abstractmethod
    def __len__(self) -> int: ...

    def set_epoch(self, epoch: int) -> None:  # noqa: B027 - an optional hook
        """Reshuffle for another pass over the data (deterministic in `epoch`)."""


@chz.chz
class ChatDatasetBuilderCommonConfig:
    model_name_for_tokenizer: str
    renderer_name: str | None = None  # default: the model's recommended chat format
    max_length: int | None = 16384  # longer conversations are truncated, never dropped
    batch_size: int = 32
    train_on_what: TrainOnWhat = TrainOnWhat.LAST_ASSISTANT_MESSAGE


@chz.chz
class ChatDatasetBuilder:
    """Makes (train, test or None) datasets of rendered conversations."""

    common_config: ChatDatasetBuilderCommonConfig

    def __call__(self) -> tuple[SupervisedDataset, SupervisedDataset | None]:
        raise NotImplementedError(f"{type(self).__name__} must implement __call__")

    @property
    def tokenizer(self):
        return get_tokenizer(self.common_config.model_name_for_tokenizer)

    @property
    def renderer(self) -> Renderer:
        name = self.common_config.renderer_name or get_recommended_renderer_name(
            self.common_config.model_name_for_tokenizer
        )
        return get_renderer(name, self.tokenizer)

    def messages_from_row(self, row: dict[str, Any], where: str) -> list[Message]:
        """Override to read another schema; raise BadRowError naming `where` and the field."""
        return messages_from_row(row, where)


class RowConverter:
    """Row -> Datum with one renderer; counts truncations and (optionally) skipped rows."""

    def __init__(self, builder: ChatDatasetBuilder, skip_bad_rows: bool):
        self.builder = builder
        self.renderer = builder.renderer
        self.skip_bad_rows = skip_bad_rows
        self.stats = DataStats()

    def __call__(self, row: dict[str, Any], where: str) -> types.Datum | None:
        try:
            messages = self.builder.messages_from_row(row, where)
        except BadRowError as exc:
            if not self.skip_bad_rows:
                raise
            self.stats.skipped_rows += 1
            logger.warning("skipping %s", exc)
            return None
        cfg = self.builder.common_config
        model_input, weights = self.renderer.build_supervised_example(messages, cfg.train_on_what)
        if cfg.max_length is not None and model_input.length > cfg.max_length:
            self.stats.truncated_sequences += 1
        return datum_from_tokens_weights(model_input, weights, cfg.max_length)


class IndexedDataset(SupervisedDataset):
    """Rows with random access, in a seeded order that is reshuffled each epoch."""

    def __init__(
        self,
        rows: Sequence,
        indices: list[int],
        where,
        convert: RowConverter,
        batch_size: int,
        seed: int,
    ):
        self.rows, self.where, self.convert = rows, where, convert
        self.base_indices, self.batch_size, self.seed = list(indices), batch_size, seed
        self.stats = convert.stats
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.order = list(self.base_indices)
        random.Random(self.seed * 100_003 + epoch).shuffle(self.order)

    def __len__(self) -> int:
        return len(self.order) // self.batch_size or (1 if self.order else 0)

    def get_batch(self, index: int) -> list[types.Datum]:
        chosen = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        datums = [self.convert(self.rows[i], self.where(i)) for i in chosen]
        return [d for d in datums if d is not None]


class StreamingDataset(SupervisedDataset):
    """Rows read in order from an iterable source; batch i must follow batch i-1, and
    starting at batch i (a resumed run) skips the rows before it."""

    def __init__(self, open_stream, convert: RowConverter, batch_size: int, num_batches: int):
        self.open_stream, self.convert = open_stream, convert
        self.batch_size, self.num_batches = batch_size, num_batches
        self.stats = convert.stats
        self._iter: Iterator | None = None
        self._next_index = 0
        self._epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self._epoch, self._iter = epoch, None

    def __len__(self) -> int:
        return self.num_batches

    def get_batch(self, index: int) -> list[types.Datum]:
        if self._iter is None or index != self._next_index:
            self._iter = iter(self.open_stream(self._epoch, skip_rows=index * self.batch_size))
            self._next_index = index
        datums = []
        for n in range(self.batch_size):
            row = next(self._iter, None)
            if row is None:
                break
            datum = self.convert(
                row, f"stream row {index * self.batch_size + n} (epoch {self._epoch})"
            )
            if datum is not None:
                datums.append(datum)
        self._next_index = index + 1
        return datums


@chz.chz
class FromConversationFileBuilder(ChatDatasetBuilder):
    """A local .jsonl / .json / .parquet file of `messages` or `conversations` rows.

    Every row is checked before training starts: a malformed one stops the run with its file,
    row and field, or is skipped and counted with `skip_bad_rows=True`."""

    file_path: str
    test_size: int = 0
    shuffle_seed: int = 0
    skip_bad_rows: bool = False

    def __call__(self) -> tuple[SupervisedDataset, SupervisedDataset | None]:
        rows = LocalRows(self.file_path)
        convert = RowConverter(self, self.skip_bad_rows)
        valid = []
        for i in range(len(rows)):
            try:
                self.messages_from_row(rows[i], rows.where(i))
                valid.append(i)
            except BadRowError:
                if not self.skip_bad_rows:
                    raise
                convert.stats.skipped_rows += 1
        if convert.stats.skipped_rows:
            logger.warning(
                "%s: skipped %d malformed rows", self.file_path, convert.stats.skipped_rows
            )
        random.Random(self.shuffle_seed).shuffle(valid)
        test_rows, train_rows = valid[: self.test_size], valid[self.test_size :]
        if not train_rows:
            raise ValueError(
                f"{self.file_path}: no training rows left (rows={len(rows)}, test_size={self.test_size})"
            )
        bs = self.common_config.batch_size
        train = IndexedDataset(rows, train_rows, rows.where, convert, bs, self.shuffle_seed)
        test = (
            IndexedDataset(rows, test_rows, rows.where, convert, bs, self.shuffle_seed)
            if test_rows
            else None
        )
        return train, test


@chz.chz
class HFChatDatasetBuilder(ChatDatasetBuilder):
    """A Hugging Face dataset, streamed (no full download) through a seeded shuffle buffer.
    `dataset_name="json", data_files=...` streams local files through the same path."""

    dataset_name: str
    subset: str | None = None
    split: str = "train"
    data_files: str | None = None
    shuffle_buffer: int = 10_000
    shuffle_seed: int = 0
    test_size: int = 0
    num_rows: int | None = None  # rows per epoch when the dataset does not say
    skip_bad_rows: bool = False

    def _stream(self, epoch: int, skip_rows: int = 0, test: bool = False):
        import datasets

        ds = datasets.load_dataset(
            self.dataset_name,
            self.subset,
            split=self.split,
            data_files=self.data_files,
            streaming=True,
        )
        # One fixed shuffle decides the held-out rows; later epochs reshuffle only the rest.
        ds = ds.shuffle(seed=self.shuffle_seed, buffer_size=self.shuffle_buffer)
        if test:
            return ds.take(self.test_size).skip(skip_rows)
        train = ds.skip(self.test_size)
        if epoch > 0:
            train = train.shuffle(seed=self.shuffle_seed + epoch, buffer_size=self.shuffle_buffer)
        return train.skip(skip_rows)

    def _num_rows(self) -> int:
        if self.num_rows is not None:
            return self.num_rows
        import datasets

        info = datasets.load_dataset_builder(
            self.dataset_name, self.subset, data_files=self.data_files
        ).info
        split = (info.splits or {}).get(self.split)
        if split is None or not split.num_examples:
            raise ValueError(
                f"{self.dataset_name}: the dataset does not give its size; set num_rows="
            )
        return split.num_examples

    def __call__(self) -> tuple[SupervisedDataset, SupervisedDataset | None]:
        convert = RowConverter(self, self.skip_bad_rows)
        bs = self.common_config.batch_size
        num_batches = max((self._num_rows() - self.test_size) // bs, 1)
        train = StreamingDataset(self._stream, convert, bs, num_batches)
        test = None
        if self.test_size:
            test = StreamingDataset(
                lambda epoch, skip_rows=0: self._stream(0, skip_rows, test=True), convert, bs,
                max(self.test_size // bs, 1),
            )  # fmt: skip
        return train, test
