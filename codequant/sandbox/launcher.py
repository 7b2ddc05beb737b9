"""The first process of every sandboxed run: isolate, limit, drop privileges, exec the program.

It runs as a script (`python -I -S launcher.py CONFIG_JSON`) rather than as a `preexec_fn`, because the runner
starts programs from a thread pool and a `preexec_fn` in a threaded parent can deadlock in the forked child.
Standard library only, nothing imported from codequant: it must start fast and must not depend on the package
being importable under the sandbox's environment.

With a PID namespace the process tree is: launcher (waits, relays the exit) -> init (pid 1 of the namespace,
reaps orphans) -> program. When the program ends, init exits and the kernel kills whatever the program left in
the namespace, including processes that left our process group with setsid(); nothing can outlive the run.
Without one, the launcher execs the program in place and the parent's killpg() is the cleanup.

`--probe` prints (as JSON) which namespaces this machine lets us create; see `codequant.sandbox.isolation`.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import signal
import sys

CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

LAUNCH_FAILED = 125  # exit code when the launcher itself could not set the sandbox up


def _unshare(flags: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(ctypes.c_int(flags)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare: {os.strerror(err)}")


def _fail(msg: str) -> None:
    os.write(2, f"codequant-sandbox: {msg}\n".encode())
    os._exit(LAUNCH_FAILED)


def _exec_program(cfg: dict) -> None:
    """Limits, then credentials, then exec: never returns."""
    try:
        for name, (soft, hard) in cfg["rlimits"].items():
            resource.setrlimit(getattr(resource, name), (soft, hard))
        if cfg.get("gid") is not None:
            os.setgroups([])
            os.setgid(cfg["gid"])
        if cfg.get("uid") is not None:
            os.setuid(cfg["uid"])
        argv = cfg["argv"]
        os.execv(argv[0], argv)
    except OSError as exc:
        _fail(f"cannot start {cfg['argv'][0]}: {exc}")


def _relay(code: int) -> None:
    """Exit like the program did: same code, or death by the same signal."""
    if code >= 0:
        os._exit(code)
    sig = -code
    with contextlib.suppress(OSError, ValueError):  # SIGKILL/SIGSTOP cannot be (re)set, and need not be
        signal.signal(sig, signal.SIG_DFL)
    with contextlib.suppress(OSError):
        os.kill(os.getpid(), sig)
    os._exit(128 + sig)


def _init(cfg: dict, status_fd: int) -> None:
    """PID 1 of the namespace: start the program, reap every orphan, report the program's exit."""
    child = os.fork()
    if child == 0:
        os.close(status_fd)
        _exec_program(cfg)
    code = LAUNCH_FAILED
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            break
    os.write(status_fd, str(code).encode())
    os._exit(0)  # the kernel now kills everything left in the namespace


def launch(cfg: dict) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    flags = int(cfg.get("unshare", 0))
    if flags:
        try:
            _unshare(flags)
        except OSError as exc:
            _fail(str(exc))
    if not flags & CLONE_NEWPID:
        _exec_program(cfg)
    read_fd, write_fd = os.pipe()
    init = os.fork()  # the first child after unshare(CLONE_NEWPID) is pid 1 of the new namespace
    if init == 0:
        os.close(read_fd)
        _init(cfg, write_fd)
    os.close(write_fd)
    _, status = os.waitpid(init, 0)
    report = b""
    while chunk := os.read(read_fd, 64):
        report += chunk
    _relay(int(report) if report else os.waitstatus_to_exitcode(status))


def _works(flags: int) -> bool:
    """Can a child unshare `flags` (and, with a PID namespace, fork its init)?"""
    pid = os.fork()
    if pid == 0:
        try:
            _unshare(flags)
            if flags & CLONE_NEWPID:
                inner = os.fork()
                if inner == 0:
                    os._exit(0)
                _, st = os.waitpid(inner, 0)
                os._exit(0 if os.waitstatus_to_exitcode(st) == 0 else 1)
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def probe() -> dict:
    """Which namespaces work here; `user` tells that a user namespace is needed (no root)."""
    for user in (0, CLONE_NEWUSER):
        for net, pid in ((True, True), (True, False), (False, True)):
            flags = user | (CLONE_NEWNET if net else 0) | (CLONE_NEWPID if pid else 0)
            if _works(flags):
                return {"net": net, "pid": pid, "user": bool(user)}
    return {"net": False, "pid": False, "user": False}


if __name__ == "__main__":
    if sys.argv[1:] == ["--probe"]:
        print(json.dumps(probe()))
    else:
        launch(json.loads(sys.argv[1]))
