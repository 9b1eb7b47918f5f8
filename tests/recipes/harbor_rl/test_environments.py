"""Harbor environments from the outside: choosing one, clear errors for what cannot run here,
and no container left behind, even after Ctrl-C."""

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest

from tinker_cookbook.recipes.harbor_rl.environments import resolve_environment, start_environment
from tinker_cookbook.recipes.harbor_rl.harbor_tasks import HarborTaskError, load_harbor_task
from tinker_cookbook.sandbox.local_environment import BASE_IMAGE

from .test_harbor_tasks import make_task


def containers() -> list[str]:
    out = subprocess.run(["podman", "ps", "-a", "--format", "{{.Names}}"], capture_output=True,
                         text=True, check=True)  # fmt: skip
    return out.stdout.split()


def networks() -> set[str]:
    out = subprocess.run(["podman", "network", "ls", "--format", "{{.Name}}"], capture_output=True,
                         text=True, check=True)  # fmt: skip
    return set(out.stdout.split())


def start(task_dir, environment="podman"):
    async def run():
        env = await start_environment(load_harbor_task(task_dir), environment)
        await env.stop()

    asyncio.run(run())


def test_unknown_and_missing_environments_are_named(monkeypatch, tmp_path):
    with pytest.raises(HarborTaskError, match="unknown environment 'dockr'; choose auto, local"):
        resolve_environment("dockr")
    monkeypatch.setenv("PATH", str(tmp_path))  # no docker, no podman
    with pytest.raises(
        HarborTaskError, match="found no working container engine .*environment=local"
    ):
        resolve_environment("auto")
    assert resolve_environment("local") == "local"


def test_an_image_that_cannot_be_pulled_is_named_with_what_to_do(podman, tmp_path):
    task = make_task(tmp_path, "pull", dockerfile="FROM docker.io/library/no-such-image-here:1\n")
    with pytest.raises(HarborTaskError) as info:
        start(task)
    message = str(info.value)
    assert "task 'pull'" in message and "'docker.io/library/no-such-image-here:1'" in message
    assert "could not be pulled" in message and BASE_IMAGE in message
    assert containers() == []


def test_no_internet_tasks_are_refused_clearly_on_podman_here(podman, tmp_path):
    task = make_task(tmp_path, "offline", toml="[environment]\nallow_internet = false\n")
    with pytest.raises(HarborTaskError) as info:
        start(task)
    assert "restricts the network" in str(info.value) and "gogost/gost" in str(info.value)
    assert containers() == []


AS_FROM_A_TERMINAL = (
    "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv = sys.argv[1:]; runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)"
)


def test_ctrl_c_mid_run_leaves_no_container(podman, tmp_path):
    assert containers() == []
    networks_before = networks()
    args = [
        "model_name=tiny-qwen3-1m", "environment=podman", "group_size=2", "groups_per_batch=2",
        "max_turns=3", "max_tokens=16", "max_steps=50", "lora_rank=4",
        f"log_path={tmp_path / 'run'}",
    ]  # fmt: skip
    # The recipe as a terminal runs it: a shell's background job (CI may run the tests as one)
    # starts its programs with SIGINT ignored, which a Ctrl-C in a terminal never meets.
    command = [sys.executable, "-c", AS_FROM_A_TERMINAL, "tinker_cookbook.recipes.harbor_rl.train"]
    command += args
    # 50 steps: far more than the run can do before the interrupt, so an interrupt it ignored
    # shows up as a run still going (or one that ends with 0), never as a race with its end.
    run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while not containers():
            assert run.poll() is None, (
                f"run ended before any container started: {run.stderr.read()[-2000:]}"
            )
            assert time.time() < deadline, "no container started within 300 s"
            time.sleep(0.5)
        run.send_signal(signal.SIGINT)
        run.wait(timeout=180)
    finally:
        if run.poll() is None:
            os.kill(run.pid, signal.SIGKILL)
    assert run.returncode != 0, f"the run was not interrupted: {run.stderr.read()[-3000:]}"
    assert containers() == [] and networks() == networks_before
