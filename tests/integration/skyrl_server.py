"""A real self-hosted Tinker-compatible server for the scale-out tests: SkyRL's
`skyrl.tinker.api` (JAX backend on the CPU) in its own virtual environment.

skyrl 0.4.0 declares Python >= 3.12 and pins its own transformers and an older tinker, so it
gets a venv of its own, built once per machine (about a minute) with the few source patches
it needs here, each checked so that a changed release fails loudly instead of silently. The
venv and pip's downloads live in the project's own `.cache/` (git-ignored), never in the
user's caches; `SKYRL_VENV` points elsewhere.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

PROJECT_CACHE = Path(__file__).resolve().parents[2] / ".cache"
VENV = Path(os.environ.get("SKYRL_VENV", PROJECT_CACHE / "skyrl-0.4.0-venv-v2"))
# Pinned to the set this test was built and run with (2026-11-28), so a new release of any
# of them cannot break the server between runs.
PACKAGES = [
    "jax==0.10.2", "jaxlib==0.10.2", "flax==0.12.8", "optax==0.2.8", "transformers==5.16.1", "peft==0.18.1",
    "tinker==0.25.0", "fastapi[standard]==0.165.0", "uvicorn==0.54.0", "sqlmodel==0.0.50",
    "sqlalchemy[asyncio]==2.1.9", "aiosqlite==0.22.1", "datasets==5.2.0", "safetensors==0.8.0",
    "tokenizers==0.23.3", "typer==0.29.2", "rich==15.0.0", "cloudpathlib==0.26.0", "zstandard==0.25.0",
    "xxhash==4.1.0", "pillow==13.0.0", "aiohttp==3.14.5", "psutil==7.2.2", "pydantic==2.14.4", "numpy==2.4.6",
]  # fmt: skip
PATCHES = [
    # Python 3.11's typing.TypedDict cannot be used by pydantic here.
    ("types.py", "from typing import Annotated, Any, Literal, TypedDict",
     "from typing import Annotated, Any, Literal\nfrom typing_extensions import TypedDict"),
    # The API process starts its engine with `uv run`; use this interpreter instead.
    ("api.py", "    cmd = _build_uv_run_cmd_engine(parent_cmd, app.state.engine_config)",
     "    import sys\n    cmd = [sys.executable, '-m', 'skyrl.tinker.engine', *config_to_argv(app.state.engine_config)]"),
    # tinker SDK 0.38 expects sample replies to name their sequences.
    ("api.py", "    request_id: str\n\n\nclass TelemetryEvent",
     "    request_id: str\n    sample_sequence_ids: list[str] | None = None\n\n\nclass TelemetryEvent"),
    ("api.py", 'return FutureResponse(future_id=str(request_id), status="pending", request_id=str(request_id))\n\n\n@app.get("/api/v1/get_server_capabilities"',
     'return FutureResponse(future_id=str(request_id), status="pending", request_id=str(request_id), '
     'sample_sequence_ids=[f"{request_id}-{k}" for k in range(request.num_samples)])\n\n\n@app.get("/api/v1/get_server_capabilities"'),
]  # fmt: skip


def python() -> Path:
    return VENV / "bin" / "python"


def ensure_venv() -> Path:
    marker = VENV / ".ready"
    if marker.exists():
        return python()
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(python()), "-m", "pip", "install", "-q", "--cache-dir", str(PROJECT_CACHE / "pip")]
    # A current pip: the venv's bundled one can stall for minutes resolving this set.
    subprocess.run([*pip, "--upgrade", "pip>=25"], check=True)
    subprocess.run([*pip, "torch==2.13.0"], check=True)
    subprocess.run([*pip, *PACKAGES], check=True)
    subprocess.run([*pip, "--no-deps", "--ignore-requires-python", "skyrl==0.4.0"], check=True)
    site = subprocess.run(
        [str(python()), "-c", "import skyrl, os; print(os.path.dirname(skyrl.__file__))"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    for name, old, new in PATCHES:
        path = Path(site) / "tinker" / name
        text = path.read_text()
        if old not in text:
            raise RuntimeError(f"skyrl patch target not found in {path}: {old[:60]!r}")
        path.write_text(text.replace(old, new, 1))
    marker.write_text("ok")
    return python()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`skyrl.tinker.api` serving one local model folder on 127.0.0.1; stopped by process group."""

    def __init__(self, model_dir: Path, workdir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "server.log"
        argv = [str(ensure_venv()), "-m", "skyrl.tinker.api", "--base-model", str(model_dir), "--backend", "jax",
                "--host", "127.0.0.1", "--port", str(self.port), "--checkpoints-base", str(workdir / "checkpoints")]  # fmt: skip
        env = {
            **os.environ,
            "JAX_PLATFORMS": "cpu",
            "SKYRL_DATABASE_URL": f"sqlite:///{workdir / 'tinker.db'}",
        }
        self.proc = subprocess.Popen(
            argv,
            cwd=workdir,
            env=env,
            stdout=self.log.open("w"),  # noqa: SIM115 - the server outlives this call
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"skyrl server exited: {self.log.read_text()[-2000:]}")
            try:
                urllib.request.urlopen(self.url + "/api/v1/healthz", timeout=2)
                if "Starting background engine" in self.log.read_text():
                    time.sleep(2)
                    return
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(
            f"skyrl server not ready after {timeout}s: {self.log.read_text()[-2000:]}"
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
