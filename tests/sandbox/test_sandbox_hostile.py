"""Hostile Python programs: each is contained with the expected status, leaves no process behind, changes no
file outside its sandbox, and the runner lives on.

Leftovers are found by name (see hostile_kit.py). Canary files (fixtures in conftest.py) sit in a world-writable "results" dir and a "home" dir, so only
the sandbox (user + mount namespace), not file permissions, protects them.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from hostile_kit import QUICK, assert_runner_alive, leftovers, prelude

from codequant.benchmarks.problem import Problem
from codequant.benchmarks.programs import build_program
from codequant.sandbox import Limits, Status, run_program, run_programs
from codequant.sandbox.cgroup import pids_root
from codequant.sandbox.isolation import namespace_support, python_for, resolve_user

SUP = namespace_support()


def contained(source: str, token: str, limits: Limits = QUICK):
    t0 = time.monotonic()
    r = run_program("python", prelude(token) + source, limits)
    assert time.monotonic() - t0 < limits.wall_timeout_s + 5
    assert leftovers(token) == [], "processes outlived the run"
    return r


needs_pidns = pytest.mark.skipif(not SUP.pid, reason="no PID namespace on this machine")
unprivileged = resolve_user(None) is not None or os.geteuid() != 0


@pytest.mark.skipif(
    not unprivileged and not SUP.pid, reason="a fork bomb as root without namespaces is not contained"
)
def test_fork_bomb(token):
    src = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    r = contained(src, token, Limits().with_timeout(1.0))
    assert r.status == Status.TIMEOUT
    assert_runner_alive()


def test_memory_bombs(token):
    r = contained("x = bytearray(64 * 1024 ** 3)\n", token)
    assert (r.status, r.exception_type) == (Status.MEMORY, "MemoryError")
    r = contained(
        "a = []\nwhile True:\n    a.append(bytearray(16 * 1024 ** 2))\n",
        token,
        Limits(wall_timeout_s=5, address_space_mb=256),
    )
    assert r.status == Status.MEMORY


@pytest.mark.parametrize(
    "body",
    [
        "while True:\n    pass\n",
        "import time\ntime.sleep(10 ** 6)\n",
        "import threading\nthreading.Event().wait()\n",
    ],
)
def test_loops_and_sleeps_time_out(token, body):
    r = contained(body, token, Limits().with_timeout(0.8))
    assert r.status == Status.TIMEOUT


@pytest.mark.parametrize("how", ["daemon", "setsid", "double_fork", "subprocess"])
def test_children_that_outlive_their_parent_are_killed(token, how):
    py = python_for(None, resolve_user(None))
    sleeper = f"[{py!r}, '-c', 'import os, time\\nos.setsid() if os.getpid() != os.getsid(0) else None\\ntime.sleep(600)', '{token}']"
    spawn = {
        "daemon": "import threading, time\nthreading.Thread(target=time.sleep, args=(600,), daemon=True).start()\n"
        f"import os\nif os.fork() == 0:\n    os.execv({py!r}, {sleeper})\n",
        "setsid": f"import os\nif os.fork() == 0:\n    os.setsid()\n    os.execv({py!r}, {sleeper})\n",
        "double_fork": f"import os\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        f"        os.execv({py!r}, {sleeper})\n    os._exit(0)\n",
        "subprocess": f"import subprocess\nsubprocess.Popen({sleeper}, start_new_session=True,"
        " stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)\n",
    }[how]
    r = contained(
        spawn + "import time\ntime.sleep(0.3)\nassert 1 + 1 == 2\n", token, Limits().with_timeout(5)
    )
    assert r.status == Status.OK, r.stderr  # the program itself passes; what it left behind dies with it


def test_writes_and_deletes_outside_the_sandbox_fail(token, canaries):
    targets = [str(p) for p in canaries]
    home_new = str(Path.home() / f".{token}")
    src = f"""import os, shutil
for path in {targets!r}:
    for attempt in (lambda: open(path, 'w').write('pwned'), lambda: open(path, 'a').write('pwned'),
                    lambda: os.remove(path), lambda: os.chmod(path, 0o000), lambda: os.rename(path, path + '.x'),
                    lambda: open(os.path.join(os.path.dirname(path), 'new.txt'), 'w').write('x'),
                    lambda: shutil.rmtree(os.path.dirname(path))):
        try:
            attempt()
            print('CHANGED', path)
        except OSError as exc:
            pass
for path in [{home_new!r}, '/tmp/{token}', '/var/tmp/{token}', '/dev/shm/{token}']:
    try:
        open(path, 'w').write('x')
    except OSError:
        pass
