"""Loading Harbor tasks, building their environment, the bash tool and the grading."""

import asyncio
import json
import shutil

import pytest

from tinker_cookbook.recipes.harbor_rl.harbor_tasks import (
    BUNDLED_TASKS_DIR,
    HarborTaskError,
    dockerfile_instructions,
    find_harbor_tasks,
    load_harbor_task,
    prepare_sandbox,
    resolve_tasks_dir,
)
from tinker_cookbook.recipes.harbor_rl.harbor_tools import HarborBashTool, HarborReward
from tinker_cookbook.sandbox import available_backends

needs_sandbox = pytest.mark.skipif(not available_backends(), reason="no sandbox backend")


def make_task(
    root,
    name="t1",
    dockerfile="FROM ubuntu:24.04\nWORKDIR /app\n",
    test="echo 1 > /logs/verifier/reward.txt",
):
    d = root / name
    (d / "environment").mkdir(parents=True)
    (d / "tests").mkdir()
    (d / "task.toml").write_text('version = "1.0"\n[verifier]\ntimeout_sec = 10.0\n')
    (d / "instruction.md").write_text("Do the thing.\n")
    (d / "environment" / "Dockerfile").write_text(dockerfile)
    (d / "tests" / "test.sh").write_text(f"#!/bin/bash\nmkdir -p /logs/verifier\n{test}\n")
    return d


def test_dockerfile_parsing():
    text = 'FROM x\n# comment\nRUN echo a \\\n    && echo b\nENV A=1 B="two words"\nENV C three\nRUN ["echo", "x y"]\n'
    steps = dockerfile_instructions(text)
    assert [(n, k) for n, k, _ in steps] == [
        (1, "FROM"),
        (3, "RUN"),
        (5, "ENV"),
        (6, "ENV"),
        (7, "RUN"),
    ]
    assert steps[1][2] == "echo a      && echo b"


def test_flat_and_nested_layouts_are_found(tmp_path):
    make_task(tmp_path / "flat", "a")
    make_task(tmp_path / "nested" / "terminal-bench@2.0" / "abc123", "b")
    assert [p.name for p in find_harbor_tasks(tmp_path)] == ["a", "b"]
    assert len(find_harbor_tasks(BUNDLED_TASKS_DIR)) >= 10


def test_missing_files_and_unknown_datasets_are_named(tmp_path, monkeypatch):
    d = make_task(tmp_path)
    (d / "instruction.md").unlink()
    with pytest.raises(HarborTaskError, match="task 't1' .* has no instruction.md"):
        load_harbor_task(d)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(HarborTaskError, match="uvx harbor datasets download terminal-bench@2.0"):
        resolve_tasks_dir(None, "terminal-bench@2.0")
    downloaded = tmp_path / ".cache" / "harbor" / "tasks" / "terminal-bench@2.0"
    downloaded.mkdir(parents=True)
    assert resolve_tasks_dir(None, "terminal-bench@2.0") == downloaded
    assert resolve_tasks_dir(None, None) == BUNDLED_TASKS_DIR


@needs_sandbox
def test_environment_is_built_from_the_dockerfile(tmp_path):
    dockerfile = (
        "FROM python:3.12\nARG TOOL=sed\nENV MODE=fast\nWORKDIR /srv\nCOPY data/ /srv/data/\n"
        'COPY note.txt ./\nRUN echo "$MODE-$TOOL" > built.txt\nEXPOSE 80\nCMD ["bash"]\n'
    )
    d = make_task(tmp_path, dockerfile=dockerfile)
    (d / "environment" / "data").mkdir()
    (d / "environment" / "data" / "x.csv").write_text("1,2\n")
    (d / "environment" / "note.txt").write_text("note\n")

    async def check():
        sb = await prepare_sandbox(load_harbor_task(d))
        try:
            return await sb.run_command("pwd; cat built.txt data/x.csv note.txt; echo $MODE")
        finally:
            await sb.cleanup()

    r = asyncio.run(check())
    assert r.stdout == "/srv\nfast-sed\n1,2\nnote\nfast\n"


