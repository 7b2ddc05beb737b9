"""Run one command under the sandbox: own session, scratch dir, scrubbed env, limits, capped output, hard kill.

Language sandboxes (Python here, Java beside it) build a command and a scratch directory and call
`run_sandboxed`; they only interpret the outcome. Everything about processes lives here:

- the command starts through `launcher.py` in a new session (its own process group), so one killpg() reaches
  every process it forks; with a PID namespace even processes that called setsid() die with it;
- stdout and stderr are read concurrently with select(), keeping only a tail of each, so a flood neither
  blocks the child on a full pipe nor grows the parent's memory; past `output_limit_bytes` the group is killed;
- the exit is detected with waitid(WNOWAIT), the group is killed *before* the leader is reaped (so its id cannot
  have been reused by an unrelated process), then the leader is reaped;
- each run gets its own cgroups (pids, memory, cpu: `cgroup.py`) and, with a mount namespace, a size-limited
  tmpfs scratch dir; an end marker, when given, reaches the program only through the launcher (`launcher.py`);
- the first run of a process removes what dead runners left (scratch dirs, cgroups) and starts the reaper
  (`reaper.py`) that removes this runner's leftovers if it dies.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from codequant.sandbox import cgroup, scratch
from codequant.sandbox.isolation import (
    CLONE_NEWNS,
    LAUNCHER,
    RunAs,
    namespace_support,
    unshare_flags,
    warn_weak_isolation,
)
from codequant.sandbox.limits import Limits

SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
_EXIT_GRACE_S = 0.3  # after the program exited, how long leftovers may hold its pipes before we stop reading


@dataclass
class ProcessOutcome:
    returncode: int | None  # negative: killed by that signal
    stdout: bytes  # tail, at most output_cap_bytes
    stderr: bytes
    stdout_total: int  # bytes the program wrote, before capping
    stderr_total: int
    duration_s: float
    timed_out: bool  # we killed it at the wall timeout
    output_exceeded: bool  # we killed it for writing more than output_limit_bytes
    memory_exceeded: bool = False  # the kernel's OOM killer acted in the run's memory cgroup


def sandbox_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A minimal environment: nothing of the parent's (tokens, proxies, HF/AWS credentials) leaks through."""
    env = {
        "PATH": SAFE_PATH,
        "HOME": str(home),
        "TMPDIR": str(home),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONIOENCODING": "utf-8",
    }
    env.update(extra or {})
    return env


log = logging.getLogger("codequant.sandbox")
REAPER = Path(__file__).with_name("reaper.py")
_REAPERS: dict[int, int] = {}  # runner pid -> the write end of its reaper's pipe (held until the runner dies)
_REAPER_LOCK = threading.Lock()


@contextlib.contextmanager
def scratch_dir(run_as: RunAs | None = None) -> Iterator[Path]:
    """A fresh private directory (the program's cwd and HOME), removed afterwards whatever the program did."""
    with scratch.scratch_dir((run_as.uid, run_as.gid) if run_as is not None else None) as path:
        yield path


def start_reaper() -> None:
    """Once per runner process: sweep what dead runners left, and start this runner's reaper (`reaper.py`)."""
    pid = os.getpid()
    with _REAPER_LOCK:
        if pid in _REAPERS:
            return
        stale = scratch.sweep_stale() + cgroup.sweep_stale()
        if stale:
            log.warning("sandbox: removed %d scratch dirs / cgroups left by runners that died", len(stale))
        read_fd, write_fd = os.pipe()
        cfg = {
            "runner": pid,
            "tmpdir": tempfile.gettempdir(),
            "cgroups": {k: str(v) for k, v in cgroup.controller_roots().items()},
        }
        try:
            subprocess.Popen(
                [sys.executable, "-I", "-S", str(REAPER), json.dumps(cfg)],
                stdin=read_fd,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            log.warning(
                "sandbox: no reaper (%s): a killed runner leaves its scratch dirs to the next sweep", exc
            )
        finally:
            os.close(read_fd)
        _REAPERS[pid] = write_fd


class _Tail:
    """The last `cap` bytes of a stream plus its total length."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.buf = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self.buf += chunk
        if len(self.buf) > self.cap:
            del self.buf[: len(self.buf) - self.cap]


def _exited(pid: int) -> bool:
    """Has `pid` exited? Leaves it a zombie (unreaped) so its process-group id stays reserved."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def run_sandboxed(
    argv: Sequence[str],
    cwd: Path,
    limits: Limits,
    env: dict[str, str] | None = None,
    run_as: RunAs | None = None,
    marker: str | None = None,
    shared: dict[str, str] | None = None,
) -> ProcessOutcome:
    """Run `argv` (argv[0] an absolute path) in `cwd` under `limits`; never raises for what the program does.

    `marker`: handed to the program on fd `launcher.MARKER_FD` (never written to a file it can read).
    `shared`: subdirs of `cwd` kept from the host when the scratch dir is a tmpfs ("rw" or "ro"), e.g. the
    classes javac writes for the JVM run that follows.
    """
    start_reaper()
    flags = unshare_flags(
        limits.isolate_network, limits.isolate_pids, limits.isolate_files, limits.isolate_ipc
    )
    warn_weak_isolation(run_as is None and os.geteuid() == 0)
    with cgroup.run_cgroups(limits.max_processes, limits.memory_mb, limits.isolate_cpu) as groups:
        return _run(argv, cwd, limits, env, run_as, flags, groups, marker, shared)