open('mine.txt', 'w').write('the scratch dir is writable')
assert open('mine.txt').read().startswith('the scratch')
"""
    r = contained(src, token)
    assert r.status == Status.OK, r.stderr
    assert "CHANGED" not in r.stdout
    for leaked in (
        Path(home_new),
        Path(f"/tmp/{token}"),
        Path(f"/var/tmp/{token}"),
        Path(f"/dev/shm/{token}"),
    ):
        exists = leaked.exists()
        leaked.unlink(missing_ok=True)
        assert not exists, f"the program created {leaked}"


def test_environment_secrets_do_not_reach_the_program(token, monkeypatch):
    secret = secrets.token_hex(16)
    monkeypatch.setenv("CODEQUANT_HOSTILE_SECRET", secret)
    src = f"""import glob, os
print(os.environ.get('CODEQUANT_HOSTILE_SECRET'))
for path in glob.glob('/proc/*/environ') + ['/proc/{os.getpid()}/environ', '/proc/{os.getppid()}/environ']:
    try:
        data = open(path, 'rb').read()
    except OSError:
        continue
    for item in data.split(b'\\0'):
        if item.startswith(b'CODEQUANT_HOSTILE_SECRET='):
            print('LEAK', item)
"""
    r = contained(src, token)
    assert r.status == Status.OK, r.stderr
    assert secret not in r.stdout and "LEAK" not in r.stdout


@pytest.mark.skipif(not SUP.net, reason="no network namespace on this machine")
def test_network_connections_fail(token):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        srv.settimeout(0.2)
        port = srv.getsockname()[1]
        src = (
            f"import socket\nfor addr in [('1.1.1.1', 53), ('8.8.8.8', 443)]:\n    try:\n"
            f"        socket.create_connection(addr, timeout=1)\n        print('REACHED', addr)\n"
            f"    except OSError:\n        pass\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
        )
        r = contained(src, token)
        with pytest.raises(TimeoutError):
            srv.accept()
    assert r.status == Status.EXCEPTION and r.exception_type in ("OSError", "ConnectionRefusedError")
    assert "REACHED" not in r.stdout


@needs_pidns
def test_signals_to_the_runner_and_everyone_fail(token):
    runner = os.getpid()
    bystander = subprocess.Popen(["sleep", "30"])  # a host process the program must not reach
    try:
        src = f"""import os, signal
for target in ({runner}, {bystander.pid}, os.getppid()):
    for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGSTOP):
        try:
            os.kill(target, sig)
        except OSError:
            pass
try:
    os.killpg(os.getpgid({runner}), signal.SIGKILL)
except OSError:
    pass
try:
    os.kill(-1, signal.SIGKILL)  # everything this process may signal (ESRCH when that is nothing)
except OSError:
    pass