@needs_sandbox
@pytest.mark.parametrize(
    "dockerfile, message",
    [
        (
            "FROM x\nHEALTHCHECK CMD true\n",
            "task 't1': Dockerfile line 2: HEALTHCHECK is not supported",
        ),
        ("FROM x\nRUN exit 3\n", "task 't1': Dockerfile line 2: `exit 3` failed \\(exit 3\\)"),
        (
            "FROM x\nCOPY ../../etc/passwd /x\n",
            "COPY source '../../etc/passwd' is not inside environment/",
        ),
    ],
)
def test_unsupported_or_failing_environments_give_a_per_task_error(tmp_path, dockerfile, message):
    d = make_task(tmp_path, dockerfile=dockerfile)
    with pytest.raises(HarborTaskError, match=message):
        asyncio.run(prepare_sandbox(load_harbor_task(d)))
    assert not list((tmp_path.parent).glob("tinker_sandboxes/*/rootfs/etc/marker"))


@needs_sandbox
def test_bash_tool_caps_output_and_stops_hangs(tmp_path):
    async def run():
        sb = await prepare_sandbox(load_harbor_task(make_task(tmp_path)))
        tool = HarborBashTool(sb, timeout=1.0, max_output_chars=200).bash
        try:
            flood = await tool({"command": "seq 1 100000"})
            hang = await tool({"command": "sleep 30"})
            ok = await tool({"command": "echo hi; echo oops >&2; exit 4"})
        finally:
            await sb.cleanup()
        return flood, hang, ok

    flood, hang, ok = asyncio.run(run())
    assert (
        len(flood.messages[0]["content"]) < 400 and "characters cut" in flood.messages[0]["content"]
    )
    assert "timed out after 1s" in hang.messages[0]["content"]
    assert ok.messages[0]["content"] == "hi\n\n[stderr]\noops\n\n[exit code 4]"


@needs_sandbox
def test_reward_json_and_broken_verifiers(tmp_path):
    json_task = load_harbor_task(
        make_task(tmp_path, "j", test="echo '{\"reward\": 0.25}' > /logs/verifier/reward.json")
    )
    silent = load_harbor_task(make_task(tmp_path, "s", test="echo no reward written"))
    broken = make_task(tmp_path, "b")
    shutil.rmtree(broken / "tests")
    (broken / "tests").write_text("not a folder")

    async def grade(task):
        sb = await prepare_sandbox(task)
        try:
            return await HarborReward(task, sb)([])
        finally:
            await sb.cleanup()

    assert asyncio.run(grade(json_task)) == (
        0.25,
        {"grading_error": 0.0, "verifier_timed_out": 0.0},
    )
    assert asyncio.run(grade(silent)) == (0.0, {"grading_error": 1.0})
    broken_task = load_harbor_task(make_task(tmp_path, "ok"))
    broken_task.path = broken
    assert asyncio.run(grade(broken_task)) == (0.0, {"grading_error": 1.0})
    assert json.loads('{"reward": 0.25}')["reward"] == 0.25


@needs_sandbox
def test_dockerfile_variables_modes_and_comments(tmp_path):
    dockerfile = (
        "FROM x\nENV TOOLS=/opt/tools\nENV PATH=$TOOLS/bin:$PATH\nWORKDIR ${TOOLS}\n"
        "COPY run.sh /opt/tools/bin/\nRUN echo one \\\n  # a comment inside the continuation\n  && run.sh\n"
    )
    d = make_task(tmp_path, dockerfile=dockerfile)
    (d / "environment" / "run.sh").write_text("#!/bin/bash\necho ran > /tmp/ran\n")
    (d / "environment" / "run.sh").chmod(0o755)

    async def check():
        sb = await prepare_sandbox(load_harbor_task(d))
        try:
            return await sb.run_command("pwd; cat /tmp/ran; echo $PATH")
        finally:
            await sb.cleanup()

    r = asyncio.run(check())
    assert r.stdout.splitlines()[:2] == ["/opt/tools", "ran"]
    assert r.stdout.splitlines()[2].startswith("/opt/tools/bin:/usr/local/sbin")


@needs_sandbox
def test_the_agent_cannot_plant_or_break_the_reward(tmp_path):
    task = load_harbor_task(make_task(tmp_path, "t", test="echo 0 > /logs/verifier/reward.txt"))
    nan_task = load_harbor_task(
        make_task(tmp_path, "n", test="echo nan > /logs/verifier/reward.txt")
    )

    async def grade(task, agent_command):
        sb = await prepare_sandbox(task)
        try:
            await sb.run_command(agent_command)
            return await HarborReward(task, sb)([])
        finally:
            await sb.cleanup()

    plant = "mkdir -p /logs/verifier && echo '{\"reward\": 1}' > /logs/verifier/reward.json; rm -f /bin; mkdir /bin"
    assert asyncio.run(grade(task, plant))[0] == 0.0
    assert asyncio.run(grade(nan_task, "true")) == (0.0, {"grading_error": 1.0})
