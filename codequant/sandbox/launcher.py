"""The first process of every sandboxed run: isolate, limit, drop privileges, exec the program.

It runs as a script (`python -I -S launcher.py CONFIG_JSON`) rather than as a `preexec_fn`, because the runner
starts programs from a thread pool and a `preexec_fn` in a threaded parent can deadlock in the forked child.
Standard library only, nothing imported from codequant: it must start fast and must not depend on the package
being importable under the sandbox's environment.

With a mount namespace (`cfg["mount"]`, root or a user namespace) the program sees the host's file system
read-only, except its scratch dir (bind-mounted back writable) and fresh, small tmpfs on /tmp, /var/tmp and
/dev/shm (so it cannot read or touch other runs' scratch dirs either); with a PID namespace too, /proc is a
fresh one that shows only the sandbox's own processes (no /proc/<pid>/environ of the host). Nothing of it
propagates back to the host (all mounts are made private first) and it disappears with the last process.

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
CLONE_NEWNS = 0x00020000

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
SYS_MOUNT_SETATTR = 442  # the same number on every architecture (added after the syscall tables were unified)
AT_FDCWD, AT_RECURSIVE = -100, 0x8000
MOUNT_ATTR_RDONLY = 1
PRIVATE_TMPFS = ("/tmp", "/var/tmp", "/dev/shm")
TMPFS_SIZE = "size=64m,mode=1777"

LAUNCH_FAILED = 125  # exit code when the launcher itself could not set the sandbox up


def _unshare(flags: int) -> None:
    _check(_libc().unshare(ctypes.c_int(flags)), "unshare")


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    def enc(v: str | None) -> bytes | None:
        return None if v is None else v.encode()

    _check(_libc().mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)), f"mount {target}")


def _set_readonly(target: str, readonly: bool, recursive: bool) -> None:
    """mount_setattr(2): make a mount (tree) read-only, or writable again."""
    attr = (ctypes.c_uint64 * 4)(MOUNT_ATTR_RDONLY if readonly else 0, 0 if readonly else MOUNT_ATTR_RDONLY, 0, 0)
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    ret = libc.syscall(ctypes.c_long(SYS_MOUNT_SETATTR), ctypes.c_int(AT_FDCWD), target.encode(),
                       ctypes.c_uint(AT_RECURSIVE if recursive else 0), ctypes.byref(attr), ctypes.c_size_t(32))
    _check(ret, f"mount_setattr {target}")


def setup_mounts(scratch: str) -> None:
    """In a fresh mount namespace: host read-only, scratch writable, private tmpfs temp dirs.

    The scratch dir usually lives under /tmp, which the private tmpfs hides: it is opened first and bind-mounted
    back at the same path through /proc/self/fd, so the program keeps the path it was given.
    """
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    keep = os.open(scratch, os.O_PATH | os.O_DIRECTORY)
    _set_readonly("/", True, recursive=True)
    for tmp in PRIVATE_TMPFS:
        if os.path.isdir(tmp):
            _mount("tmpfs", tmp, "tmpfs", MS_NOSUID | MS_NODEV, TMPFS_SIZE)
    os.makedirs(scratch, exist_ok=True)
    _mount(f"/proc/self/fd/{keep}", scratch, None, MS_BIND)
    os.close(keep)
    _set_readonly(scratch, False, recursive=False)
    os.chdir(scratch)  # the old cwd is the hidden, read-only original


def mount_proc() -> None:
    """A /proc of the current PID namespace (call as its pid 1): only the sandbox's processes are visible."""
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)


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
    if cfg.get("mount", {}).get("proc"):
        try:
            mount_proc()
        except OSError as exc:
            _fail(str(exc))
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
    if cfg.get("cgroup"):  # join the run's pids cgroup first: everything started from here on counts in it
        try:
            with open(os.path.join(cfg["cgroup"], "cgroup.procs"), "w") as fh:
                fh.write(str(os.getpid()))
        except OSError as exc:
            _fail(f"cgroup: {exc}")
    flags = int(cfg.get("unshare", 0))
    if flags:
        try:
            _unshare(flags)
        except OSError as exc:
            _fail(str(exc))
    if flags & CLONE_NEWNS:
        try:
            setup_mounts(cfg["mount"]["scratch"])
        except (OSError, KeyError) as exc:
            _fail(f"file isolation: {exc}")
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


def _mounts_work(flags: int) -> tuple[bool, bool]:
    """(file isolation works, a private /proc works) with `flags` | CLONE_NEWNS, tried in a throw-away child."""
    import tempfile

    scratch = tempfile.mkdtemp(prefix="codequant-probe-")
    try:
        found = []
        for proc in (True, False):
            pid = os.fork()
            if pid == 0:
                try:
                    _unshare(flags | CLONE_NEWNS)
                    setup_mounts(scratch)
                    with open(os.path.join(scratch, "w"), "w"):
                        pass
                    if proc:
                        inner = os.fork()
                        if inner == 0:
                            try:
                                mount_proc()
                                os._exit(0)
                            except BaseException:
                                os._exit(1)
                        _, st = os.waitpid(inner, 0)
                        os._exit(os.waitstatus_to_exitcode(st))
                    os._exit(0)
                except BaseException:
                    os._exit(1)
            _, status = os.waitpid(pid, 0)
            found.append(os.waitstatus_to_exitcode(status) == 0)
            if found[-1]:
                return True, proc
        return False, False
    finally:
        with contextlib.suppress(OSError):
            for name in os.listdir(scratch):
                os.unlink(os.path.join(scratch, name))
            os.rmdir(scratch)


def probe() -> dict:
    """Which namespaces work here; `user` tells that a user namespace is needed (no root)."""
    for user in (0, CLONE_NEWUSER):
        for net, pid in ((True, True), (True, False), (False, True)):
            flags = user | (CLONE_NEWNET if net else 0) | (CLONE_NEWPID if pid else 0)
            if _works(flags):
                mnt, proc = _mounts_work(flags)
                return {"net": net, "pid": pid, "user": bool(user), "mnt": mnt, "proc": proc and pid}
    return {"net": False, "pid": False, "user": False, "mnt": False, "proc": False}


if __name__ == "__main__":
    if sys.argv[1:] == ["--probe"]:
        print(json.dumps(probe()))
    else:
        launch(json.loads(sys.argv[1]))
