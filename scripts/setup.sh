#!/usr/bin/env bash
# Create .venv and install tinker_cookbook with its test tools, plus the container tools Harbor
# tasks run in (podman, runc, podman-compose) and bubblewrap for the engine-free sandbox.
# Safe to rerun (seconds when done).
#   PYTHON=python3.12   the interpreter to build the venv with (3.12 or newer: Harbor needs it)
#   TORCH_SPEC=...      the torch requirement; default torch==2.13.0 (PyPI's Linux wheel, which
#                       carries the CUDA libraries and also runs on CPU). E.g. a CPU-only build:
#                       TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
set -euo pipefail
cd "$(dirname "$0")/.."

find_python() {
  local candidate
  if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; return; fi
  for candidate in python3.13 python3.12 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c \
      'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
      command -v "$candidate"; return
    fi
  done
  for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[2-9]*/bin/python3; do
    if [ -x "$candidate" ]; then echo "$candidate"; return; fi
  done
}

# System packages: bubblewrap (the `local` sandbox), podman + runc (Harbor's podman
# environment), debootstrap (the offline Debian base image the bundled tasks build FROM).
missing=()
for tool in bwrap:bubblewrap podman:podman runc:runc debootstrap:debootstrap; do
  command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "setup: installing ${missing[*]} (apt)" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") \
      >/dev/null 2>&1 || echo "setup: could not install ${missing[*]}; tasks needing them will be refused" >&2
  else
    echo "setup: ${missing[*]} missing; install them to run Harbor tasks in containers" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  py="$(find_python)"
  if [ -z "$py" ]; then
    echo "setup: tinker_cookbook needs Python 3.12 or newer (Harbor does), and none was found." >&2
    echo "  Install one (e.g. 'pyenv install 3.12' or your distribution's python3.12 package)," >&2
    echo "  or name it: PYTHON=/path/to/python3.12 bash scripts/setup.sh" >&2
    exit 1
  fi
  "$py" -c 'import sys; sys.exit(sys.version_info < (3, 12))' || {
    echo "setup: $py is Python $("$py" -c 'import platform; print(platform.python_version())'); 3.12 or newer is needed (Harbor)" >&2
    exit 1
  }
  "$py" -m venv .venv
fi
# A current pip: the venv's bundled one can stall for a long time resolving Harbor's tree.
.venv/bin/python -m pip install -q --upgrade "pip>=25" 2> >(grep -v "^WARNING: Location" >&2)
# torch first and pinned, so the project's own install never re-resolves it.
# shellcheck disable=SC2086
.venv/bin/python -m pip install -q ${TORCH_SPEC:-torch==2.13.0} 2> >(grep -v "^WARNING: Location" >&2)
.venv/bin/python -m pip install -q -e ".[dev]" 2> >(grep -v "^WARNING: Location" >&2)
