"""The second hostile round: each escape found by the attacker's suite (issue 30) is a real program run against the
real kernel feature that stops it; a test skips, with the reason, where this machine lacks the feature.

Each was checked by switching its fix off once and seeing the test fail (docs/sandbox.md lists which).
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hostile_kit import QUICK, assert_runner_alive, leftovers, prelude

from codequant.sandbox import Limits, Status, run_program, run_programs
from codequant.sandbox.cgroup import controller_roots
from codequant.sandbox.isolation import LAUNCHER, namespace_support, unshare_flags
from codequant.sandbox.scratch import remove_tree

SUP = namespace_support()
ROOTS = controller_roots()
needs = {
    "seccomp": pytest.mark.skipif(not SUP.seccomp, reason="no seccomp filter on this machine"),
    "ipc": pytest.mark.skipif(not SUP.ipc, reason="no IPC namespace on this machine"),
    "tmpfs": pytest.mark.skipif(not SUP.tmpfs, reason="no mount namespace with a tmpfs scratch dir here"),
    "memory": pytest.mark.skipif(
        "memory" not in ROOTS, reason="no memory cgroup (needs root and the controller)"
    ),
    "cpu": pytest.mark.skipif("cpu" not in ROOTS, reason="no cpu cgroup (needs root and the controller)"),
}


def contained(source: str, token: str, limits: Limits = QUICK):
    r = run_program("python", prelude(token) + source, limits)
    assert leftovers(token) == [], "processes outlived the run"
    return r


# ---- one completion must never stop an evaluation ----


def test_remove_tree_deeper_than_the_recursion_limit_and_path_max(tmp_path):
    top = tmp_path / "scratch"
    top.mkdir()
    fd = os.open(top, os.O_RDONLY)
    try:  # 1200 levels (shutil.rmtree: RecursionError) of 200-char names (240 KB paths: far past PATH_MAX)
        for i in range(1200):
            name = f"{i % 10}" * 200
            os.mkdir(name, dir_fd=fd)
            new = os.open(name, os.O_RDONLY, dir_fd=fd)
            if i % 300 == 0:
                with open(os.open("f", os.O_WRONLY | os.O_CREAT, 0o400, dir_fd=new), "w") as fh:
                    fh.write("x")
            os.close(fd)
            fd = new
        os.fchmod(fd, 0o500)  # a read-only directory at the bottom
        os.close(fd)
        fd = -1
        assert remove_tree(top) is True
        assert not top.exists()
        assert remove_tree(top) is True  # gone already: still no error
    finally:
        if fd >= 0:
            os.close(fd)
        subprocess.run(
            ["rm", "-rf", str(top)], check=False
        )  # never leave pytest's own cleanup a tree it chokes on


@pytest.mark.parametrize("isolate_files", [True, False], ids=["tmpfs-scratch", "host-scratch"])
def test_nested_directories_program_gets_a_result_and_leaves_no_scratch_dir(token, isolate_files):
    src = (
        "import os\nhome = os.getcwd()\nprint(home)\nfor i in range(1500):\n    os.mkdir('d')\n    os.chdir('d')\n"
        "assert 1 + 1 == 2\n"
    )
    r = contained(src, token, Limits(wall_timeout_s=30, isolate_files=isolate_files))
    assert r.status == Status.OK, r.stderr
    scratch = Path(r.stdout.splitlines()[0])
    assert scratch.name.startswith("codequant-sbx-") and not scratch.exists()
    assert_runner_alive()


def test_nested_directories_through_codequant_exec_prints_json(tmp_path):
    prog = tmp_path / "deep.py"
    prog.write_text("import os\nfor i in range(1500):\n    os.mkdir('d')\n    os.chdir('d')\n")
    out = subprocess.run(
        [sys.executable, "-c", "from codequant.cli import main; main()", "exec", str(prog)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert '"status": "ok"' in out.stdout


@pytest.mark.skipif(shutil.which("javac") is None, reason="no JDK")
def test_a_program_that_breaks_the_harness_is_its_own_harness_error_the_batch_goes_on():
    java = 'public class A {\n    public static void main(String[] a) {\n        String s = "\ud800";\n    }\n}\n'
    rs = run_programs(
        [("python", "assert 1 + 1 == 2\n"), ("java", java), ("python", "assert 2 + 2 == 4\n")],
        QUICK,
        workers=2,
        progress=False,
    )
    assert [r.status for r in rs] == [Status.OK, Status.HARNESS_ERROR, Status.OK]
    assert "UnicodeEncodeError" in rs[1].stderr and rs[1].exception_type == "UnicodeEncodeError"


def test_sandbox_dies_with_its_runner(token):
    """PR_SET_PDEATHSIG in launcher, init and program: a SIGKILLed runner takes its sandboxes with it at once
    (the reaper, tested through `codequant evaluate` in tests/evaluation, then removes dirs and cgroups)."""
    cfg = {
        "argv": [sys.executable, "-c", f"{prelude(token)}import time\ntime.sleep(30)\n"],
        "rlimits": {},
        "unshare": unshare_flags(True, True),
    }
    runner = (
        f"import subprocess, sys, time\nsubprocess.Popen([sys.executable, '-I', '-S', {str(LAUNCHER)!r}, "
        f"{json.dumps(cfg)!r}], stdin=subprocess.DEVNULL)\ntime.sleep(30)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", runner])
    try:
        end = time.monotonic() + 20
        while subprocess.run(["pgrep", "-x", token], capture_output=True).returncode != 0:  # by its own name
            assert time.monotonic() < end and proc.poll() is None, "the sandboxed program never started"
            time.sleep(0.05)
        proc.kill()
        proc.wait()
        assert leftovers(token, within_s=1.0) == [], "the sandbox outlived its runner"
    finally:
        proc.kill()


# ---- the boundary ----


@needs["seccomp"]
def test_host_unix_socket_cannot_be_reached(token, host_unix_socket):
    path, got = host_unix_socket
    src = (
        f"import socket\ntry:\n    s = socket.socket(socket.AF_UNIX)\n    s.connect({str(path)!r})\n"
        f"    s.sendall(b'leak-{token}')\n    s.close()\n    print('sent')\nexcept OSError as e:\n"
        f"    print('blocked', e.errno)\n"
    )
    r = contained(src, token)
    time.sleep(0.3)
    assert r.status == Status.OK, r.stderr
    assert "blocked" in r.stdout and bytes(got) == b""
    # the same program as the host: the socket works (so the test would see a leak)
    subprocess.run([sys.executable, "-c", src], check=True, capture_output=True, timeout=10)
    time.sleep(0.3)
    assert bytes(got) == f"leak-{token}".encode()


_SHM = ctypes.CDLL(None, use_errno=True)
_SHM.shmat.restype = ctypes.c_void_p
IPC_CREAT, IPC_RMID = 0o1000, 0


@needs["ipc"]
def test_host_sysv_shared_memory_is_invisible_and_none_is_left(token):
    key = secrets.randbits(30) + 1
    shmid = _SHM.shmget(key, 4096, IPC_CREAT | 0o666)
    assert shmid >= 0
    addr = _SHM.shmat(shmid, None, 0)
    ctypes.memmove(addr, b"host-secret", 11)
    leave = [key + 1 + i for i in range(3)]
    try:
        src = (
            f"import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nprint('host', libc.shmget({key}, 0, 0))\n"
            f"for k in {leave}:\n    print('made', libc.shmget(k, 64 * 1024 * 1024, {IPC_CREAT | 0o666}))\n"
        )
        r = contained(src, token)
        assert r.status == Status.OK, r.stderr
        assert "host -1" in r.stdout  # the host's segment does not exist in the sandbox
        assert r.stdout.count("made -1") == 0  # its own segments could be made ...
        for k in leave:  # ... and died with its IPC namespace
            assert _SHM.shmget(k, 0, 0) == -1, "a segment of the run is left on the host"
        assert ctypes.string_at(addr, 11) == b"host-secret"
    finally:
        _SHM.shmdt(ctypes.c_void_p(addr))
        _SHM.shmctl(shmid, IPC_RMID, None)
        for k in leave:
            if (sid := _SHM.shmget(k, 0, 0)) >= 0:
                _SHM.shmctl(sid, IPC_RMID, None)


@needs["seccomp"]
def test_kernel_keyring_does_not_carry_from_one_run_to_the_next(token):
    desc = f"cq-{token}".encode()
    store = (
        f"import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nlibc.syscall.restype = ctypes.c_long\n"
        f"for ring in (-3, -4, -5):  # session, user, user-session keyrings\n"
        f"    print(libc.syscall(248, b'user', {desc!r}, b'run-A', 5, ring), ctypes.get_errno())\n"
    )
    find = (
        f"import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nlibc.syscall.restype = ctypes.c_long\n"
        f"for ring in (-3, -4, -5):\n    print('found' if libc.syscall(250, 10, ring, b'user', {desc!r}, 0) >= 0"
        f" else 'none')\n"
    )
    a = contained(store, token)
    b = contained(find, token)
    assert a.status == Status.OK and b.status == Status.OK, (a.stderr, b.stderr)
    assert "found" not in b.stdout, "a key stored by one run was found by the next"


@needs["memory"]
def test_memory_is_limited_per_run_not_per_process(token):
    src = (
        "import os, time\nkids = []\nfor i in range(3):\n    pid = os.fork()\n    if pid == 0:\n"
        "        block = b'x' * (400 * 1024 * 1024)\n        time.sleep(1.5)\n        os._exit(0)\n    kids.append(pid)\n"
        "assert all(os.waitpid(k, 0)[1] == 0 for k in kids)\n"
    )
    r = contained(src, token, Limits(wall_timeout_s=20, memory_mb=768))
    assert r.status == Status.MEMORY, (r.status, r.stderr)
    assert_runner_alive()


@needs["tmpfs"]
def test_total_disk_is_limited_per_run(token):
    src = (
        "import os\nn = 0\ntry:\n    for i in range(30):\n        with open(f'f{i}', 'wb') as fh:\n"
        "            fh.write(b'x' * (10 * 1024 * 1024))\n        n += 10\nexcept OSError as e:\n"
        "    print('stopped', e.errno)\nprint('wrote', n)\n"
    )
    r = contained(src, token, Limits(wall_timeout_s=20, disk_mb=64))
    assert r.status == Status.OK, r.stderr
    assert "stopped 28" in r.stdout  # ENOSPC
    assert int(r.stdout.split("wrote")[1]) <= 64


@needs["cpu"]
def test_each_run_has_its_own_cpu_group_with_the_default_weight(token):
    src = "print(open('/proc/self/cgroup').read())\n"
    r = contained(src, token)
    assert r.status == Status.OK, r.stderr
    line = next(
        ln
        for ln in r.stdout.splitlines()  # v1 "N:cpu[,...]:/path", v2 "0::/path"
        if (ln.split(":")[1] == "" or "cpu" in ln.split(":")[1].split(",")) and "run-" in ln
    )
    name = line.rsplit("/", 1)[1]
    assert re.match(rf"^(codequant-)?run-{os.getpid()}-", name)
    assert not (ROOTS["cpu"] / name).exists()  # removed after the run


# ---- wrong answers that must not score ok ----


@pytest.mark.parametrize("how", ["-O", "-OO", "PYTHONOPTIMIZE"])
def test_reexec_without_asserts_is_not_ok(token, how):
    env = "dict(os.environ, PYTHONOPTIMIZE='1')" if how == "PYTHONOPTIMIZE" else "os.environ"
    flag = "" if how == "PYTHONOPTIMIZE" else f"'{how}', "
    src = (
        f"import os, sys\nif not os.environ.get('CQ_AGAIN'):\n    os.environ['CQ_AGAIN'] = '1'\n"
        f"    os.execve(sys.executable, [sys.executable, {flag}*sys.argv], {env})\n"
        f"def wrong(x):\n    return x + 1\nassert wrong(1) == 5\n"
    )
    r = contained(src, token)
    assert r.status != Status.OK, r.stdout


def test_marker_is_not_in_the_program_source(token):
    src = (
        "import re, sys\nfound = re.findall(r'__codequant_done_[0-9a-f]+__', open(sys.argv[0]).read())\n"
        "found += re.findall(r'__codequant_done_[0-9a-f]+__', open(__file__).read())\nprint(found, flush=True)\n"
        "for m in found:\n    print(m, flush=True)\nimport os\nos._exit(0)\nassert False\n"
    )
    r = contained(src, token)
    assert r.status == Status.KILLED, (r.status, r.stdout)
    assert "[]" in r.stdout
