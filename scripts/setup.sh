#!/usr/bin/env bash
# Create .venv and install tinker_cookbook with its test tools. Safe to rerun (seconds when done).
#   PYTHON=python3.11   the interpreter to build the venv with (3.11 or newer)
#   TORCH_SPEC=...      the torch requirement; default torch==2.13.0. On a GPU machine use e.g.
#                       TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
set -euo pipefail
cd "$(dirname "$0")/.."
# bubblewrap isolates tool-use sandboxes; without it they fall back to `unshare` (root only).
if ! command -v bwrap >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq bubblewrap) >/dev/null 2>&1 \
    || echo "setup: could not install bubblewrap; sandboxes will use unshare" >&2
fi
if [ ! -x .venv/bin/python ]; then
  "${PYTHON:-python3}" -m venv .venv
fi
# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build on CPU machines.
# shellcheck disable=SC2086
.venv/bin/python -m pip install -q ${TORCH_SPEC:-torch==2.13.0} 2> >(grep -v "^WARNING: Location" >&2)
.venv/bin/python -m pip install -q -e ".[dev]" 2> >(grep -v "^WARNING: Location" >&2)
