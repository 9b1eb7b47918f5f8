"""Isolation and limits of the local sandbox, on every backend this machine has."""

import asyncio
import os
import shlex
import socket
import threading
import time

import pytest

from tinker_cookbook.sandbox import LocalSandbox, LocalSandboxConfig, available_backends

BACKENDS = available_backends()
pytestmark = pytest.mark.skipif(
    not BACKENDS, reason="no sandbox backend (bubblewrap or root unshare)"
)


@pytest.fixture(params=BACKENDS)
def make(request, tmp_path):
    made = []

    def factory(**kw):
        sb = LocalSandbox(
            LocalSandboxConfig(backend=request.param, root_dir=str(tmp_path / "sandboxes"), **kw)
        )
        made.append(sb)
        return sb

    yield factory
    for sb in made:
        asyncio.run(sb.cleanup())


def run(coro):
    return asyncio.run(coro)


def test_cannot_write_outside_its_own_filesystem(make, tmp_path):
    sb = make()
    target = tmp_path / "escape.txt"
    r = run(
        sb.run_command(
            f"echo owned > {target}; echo x > /usr/owned; mkdir -p /app && echo mine > /app/f && cat /app/f"
        )
    )
    assert "mine" in r.stdout
    assert "Read-only file system" in r.stderr
    assert not target.exists() and not os.path.exists("/usr/owned")
    assert (sb.rootfs / "app" / "f").read_text() == "mine\n"  # writes land in its own folder


def test_cannot_read_host_files_or_environment(make, tmp_path, monkeypatch):
    canary = tmp_path / "canary.txt"
    canary.write_text("CANARY-FILE-7731")
    monkeypatch.setenv("TINKER_CANARY", "CANARY-ENV-7731")
    sb = make()
    r = run(sb.run_command(f"cat {canary}; cat /etc/shadow; ls /root /work /home 2>&1; env"))
    assert "CANARY" not in r.stdout + r.stderr
    assert "TINKER_CANARY" not in r.stdout
    assert r.stdout.count("PATH=") == 1


def test_cannot_reach_the_network(make):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    threading.Thread(target=lambda: [server.accept() for _ in range(2)], daemon=True).start()
    socket.create_connection(("127.0.0.1", port), timeout=3).close()  # reachable from the host
    sb = make()
    code = (
        "import socket\n"
        "print('STARTED')\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=3)\n"
        "    print('CONNECTED')\n"
        "except OSError as exc:\n"
        "    print('BLOCKED', type(exc).__name__)\n"
    )
    r = run(sb.run_command(f"python3 -c {shlex.quote(code)}"))
    server.close()
    # The script ran and its connection attempt itself failed (not, say, python3 missing).
    assert "STARTED" in r.stdout and "BLOCKED" in r.stdout, r.stdout + r.stderr
    assert "CONNECTED" not in r.stdout


def test_hang_is_stopped_at_the_timeout(make):
    sb = make()
    start = time.monotonic()
    r = run(sb.run_command("sleep 100", timeout=1.0))
    assert r.timed_out and not r.ok and time.monotonic() - start < 5


def test_infinite_output_is_capped(make):
    sb = make()
    r = run(sb.run_command("yes flood", timeout=20, max_output_bytes=50_000))
    assert r.output_truncated and not r.timed_out
    assert len(r.stdout.encode()) <= 50_000


@pytest.mark.skipif(
    not os.access("/sys/fs/cgroup/pids", os.W_OK), reason="needs cgroup v1 pids/memory controllers"
)
def test_fork_bomb_and_memory_hog_are_contained_and_reported(make):
    sb = make(max_processes=64, memory_mb=100)
    r = run(sb.run_command(":(){ :|:& };:; sleep 2", timeout=10))
    assert "process limit of 64 reached" in r.stderr and not r.timed_out
    assert sb.limits.pids() == []  # nothing of it survives the command
    r = run(sb.run_command("python3 -c 'x = bytearray(300 * 2**20); print(len(x))'", timeout=20))
    assert r.exit_code != 0 and "memory limit of 100 MB reached" in r.stderr
    assert run(sb.run_command("echo still-alive")).stdout == "still-alive\n"


def test_two_sandboxes_do_not_see_each_other(make):
    a, b = make(), make()

    async def both():
        slow = asyncio.create_task(
            a.run_command("mkdir -p /app && echo secret-a > /app/a && sleep 2")
        )
        await asyncio.sleep(0.5)
        seen = await b.run_command(
            "cat /app/a; ls /proc | grep -c '^[0-9]'; ps -eo args 2>/dev/null | grep -c 'sleep 2'"
        )
        await slow
        return seen

    r = run(both())
    assert "secret-a" not in r.stdout
    assert "No such file" in r.stderr


def test_cleanup_leaves_no_process_or_file(make):
    sb = make()
    r = run(
        sb.run_command(
            "mkdir -p /app && head -c 100000 /dev/zero > /app/blob && (sleep 1000 &) ; echo started"
        )
    )
    assert r.stdout == "started\n"  # the background sleep dies with its command's namespace
    run(sb.cleanup())
    assert not sb.host_dir.exists()
    if sb.limits is not None:
        assert sb.limits.pids() == []
    with pytest.raises(Exception, match="cleaned up"):
        run(sb.run_command("true"))


def test_files_round_trip(make, tmp_path):
    sb = make()
    run(sb.write_file("/app/dir/note.txt", "héllo\n"))
    assert run(sb.read_file("/app/dir/note.txt")) == "héllo\n"
    (tmp_path / "up").mkdir()
    (tmp_path / "up" / "x.sh").write_text("echo uploaded")
    run(sb.upload_dir(tmp_path / "up", "/tests"))
    assert run(sb.run_command("bash /tests/x.sh")).stdout == "uploaded\n"
    with pytest.raises(FileNotFoundError, match="/nope"):
        run(sb.read_file("/nope"))


def test_chroot_escape_and_argument_injection_are_contained(make, tmp_path):
    sb = make()
    marker = tmp_path / "ESCAPED"
    escape = (
        "import os; os.makedirs('/esc', exist_ok=True); os.chroot('/esc'); os.chdir('../' * 30); "
        f"os.chroot('.'); open('{marker}', 'w').write('x')"
    )
    run(sb.run_command(f'python3 -c "{escape}"'))
    assert not marker.exists()
    injected = tmp_path / "INJECTED"
    r = run(sb.run_command('echo "$X"; pwd', env={"X": f"a'b$(touch {injected})\"q"}))
    assert r.stdout.startswith("a'b$(touch") and not injected.exists()
    with pytest.raises(Exception, match="not a valid shell name"):
        run(sb.run_command("true", env={f"X$(touch {injected})": "1"}))


def test_concurrent_commands_in_one_sandbox_both_finish(make):
    sb = make()

    async def both():
        return await asyncio.gather(
            sb.run_command("sleep 0.3; echo A"), sb.run_command("sleep 0.6; echo B")
        )

    a, b = run(both())
    assert (a.stdout, b.stdout, a.exit_code, b.exit_code) == ("A\n", "B\n", 0, 0)
