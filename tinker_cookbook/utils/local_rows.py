"""Random access to the rows of local .jsonl / .json / .parquet files, with errors that name
the file, row and line."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any


class BadRowError(ValueError):
    """A dataset row that cannot become a conversation."""


class LocalRows(Sequence[dict[str, Any]]):
    """Random access to a local file's rows. JSONL is indexed by byte offset and read on
    demand, so large files cost no memory; JSON and Parquet are loaded whole."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise FileNotFoundError(f"dataset file {str(self.path)!r} does not exist")
        suffix = self.path.suffix.lower()
        self._offsets: list[int] | None = None
        self._rows: list[dict[str, Any]] | None = None
        if suffix in (".jsonl", ".ndjson"):
            self._offsets = _line_offsets(self.path)
        elif suffix == ".json":
            data = json.loads(self.path.read_text())
            self._rows = data.get("data", data) if isinstance(data, dict) else data
            if not isinstance(self._rows, list):
                raise BadRowError(
                    f"{self.path}: expected a JSON list of rows (or {{'data': [...]}})"
                )
        elif suffix == ".parquet":
            import pyarrow.parquet as pq

            self._rows = pq.read_table(self.path).to_pylist()
        else:
            raise ValueError(f"dataset file {str(self.path)!r}: use .jsonl, .json or .parquet")

    def __len__(self) -> int:
        return len(self._offsets) if self._offsets is not None else len(self._rows)

    def __getitem__(self, index: int) -> dict[str, Any]:  # type: ignore[override]
        if self._rows is not None:
            row = self._rows[index]
        else:
            with open(self.path, "rb") as fh:
                fh.seek(self._offsets[index])
                line = fh.readline()
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BadRowError(f"{self.where(index)}: not valid JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise BadRowError(
                f"{self.where(index)}: expected a JSON object, got {type(row).__name__}"
            )
        return row

    def where(self, index: int) -> str:
        if self._offsets is not None:
            return f"{self.path} row {index} (line {self._line_numbers[index]})"
        return f"{self.path} row {index}"

    @property
    def _line_numbers(self) -> list[int]:
        if not hasattr(self, "_line_cache"):
            self._line_cache = _line_numbers(self.path)
        return self._line_cache


def _line_offsets(path: Path) -> list[int]:
    offsets, pos = [], 0
    with open(path, "rb") as fh:
        for line in fh:
            if line.strip():
                offsets.append(pos)
            pos += len(line)
    return offsets


def _line_numbers(path: Path) -> list[int]:
    with open(path, "rb") as fh:
        return [n for n, line in enumerate(fh, start=1) if line.strip()]
