"""Loading Harbor tasks with Harbor's model, the local environment, the bash tool and the
grading by Harbor's verifier (run here in the engine-free local sandbox)."""

import asyncio

import pytest

from tinker_cookbook.recipes.harbor_rl import harbor_tasks
from tinker_cookbook.recipes.harbor_rl.environments import start_environment
from tinker_cookbook.recipes.harbor_rl.harbor_tasks import (
    BUNDLED_TASKS_DIR,
    HarborTaskError,
    find_harbor_tasks,
    load_harbor_task,
    load_tasks,
    resolve_tasks_dir,
)
from tinker_cookbook.recipes.harbor_rl.harbor_tools import HarborBashTool, HarborReward
from tinker_cookbook.sandbox import available_backends
from tinker_cookbook.sandbox.local_environment import BASE_IMAGE
from tinker_cookbook.tool_use import ToolInput

needs_sandbox = pytest.mark.skipif(not available_backends(), reason="no sandbox backend")


def make_task(root, name="t1", dockerfile=f"FROM {BASE_IMAGE}\nWORKDIR /app\n",
              test="echo 1 > /logs/verifier/reward.txt", toml=""):  # fmt: skip
    d = root / name
    (d / "environment").mkdir(parents=True)
    (d / "tests").mkdir()
    (d / "task.toml").write_text(f'version = "1.0"\n[verifier]\ntimeout_sec = 10.0\n{toml}')
    (d / "instruction.md").write_text("Do the thing.\n")
    (d / "environment" / "Dockerfile").write_text(dockerfile)
    (d / "tests" / "test.sh").write_text(f"#!/bin/bash\n{test}\n")
    return d


def in_local(task_dir, agent_command=None, grade=True):
    """Start the task locally, run a command as the agent, grade with HarborReward."""

    async def run():
        env = await start_environment(load_harbor_task(task_dir), "local")
        errors = []
        try:
            out = await env.sandbox.run_command(agent_command) if agent_command else None
            reward = await HarborReward(env, on_error=errors.append)([]) if grade else None
            return out, reward, errors
        finally:
            await env.stop()

    return asyncio.run(run())


def test_flat_and_nested_layouts_are_found(tmp_path):
    make_task(tmp_path / "flat", "a")
    make_task(tmp_path / "nested" / "terminal-bench@2.0" / "abc123", "b")
    assert [p.name for p in find_harbor_tasks(tmp_path)] == ["a", "b"]
    assert len(find_harbor_tasks(BUNDLED_TASKS_DIR)) >= 15


def test_bad_tasks_are_skipped_one_line_each_unless_strict(tmp_path, capsys):
    make_task(tmp_path, "good")
    (make_task(tmp_path, "no-tests") / "tests" / "test.sh").unlink()
    (make_task(tmp_path, "bad-toml") / "task.toml").write_text("version = \n")
    make_task(tmp_path, "bad-field", toml="[environment]\ncpus = 'many'\n")
    loaded = load_tasks(tmp_path)
    assert [t.name for t in loaded.tasks] == ["good"]
    assert sorted(name for name, _ in loaded.skipped) == ["bad-field", "bad-toml", "no-tests"]
    out = capsys.readouterr().out
    assert "skipped task no-tests: task 'no-tests'" in out and "test.sh" in out
    assert "3 of 4 tasks" in out and "strict=True" in out
    with pytest.raises(HarborTaskError, match="bad-field"):
        load_tasks(tmp_path, strict=True)


def test_multi_step_and_separate_verifier_tasks_are_refused_by_name(tmp_path):
    steps = make_task(tmp_path, "steps", toml='[[steps]]\nname = "one"\n')
    (steps / "steps" / "one" / "tests").mkdir(parents=True)
    (steps / "steps" / "one" / "instruction.md").write_text("Step one.\n")
    (steps / "steps" / "one" / "tests" / "test.sh").write_text("#!/bin/bash\ntrue\n")
    make_task(tmp_path, "separate", toml='environment_mode = "separate"\n')
    with pytest.raises(HarborTaskError, match="no usable Harbor tasks .*2 skipped"):
        load_tasks(tmp_path, quiet=True)
    make_task(tmp_path, "zz-ok")
    reasons = dict(load_tasks(tmp_path, quiet=True).skipped)
    assert "task 'steps' has 1 [[steps]]: multi-step" in reasons["steps"]
    assert "separate verifier environment" in reasons["separate"]


