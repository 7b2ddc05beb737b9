"""The Python sandbox on real subprocesses: one test per way a program can end, plus the isolation claims."""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import pytest

from codequant.sandbox import Limits, Status
from codequant.sandbox.isolation import namespace_support
from codequant.sandbox.python import exception_type, run_python

FAST = Limits(wall_timeout_s=5)


def test_ok_and_marker_stripped():
    r = run_python("def add(a, b):\n    return a + b\n\nprint(add(2, 3))\nassert add(1, 1) == 2", FAST)
    assert r.status == Status.OK and r.passed
    assert r.exit_code == 0
    assert r.stdout == "5\n"  # the end marker is not reported
    assert r.exception_type is None


def test_assertion():
    r = run_python("def check(f):\n    assert f(1) == 3\n\ncheck(lambda x: x + 1)\n", FAST)
    assert r.status == Status.ASSERTION
    assert r.exception_type == "AssertionError"
    assert "assert f(1) == 3" in r.stderr


def test_exception_records_type():
    r = run_python("len(5)\n", FAST)
    assert (r.status, r.exception_type) == (Status.EXCEPTION, "TypeError")
    r = run_python("def f():\n    return f()\nf()\n", FAST)
    assert (r.status, r.exception_type) == (Status.EXCEPTION, "RecursionError")


def test_chained_exception_reports_the_last_one():
    src = "try:\n    {}['k']\nexcept KeyError:\n    raise ValueError('bad')\n"
    r = run_python(src, FAST)
    assert (r.status, r.exception_type) == (Status.EXCEPTION, "ValueError")


@pytest.mark.parametrize(
    "src, kind",
    [
        ("def f(:\n    pass\n", "SyntaxError"),
        ("def f():\nreturn 1\n", "IndentationError"),
        ("return 5\n", "SyntaxError"),
    ],
)
def test_syntax_error_found_before_running(src, kind):
    r = run_python(src, FAST)
    assert r.status == Status.SYNTAX_ERROR
    assert r.exception_type == kind
    assert r.exit_code is None  # never started
    assert kind in r.stderr


def test_runtime_syntax_error_is_an_exception():
    r = run_python("exec('def (')\n", FAST)
    assert (r.status, r.exception_type) == (Status.EXCEPTION, "SyntaxError")


def test_memory_bomb():
    r = run_python("x = bytearray(8 * 1024 ** 3)\n", Limits(wall_timeout_s=5, address_space_mb=512))
    assert (r.status, r.exception_type) == (Status.MEMORY, "MemoryError")


@pytest.mark.parametrize(
    "exit_call", ["import os; os._exit(0)", "import sys; sys.exit(0)", "raise SystemExit"]
)
def test_exit_zero_before_the_tests_is_killed(exit_call):
    r = run_python(f"{exit_call}\nassert False, 'tests never ran'\n", FAST)
    assert r.status == Status.KILLED
    assert r.exit_code == 0


def test_signal_death_is_killed():
    r = run_python("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n", FAST)
    assert (r.status, r.exit_code) == (Status.KILLED, -9)


def test_nonzero_exit_without_traceback():
    r = run_python("import sys\nsys.exit(3)\n", FAST)
    assert (r.status, r.exit_code, r.exception_type) == (Status.EXCEPTION, 3, "SystemExit")


def test_cpu_limit_is_a_timeout():
    r = run_python("while True:\n    pass\n", Limits(wall_timeout_s=10, cpu_s=1))
    assert r.status == Status.TIMEOUT
    assert r.exit_code == -24  # SIGXCPU, before the wall clock
    assert r.duration_s < 5


def _gone(pid: int, within_s: float = 3.0) -> bool:
    end = time.monotonic() + within_s
    while time.monotonic() < end:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


# A child in the program's process group announces its host pid (/proc/self is resolved in the host's pid
# namespace, /proc not being remounted: these tests run with isolate_files=False), then the program hangs.
# tests/sandbox/test_sandbox_hostile.py checks the same with the private /proc on, by process name.
_SPAWN_AND_HANG = (
    "import subprocess, sys, time\n"
    "child = \"import os, time; print(os.readlink('/proc/self'), flush=True); time.sleep(60)\"\n"
    "subprocess.Popen([sys.executable, '-c', child]{extra})\n"
    "time.sleep(60)\n"
)


@pytest.mark.parametrize("isolate_pids", [True, False])
def test_wall_timeout_kills_the_whole_group(isolate_pids):
    t0 = time.monotonic()
    r = run_python(
        _SPAWN_AND_HANG.format(extra=""),
        Limits(wall_timeout_s=1.0, isolate_pids=isolate_pids, isolate_files=False),
    )
    assert time.monotonic() - t0 < 4
    assert r.status == Status.TIMEOUT
    child = int(r.stdout.split()[0])
    assert _gone(child), f"child {child} survived the timeout"


@pytest.mark.skipif(not namespace_support().pid, reason="no PID namespace on this machine")
def test_pid_namespace_kills_a_setsid_escapee():
    r = run_python(
        _SPAWN_AND_HANG.format(extra=", start_new_session=True"),
        Limits(wall_timeout_s=1.0, isolate_files=False),
    )
    assert r.status == Status.TIMEOUT
    assert _gone(int(r.stdout.split()[0]))