def _run(
    argv: Sequence[str],
    cwd: Path,
    limits: Limits,
    env: dict[str, str] | None,
    run_as: RunAs | None,
    flags: int,
    groups: cgroup.RunCgroups,
    marker: str | None,
    shared: dict[str, str] | None,
) -> ProcessOutcome:
    rlimits = limits.rlimits()
    if groups.pids:  # the cgroup bounds this run's processes; the per-user limit would couple runs
        rlimits.pop("RLIMIT_NPROC", None)
    sup = namespace_support()
    mount = {}
    if flags & CLONE_NEWNS:
        mount = {
            "scratch": str(cwd),
            "proc": sup.proc,
            "disk_mb": limits.disk_mb if sup.tmpfs else None,
            "shared": shared or {},
        }
    config = {
        "argv": list(argv),
        "rlimits": rlimits,
        "cgroups": [str(p) for p in groups.paths],
        "parent": os.getpid(),
        "unshare": flags,
        "mount": mount,
        "uid": run_as.uid if run_as else None,
        "gid": run_as.gid if run_as else None,
        "seccomp": sup.machine if limits.seccomp and sup.seccomp else None,
        "keyring": sup.machine if sup.keyring else None,
    }
    start = time.monotonic()
    deadline = start + limits.wall_timeout_s
    proc = subprocess.Popen(
        [sys.executable, "-I", "-S", str(LAUNCHER), json.dumps(config)],
        cwd=cwd,
        env=env if env is not None else sandbox_env(cwd),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        close_fds=True,
    )
    pgid = proc.pid  # start_new_session: the leader's pid is the group's id
    assert proc.stdin is not None
    with contextlib.suppress(OSError):  # the launcher reads the marker, then makes stdin /dev/null
        proc.stdin.write((marker + "\n").encode() if marker else b"")
    with contextlib.suppress(OSError):
        proc.stdin.close()
    out, err = _Tail(limits.output_cap_bytes), _Tail(limits.output_cap_bytes)
    timed_out = exceeded = False
    try:
        timed_out, exceeded = _pump(proc, pgid, out, err, deadline, limits.output_limit_bytes)
        while not (timed_out or exceeded) and not _exited(proc.pid):
            if time.monotonic() >= deadline:  # closed its pipes but kept running
                timed_out = True
                break
            time.sleep(0.005)
    finally:
        _kill_group(pgid)  # leftovers of a normal exit, or everything on timeout/flood; leader not yet reaped
        proc.wait()
        for f in (proc.stdout, proc.stderr):
            if f is not None:
                f.close()
    duration = time.monotonic() - start
    return ProcessOutcome(
        returncode=proc.returncode,
        stdout=bytes(out.buf),
        stderr=bytes(err.buf),
        stdout_total=out.total,
        stderr_total=err.total,
        duration_s=duration,
        timed_out=timed_out,
        output_exceeded=exceeded,
        memory_exceeded=groups.oom_killed(),
    )


def _pump(
    proc: subprocess.Popen, pgid: int, out: _Tail, err: _Tail, deadline: float, limit: int
) -> tuple[bool, bool]:
    """Read both pipes until EOF; returns (timed_out, output_exceeded)."""
    assert proc.stdout is not None and proc.stderr is not None
    tails = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
    with selectors.DefaultSelector() as sel:
        for fd in tails:
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ)
        exited_at: float | None = None
        while sel.get_map():
            now = time.monotonic()
            if exited_at is None and _exited(proc.pid):
                exited_at = now
                _kill_group(pgid)  # children still holding the pipes
            elif exited_at is not None and now - exited_at > _EXIT_GRACE_S:
                return False, False  # pipes held by something outside the group: stop listening
            if exited_at is None and now >= deadline:
                return True, False
            wait = min(deadline - now, 0.1) if exited_at is None else 0.05
            for key, _ in sel.select(timeout=max(wait, 0.0)):
                try:
                    chunk = os.read(key.fd, 65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    sel.unregister(key.fd)
                    continue
                tail = tails[key.fd]
                tail.add(chunk)
                if tail.total > limit:
                    return False, True
    return False, False