def test_datasets_are_found_where_harbor_downloads_them(tmp_path, monkeypatch):
    monkeypatch.setattr(harbor_tasks, "DATASET_CACHE_DIR", tmp_path / "datasets")
    monkeypatch.setattr(harbor_tasks, "TASK_CACHE_DIR", tmp_path / "tasks")
    with pytest.raises(HarborTaskError, match="uvx harbor datasets download terminal-bench@2.0"):
        resolve_tasks_dir(None, "terminal-bench@2.0")
    downloaded = tmp_path / "datasets" / "terminal-bench" / "2.0"
    downloaded.mkdir(parents=True)
    assert resolve_tasks_dir(None, "terminal-bench@2.0") == downloaded
    assert resolve_tasks_dir(None, None) == BUNDLED_TASKS_DIR


@needs_sandbox
def test_dockerfile_variables_workdir_and_env_in_the_local_sandbox(tmp_path):
    dockerfile = (
        f"FROM {BASE_IMAGE}\nENV TOOLS=/opt/tools\nENV PATH=$TOOLS/bin:$PATH\nWORKDIR ${{TOOLS}}\n"
        "COPY run.sh /opt/tools/bin/\nRUN echo one \\\n  # a comment inside the continuation\n  && run.sh\n"
    )
    d = make_task(tmp_path, dockerfile=dockerfile)
    (d / "environment" / "run.sh").write_text("#!/bin/bash\necho ran > /tmp/ran\n")
    (d / "environment" / "run.sh").chmod(0o755)
    out, _, _ = in_local(d, "pwd; cat /tmp/ran; echo $PATH; ls -d /logs/verifier", grade=False)
    lines = out.stdout.splitlines()
    assert lines[:2] == ["/opt/tools", "ran"]
    assert lines[2].startswith("/opt/tools/bin:/usr/local/sbin")
    assert lines[3] == "/logs/verifier"  # present during the agent phase, as in Harbor
    workdir = make_task(tmp_path, "w", toml='[environment]\nworkdir = "/tmp"\n')
    assert in_local(workdir, "pwd", grade=False)[0].stdout.strip() == "/tmp"


@needs_sandbox
@pytest.mark.parametrize(
    "dockerfile, message",
    [
        ("FROM ubuntu:24.04\n", "provides only " + BASE_IMAGE),
        (
            f"FROM {BASE_IMAGE}\nRUN apt-get update && apt-get install -y jq\n",
            "line 2 (RUN apt-get",
        ),
        (f"FROM {BASE_IMAGE}\nRUN pip install requests\n", "installs software"),
        (f"FROM {BASE_IMAGE}\nCOPY --from=builder /x /x\n", "COPY --from"),
        (f"FROM {BASE_IMAGE}\nUSER nobody\n", "USER is not reproduced"),
        (f"FROM {BASE_IMAGE}\nRUN exit 3\n", "line 2: `exit 3` failed (exit 3)"),
    ],
)
def test_the_local_sandbox_refuses_what_it_cannot_reproduce(tmp_path, dockerfile, message):
    with pytest.raises(HarborTaskError, match="task 't1'") as info:
        in_local(make_task(tmp_path, dockerfile=dockerfile), grade=False)
    assert message in str(info.value)


@needs_sandbox
def test_local_refuses_non_root_users_and_compose(tmp_path):
    user = make_task(tmp_path, "u", toml='[agent]\nuser = "agent"\n')
    with pytest.raises(HarborTaskError, match=r"\[agent\] user = 'agent'"):
        in_local(user, grade=False)
    compose = make_task(tmp_path, "c")
    (compose / "environment" / "docker-compose.yaml").write_text("services: {}\n")
    with pytest.raises(HarborTaskError, match="docker-compose services need a container engine"):
        in_local(compose, grade=False)