@pytest.mark.parametrize("isolate_pids", [True, False])
def test_leftover_child_after_a_normal_exit_is_killed(isolate_pids):
    src = _SPAWN_AND_HANG.format(extra="").replace(
        "time.sleep(60)\n", "time.sleep(0.3)\n"
    )  # the program's own
    t0 = time.monotonic()
    r = run_python(src, Limits(wall_timeout_s=5, isolate_pids=isolate_pids, isolate_files=False))
    assert r.status == Status.OK
    assert time.monotonic() - t0 < 3  # did not wait for the child holding stdout
    assert _gone(int(r.stdout.split()[0]))


def test_output_flood_is_capped_and_fast():
    src = "import sys\nfor _ in range(100):\n    sys.stdout.write('x' * 100_000)\nprint()\nprint('tail')\n"
    t0 = time.monotonic()
    r = run_python(src, Limits(wall_timeout_s=10, output_cap_bytes=4096))
    assert time.monotonic() - t0 < 5
    assert r.status == Status.OK  # 10 MB is allowed; only the tail is kept
    assert r.stdout.endswith("x\ntail\n")
    assert len(r.stdout) < 4096 + 100 and "bytes cut" in r.stdout


def test_endless_flood_is_killed_at_the_output_limit():
    t0 = time.monotonic()
    r = run_python(
        "while True:\n    print('y' * 10_000)\n", Limits(wall_timeout_s=30, output_limit_bytes=4_000_000)
    )
    assert time.monotonic() - t0 < 10
    assert r.status == Status.KILLED
    assert "output limit" in r.stderr


def test_stdin_is_closed():
    r = run_python("import sys\nassert sys.stdin.read() == ''\ninput()\n", FAST)
    assert (r.status, r.exception_type) == (Status.EXCEPTION, "EOFError")


def test_environment_is_scrubbed(monkeypatch):
    monkeypatch.setenv("CODEQUANT_TEST_SECRET", "hunter2")
    src = (
        "import os\nprint(sorted(os.environ))\nassert 'CODEQUANT_TEST_SECRET' not in os.environ\n"
        "assert os.environ['HOME'] == os.getcwd()\n"
    )
    r = run_python(src, FAST)
    assert r.status == Status.OK, r.stderr
    assert "hunter2" not in r.stdout and "CODEQUANT_TEST_SECRET" not in r.stdout


def test_files_land_in_a_private_temp_dir_that_is_removed():
    src = (
        "import os\nopen('out.txt', 'w').write('data')\nos.mkdir('d')\nopen('d/f', 'w').write('x')\n"
        "os.chmod('d', 0o500)\nprint(os.getcwd())\n"
    )
    r = run_python(src, FAST)
    assert r.status == Status.OK, r.stderr
    cwd = Path(r.stdout.strip())
    assert cwd.parent == Path(tempfile.gettempdir()).resolve() or cwd.parent == Path(tempfile.gettempdir())
    assert cwd.name.startswith("codequant-sbx-")
    assert not cwd.exists()


def test_file_size_limit():
    r = run_python(
        "open('big', 'wb').write(b'0' * (3 * 1024 * 1024))\n", Limits(wall_timeout_s=5, file_size_mb=1)
    )
    assert r.status in (Status.KILLED, Status.EXCEPTION)  # SIGXFSZ, or EFBIG when the signal is ignored
    assert r.status != Status.OK


def _listener() -> socket.socket:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    return srv


@pytest.mark.skipif(
    not namespace_support().net, reason="no network namespace on this machine (see docs/sandbox.md)"
)
def test_network_is_blocked():
    with _listener() as srv:
        port = srv.getsockname()[1]
        src = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2).close()\n"
        blocked = run_python(src, FAST)
        allowed = run_python(src, Limits(wall_timeout_s=5, isolate_network=False))
    assert blocked.status == Status.EXCEPTION
    assert blocked.exception_type in ("OSError", "ConnectionRefusedError")
    assert allowed.status == Status.OK, (
        allowed.stderr
    )  # the same program reaches the port without the namespace


@pytest.mark.skipif(
    os.geteuid() != 0 or not os.access("/usr/bin/python3", os.X_OK), reason="needs root and /usr/bin/python3"
)
def test_runs_as_an_unprivileged_user():
    import pwd

    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody")
    src = (
        f"import os\nprint(os.getuid())\ntry:\n    open({str(Path(sys.executable).parent)!r} + '/x', 'w')\n"
        "except PermissionError:\n    print('denied')\n"
        f"try:\n    open('/proc/{os.getpid()}/environ', 'rb').read()\nexcept PermissionError:\n    print('denied')\n"
    )
    # isolate_files=False: the user's own protection, without the mount namespace (which would answer EROFS/ENOENT)
    r = run_python(
        src, Limits(wall_timeout_s=5, user="nobody", python="/usr/bin/python3", isolate_files=False)
    )
    assert r.status == Status.OK, r.stderr
    assert r.stdout.split() == [
        str(nobody.pw_uid),
        "denied",
        "denied",
    ]  # no writes to the venv, no parent's env


def test_exception_type_parsing():
    assert (
        exception_type("Traceback (most recent call last):\n  File \"x\", line 1\nKeyError: 'a'\n")
        == "KeyError"
    )
    tb = 'Traceback (most recent call last):\n  File "x"\nnumpy.core._exceptions._ArrayMemoryError: Unable\n'
    assert exception_type(tb) == "_ArrayMemoryError"
    assert exception_type("") is None


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch users")
def test_interpreter_the_user_cannot_run_is_a_user_error(tmp_path):
    from codequant.errors import CodequantError

    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    exe = private / "python"
    exe.symlink_to(sys.executable)
    with pytest.raises(CodequantError, match="cannot start"):
        run_python("print(1)\n", Limits(wall_timeout_s=5, user="nobody", python=str(exe)))
