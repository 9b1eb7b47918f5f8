"""Where the local backend caches what it builds (tiny models, converted tokenizers)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path


def cache_dir() -> Path:
    """`$TINKER_COOKBOOK_CACHE`, else `~/.cache/tinker_cookbook`."""
    root = os.environ.get("TINKER_COOKBOOK_CACHE") or Path.home() / ".cache" / "tinker_cookbook"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_dir_atomically(target: Path, fill: Callable[[Path], None]) -> Path:
    """Fill a fresh temporary sibling of `target`, then rename it into place.

    A crash while filling leaves only a `.tmp-*` folder, never a half-written `target`; an
    existing `target` is replaced only once the new one is complete.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".tmp-{target.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        fill(tmp)
        _fsync_dir_files(tmp)
        if target.exists():
            trash = target.parent / f".old-{target.name}-{uuid.uuid4().hex[:8]}"
            os.replace(target, trash)
            os.replace(tmp, target)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, target)
        _fsync_dir(target.parent)  # make the rename itself durable
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir_files(folder: Path) -> None:
    for item in folder.iterdir():
        if item.is_file():
            with open(item, "rb") as fh:
                os.fsync(fh.fileno())