@needs_sandbox
def test_bash_tool_caps_output_and_stops_hangs(tmp_path):
    async def run():
        env = await start_environment(load_harbor_task(make_task(tmp_path)), "local")
        bash = HarborBashTool(env.sandbox, command_timeout=1.0, max_output_chars=200).bash

        async def tool(arguments):
            return await bash.run(ToolInput(arguments=arguments, call_id="c1"))

        try:
            flood = await tool({"command": "seq 1 100000"})
            hang = await tool({"command": "sleep 30"})
            ok = await tool({"command": "echo hi; echo oops >&2; exit 4"})
            late = HarborBashTool(env.sandbox, deadline=0.0).bash
            over = await late.run(ToolInput(arguments={"command": "true"}))
            assert "time for this task is over" in over.messages[0]["content"]
            assert over.should_stop and over.metadata == {"error": "agent_timeout"}
        finally:
            await env.stop()
        return flood, hang, ok

    results = asyncio.run(run())
    assert (
        results[2].messages[0]["tool_call_id"] == "c1" and results[2].messages[0]["name"] == "bash"
    )
    assert results[2].metadata == {"exit_code": 4}
    flood, hang, ok = (r.messages[0]["content"] for r in results)
    assert len(flood) < 400 and "characters cut" in flood
    assert "timed out after 1s" in hang
    assert ok == "hi\n\n[stderr]\noops\n\n[exit code 4]"


@needs_sandbox
def test_rewards_are_read_as_harbor_reads_them(tmp_path, monkeypatch):
    many = make_task(tmp_path, "j", test='echo \'{"a": 1, "b": 0.5}\' > /logs/verifier/reward.json')
    assert in_local(many)[1] == (0.75, {"grading_error": 0.0, "reward/a": 1.0, "reward/b": 0.5})
    keyed = make_task(
        tmp_path, "k", test='echo \'{"reward": 0.25, "x": 1}\' > /logs/verifier/reward.json'
    )
    assert in_local(keyed)[1] == (0.25, {"grading_error": 0.0, "reward/x": 1.0})
    templated = make_task(
        tmp_path, "v", test='echo "$WANT" > /logs/verifier/reward.txt',
        toml='[verifier.env]\nWANT = "${TINKER_TEST_WANT:-0.5}"\n',
    )  # fmt: skip
    assert in_local(templated)[1][0] == 0.5
    monkeypatch.setenv("TINKER_TEST_WANT", "0.75")
    assert in_local(templated)[1][0] == 0.75


@needs_sandbox
@pytest.mark.parametrize(
    "test, error",
    [
        ("echo no reward written", "RewardFileNotFoundError"),
        ("echo nan > /logs/verifier/reward.txt", "VerifierOutputParseError"),
        ('echo \'{"reward": "high"}\' > /logs/verifier/reward.json', "Non-numeric"),
        ("sleep 30", "timed out after 2s"),
    ],
)
def test_a_grader_without_a_reward_is_a_grading_error(tmp_path, test, error):
    task = make_task(tmp_path, test=test)
    (task / "task.toml").write_text('version = "1.0"\n[verifier]\ntimeout_sec = 2.0\n')
    _, reward, errors = in_local(task)
    assert reward == (0.0, {"grading_error": 1.0})
    assert len(errors) == 1 and "task 't1'" in errors[0] and error in errors[0]


@needs_sandbox
def test_the_agent_cannot_plant_the_reward(tmp_path):
    task = make_task(tmp_path, test="echo 0 > /logs/verifier/reward.txt")
    plant = (
        "echo '{\"reward\": 1}' > /logs/verifier/reward.json; echo 1 > /logs/verifier/reward.txt"
    )
    assert in_local(task, plant)[1][0] == 0.0