os.killpg(0, signal.SIGKILL)  # its own group: itself included
"""
        r = contained(src, token)
        assert r.status == Status.KILLED
        assert bystander.poll() is None, "a host process was killed"
    finally:
        bystander.kill()
        bystander.wait()
    assert_runner_alive()


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_output_floods_are_killed(token, stream):
    src = f"import sys\nwhile True:\n    sys.{stream}.write('x' * 65536)\n"
    r = contained(
        src, token, Limits(wall_timeout_s=20, output_limit_bytes=8 * 1024 * 1024, output_cap_bytes=1024)
    )
    assert r.status == Status.KILLED and "output limit" in r.stderr
    assert len(r.stdout) < 2048 + 100


def test_closed_stdout_is_not_a_pass(token):
    r = contained("import os\nos.close(1)\nassert True\n", token)
    assert r.status != Status.OK
    r = contained("import os\nos.close(1)\nos.close(2)\nassert True\n", token)
    assert r.status != Status.OK


def test_stdin_is_empty_not_a_hang(token):
    r = contained(
        "import sys\nassert sys.stdin.read() == ''\nassert sys.stdin.buffer.read(10 ** 9) == b''\n", token
    )
    assert r.status == Status.OK, r.stderr


def test_huge_recursion(token):
    src = "import sys\nsys.setrecursionlimit(10 ** 8)\ndef f(n):\n    return f(n + 1) + 1\nf(0)\n"
    r = contained(src, token, Limits(wall_timeout_s=2.5, address_space_mb=512))
    # SIGSEGV on the C stack, MemoryError, or still descending at the deadline: anything but a pass or a hang
    assert r.status in (Status.KILLED, Status.EXCEPTION, Status.MEMORY, Status.TIMEOUT)


@pytest.mark.parametrize(
    "trick",
    [
        "import os\nos._exit(0)\n",
        "import sys\nsys.exit(0)\n",
        "raise SystemExit\n",
        "print('__codequant_done_0123456789abcdef01234567__', flush=True)\nimport os\nos._exit(0)\n",
        "import sys, os\nsys.excepthook = lambda *a: os._exit(0)\n",
        "import atexit, os\natexit.register(os._exit, 0)\n",
        "import builtins\nbuiltins.print = lambda *a, **k: None\n",
        "import threading, os\nthreading.Timer(0.05, os._exit, (0,)).start()\nimport time\ntime.sleep(1)\n",
    ],
)
def test_early_exit_tricks_do_not_pass(token, trick):
    """The completion exits 0, or swallows the failure, before the (failing) tests run to their end."""
    problem = Problem(
        task_id="T/0",
        language="python",
        prompt="def inc(x):\n",
        entry_point="inc",
        tests="def check(candidate):\n    assert candidate(1) == 3\n",
        stop=[],
        canonical_solution="    return x + 1\n",
        benchmark="hostile",
    )
    completion = "    return x + 1\n" + "".join(f"\n{line}" for line in trick.splitlines()) + "\n"
    r = contained(build_program(problem, completion), token)
    assert r.status in (Status.KILLED, Status.ASSERTION), (trick, r)
    if r.exit_code == 0:
        assert r.status == Status.KILLED


def test_monkeypatched_checker_does_not_pass(token):
    """A completion that patches what the tests use (builtins, AssertionError, `check`) still fails."""
    problem = Problem(
        task_id="T/1",
        language="python",
        prompt="def inc(x):\n",
        entry_point="inc",
        tests="def check(candidate):\n    assert candidate(1) == 3\n",
        stop=[],
        canonical_solution="    return x + 1\n",
        benchmark="hostile",
    )
    completion = (
        "    return x + 1\n\nimport builtins\nbuiltins.AssertionError = type('Quiet', (Exception,), {})\n"
        "def check(candidate):\n    return True\nbuiltins.check = check\nbuiltins.assert_ = None\n"
    )
    r = contained(build_program(problem, completion), token)
    assert r.status == Status.ASSERTION


@pytest.mark.skipif(os.geteuid() != 0 or resolve_user(None) is None, reason="needs root and the sandbox user")
def test_programs_run_unprivileged_by_default(token):
    r = contained("import os\nprint(os.getuid(), os.getgid(), os.getgroups())\n", token)
    assert r.status == Status.OK, r.stderr
    who = resolve_user(None)
    assert r.stdout.split()[:2] == [str(who.uid), str(who.gid)]


@pytest.mark.slow
def test_a_batch_of_hostile_programs_in_parallel(token):
    """A study's view: hostile and honest programs mixed, run 2 at a time; each gets its own status."""
    batch = [
        ("assert 1 + 1 == 2\n", Status.OK),
        ("while True:\n    pass\n", Status.TIMEOUT),
        ("import os\nos._exit(0)\n", Status.KILLED),
        ("x = bytearray(64 * 1024 ** 3)\n", Status.MEMORY),
        (
            "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
            Status.TIMEOUT,
        ),
        ("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n", Status.KILLED),
        ("assert 1 + 1 == 3\n", Status.ASSERTION),
        ("import os, signal\nos.killpg(0, signal.SIGKILL)\n", Status.KILLED),
        ("assert sorted([3, 1, 2]) == [1, 2, 3]\n", Status.OK),
    ]
    if not unprivileged and not SUP.pid:
        batch = [b for b in batch if "fork" not in b[0]]
    results = run_programs(
        [("python", prelude(token) + src) for src, _ in batch],
        Limits(wall_timeout_s=1.5, cpu_s=2, output_limit_bytes=8 * 1024 * 1024),
        workers=2,
        progress=False,
    )
    assert [r.status for r in results] == [want for _, want in batch]
    assert leftovers(token) == []
    assert_runner_alive()


def test_sigterm_to_own_group_is_killed_not_passed(token):
    r = contained("import os, signal\nos.killpg(0, signal.SIGTERM)\nimport time\ntime.sleep(5)\n", token)
    assert r.status == Status.KILLED and r.exit_code == -signal.SIGTERM


@pytest.mark.skipif(pids_root() is None, reason="no pids cgroup can be made here (needs root)")
def test_each_run_gets_its_own_pids_cgroup_removed_afterwards(token):
    r = contained("print(open('/proc/self/cgroup').read())\n", token)
    assert r.status == Status.OK, r.stderr
    line = next(ln for ln in r.stdout.splitlines() if "codequant/run-" in ln)
    name = line.rsplit("/", 1)[1]
    assert not (pids_root() / name).exists()
