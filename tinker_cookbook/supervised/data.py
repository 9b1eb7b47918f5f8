"""Supervised datasets: conversations -> Datums, and the builders for local files and Hugging
Face datasets (random access, streaming, interleaved mixes).

Loss normalisation: `conversation_to_datum` (and so every builder here) uses
`reduction="mean"` by default, as the cookbook does: each example's weights sum to 1, so every
conversation counts equally in the batch loss whatever its length. `reduction="none"` keeps
0/1 weights (every trained token counts equally; long examples dominate).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import chz
from tinker import types

from tinker_cookbook.renderers import Message, Renderer, TrainOnWhat
from tinker_cookbook.supervised.common import Reduction, datum_from_model_input_weights
from tinker_cookbook.supervised.rows import BadRowError, LocalRows
from tinker_cookbook.supervised.types import ChatDatasetBuilder, SupervisedDataset
from tinker_cookbook.utils.seeding import derive_seed

if TYPE_CHECKING:
    import datasets

logger = logging.getLogger(__name__)


def conversation_to_datum(
    conversation: list[Message],
    renderer: Renderer,
    max_length: int | None,
    train_on_what: TrainOnWhat = TrainOnWhat.ALL_ASSISTANT_MESSAGES,
    reduction: Reduction = "mean",
) -> types.Datum:
    """One conversation as a training Datum: rendered, weighted per `train_on_what`, truncated
    to `max_length` tokens, weights normalised per example (`reduction="mean"`)."""
    model_input, weights = renderer.build_supervised_example(
        conversation, train_on_what=train_on_what
    )
    return datum_from_model_input_weights(model_input, weights, max_length, reduction=reduction)


RowFn = Callable[[dict], types.Datum]
RowsFn = Callable[[dict], list[types.Datum]]


def _row_mapper(map_fn: RowFn | None, flatmap_fn: RowsFn | None) -> RowsFn:
    if (map_fn is None) == (flatmap_fn is None):
        raise ValueError("pass exactly one of map_fn and flatmap_fn")
    return flatmap_fn if flatmap_fn is not None else (lambda row: [map_fn(row)])  # type: ignore[misc]


class SupervisedDatasetFromHFDataset(SupervisedDataset):
    """A Hugging Face `datasets.Dataset` in batches; `set_epoch(seed)` reshuffles it."""

    def __init__(
        self,
        hf_dataset: datasets.Dataset,
        batch_size: int,
        map_fn: RowFn | None = None,
        flatmap_fn: RowsFn | None = None,
    ):
        self.hf_dataset, self.shuffled, self.batch_size = hf_dataset, hf_dataset, batch_size
        self.to_datums = _row_mapper(map_fn, flatmap_fn)

    def get_batch(self, index: int) -> list[types.Datum]:
        rows = self.shuffled.select(range(index * self.batch_size, (index + 1) * self.batch_size))
        return [d for row in rows.to_list() for d in self.to_datums(row)]

    def set_epoch(self, seed: int = 0) -> None:
        self.shuffled = self.hf_dataset.shuffle(seed=seed)

    def __len__(self) -> int:
        return len(self.hf_dataset) // self.batch_size


class StreamingSupervisedDatasetFromHFDataset(SupervisedDataset):
    """A streamed `datasets.IterableDataset` through a shuffle buffer, read forward only
    (a later index skips ahead; an earlier one is refused). `length` is its number of rows."""

    def __init__(
        self,
        hf_dataset: datasets.IterableDataset,
        batch_size: int,
        length: int,
        map_fn: RowFn | None = None,
        flatmap_fn: RowsFn | None = None,
        buffer_size: int = 10_000,
    ):
        self.hf_dataset = hf_dataset.shuffle(seed=0, buffer_size=buffer_size).batch(
            batch_size=batch_size, drop_last_batch=True
        )
        self.batch_size, self.length = batch_size, length
        self.to_datums = _row_mapper(map_fn, flatmap_fn)
        self.set_epoch(0)

    def get_batch(self, index: int) -> list[types.Datum]:
        if index <= self.index:
            raise ValueError(
                f"streaming dataset read forward only: batch {index} requested after {self.index}"
            )
        for _ in range(index - self.index - 1):
            next(self.iterator)
        self.index = index
        columns = next(self.iterator)
        rows = [dict(zip(columns, v, strict=True)) for v in zip(*columns.values(), strict=True)]
        return [d for row in rows for d in self.to_datums(row)]

    def set_epoch(self, seed: int = 0) -> None:
        self.hf_dataset.set_epoch(seed)
        self.iterator, self.index = iter(self.hf_dataset), -1

    def __len__(self) -> int:
        return self.length // self.batch_size


@dataclass
class DataStats:
    """What the dataset did to rows: skipped as malformed, or truncated to max_length."""

    skipped_rows: int = 0
    truncated_sequences: int = 0


class RowConverter:
    """Row -> Datum with one renderer; counts truncations and (optionally) skipped rows."""

    def __init__(self, builder: ChatDatasetBuilder, skip_bad_rows: bool):
        self.builder, self.renderer = builder, builder.renderer
        self.skip_bad_rows = skip_bad_rows
        self.reduction: Reduction = getattr(builder, "reduction", "mean")
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
        max_length = self.builder.common_config.max_length
        model_input, weights = self.renderer.build_supervised_example(
            messages, train_on_what=self.builder.train_on_what
        )
        if max_length is not None and model_input.length > max_length:
            self.stats.truncated_sequences += 1
        return datum_from_model_input_weights(model_input, weights, max_length, self.reduction)


class IndexedDataset(SupervisedDataset):
    """Rows with random access, in a seeded order that is reshuffled each epoch."""

    def __init__(
        self,
        rows: Sequence,
        indices: list[int],
        where: Callable[[int], str],
        convert: RowConverter,
        batch_size: int,
        seed: int,
    ):
        self.rows, self.where, self.convert = rows, where, convert
        self.base_indices, self.batch_size, self.seed = list(indices), batch_size, seed
        self.stats = convert.stats
        self.set_epoch(0)

    def set_epoch(self, seed: int = 0) -> None:
        """`seed` is the epoch: each epoch its own order, the same on every run."""
        self.order = list(self.base_indices)
        random.Random(derive_seed(self.seed, "epoch", seed)).shuffle(self.order)

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

    def set_epoch(self, seed: int = 0) -> None:
        self._epoch, self._iter = seed, None

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
            at = f"stream row {index * self.batch_size + n} (epoch {self._epoch})"
            datum = self.convert(row, at)
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
    max_rows: int | None = None  # at most this many training rows (after the shuffle)
    reduction: Reduction = "mean"  # per-example weights; "none": a token-sum loss

    def __call__(self) -> tuple[SupervisedDataset, SupervisedDataset | None]:
        rows = LocalRows(self.file_path)
        convert = RowConverter(self, self.skip_bad_rows)
        valid = self._valid_rows(rows, convert.stats)
        random.Random(self.shuffle_seed).shuffle(valid)
        test_rows, train_rows = valid[: self.test_size], valid[self.test_size :]
        train_rows = train_rows[: self.max_rows] if self.max_rows is not None else train_rows
        if not train_rows:
            raise ValueError(
                f"{self.file_path}: no training rows left (rows={len(rows)}, test_size={self.test_size})"
            )
        bs, seed = self.common_config.batch_size, self.shuffle_seed
        train = IndexedDataset(rows, train_rows, rows.where, convert, bs, seed)
        test = IndexedDataset(rows, test_rows, rows.where, convert, bs, seed) if test_rows else None
        return train, test

    def _valid_rows(self, rows: LocalRows, stats: DataStats) -> list[int]:
        valid = []
        for i in range(len(rows)):
            try:
                self.messages_from_row(rows[i], rows.where(i))
                valid.append(i)
            except BadRowError:
                if not self.skip_bad_rows:
                    raise
                stats.skipped_rows += 1
        if stats.skipped_rows:
            logger.warning("%s: skipped %d malformed rows", self.file_path, stats.skipped_rows)
        return valid


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
    max_rows: int | None = None  # train on at most this many rows per epoch
    skip_bad_rows: bool = False
    reduction: Reduction = "mean"

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
            epoch_seed = derive_seed(self.shuffle_seed, "epoch", epoch)
            train = train.shuffle(seed=epoch_seed, buffer_size=self.shuffle_buffer)
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
        train_rows = self._num_rows() - self.test_size
        if self.max_rows is not None:
            train_rows = min(train_rows, self.max_rows)
        train = StreamingDataset(self._stream, convert, bs, max(train_rows // bs, 1))
        test = None
        if self.test_size:
            test = StreamingDataset(
                lambda epoch, skip_rows=0: self._stream(0, skip_rows, test=True), convert, bs,
                max(self.test_size // bs, 1),
            )  # fmt: skip
        return train, test


@chz.chz
class HFDatasetSource:
    """One Hugging Face dataset of an interleaved mix; `weight=None` on every source weighs
    them by size (each row equally likely)."""

    path: str
    name: str | None = None
    split: str = "train"
    weight: float | None = None
    message_field: str = "messages"


@chz.chz
class InterleavedChatDatasetBuilder(ChatDatasetBuilder):
    """Several Hugging Face chat datasets mixed by weight (downloaded; random access)."""

    sources: list[HFDatasetSource]
    test_size: int = 0
    shuffle_seed: int = 0
    stopping_strategy: Literal["first_exhausted", "all_exhausted"] = "all_exhausted"
    reduction: Reduction = "mean"

    def __call__(self) -> tuple[SupervisedDataset, SupervisedDataset | None]:
        import datasets

        if not self.sources:
            raise ValueError("InterleavedChatDatasetBuilder.sources is empty")
        parts = [self._load(s) for s in self.sources]
        weights = [s.weight for s in self.sources]
        if all(w is None for w in weights):
            weights = [float(len(p)) for p in parts]
        elif any(w is None for w in weights):
            raise ValueError("give every source a weight, or none of them")
        total = sum(weights)  # type: ignore[arg-type]
        mixed = datasets.interleave_datasets(
            parts,
            probabilities=[w / total for w in weights],  # type: ignore[operator]
            seed=self.shuffle_seed,
            stopping_strategy=self.stopping_strategy,
        ).shuffle(seed=self.shuffle_seed)
        test = mixed.select(range(self.test_size)) if 0 < self.test_size < len(mixed) else None
        train = mixed.select(range(self.test_size, len(mixed))) if test is not None else mixed
        renderer, max_length = self.renderer, self.common_config.max_length

        def to_datum(row: dict) -> types.Datum:
            return conversation_to_datum(
                row["messages"], renderer, max_length, self.train_on_what, self.reduction
            )

        bs = self.common_config.batch_size
        return (
            SupervisedDatasetFromHFDataset(train, bs, map_fn=to_datum),
            SupervisedDatasetFromHFDataset(test, len(test), map_fn=to_datum) if test else None,
        )

    def _load(self, source: HFDatasetSource) -> datasets.Dataset:
        import datasets

        ds = datasets.load_dataset(source.path, name=source.name, split=source.split)
        if source.message_field != "messages":
            ds = ds.rename_column(source.message_field, "messages")
        return ds.select_columns(["messages"])
