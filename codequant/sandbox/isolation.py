"""What isolation this machine allows, detected once per process, and who runs the programs.

Namespaces need root or unprivileged user namespaces; containers often forbid both. Rather than fail, the
sandbox probes once (a throw-away child tries `unshare`) and uses what works; `codequant exec` and the bench
report it, so a user can see whether network isolation held on their machine.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import pwd
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from codequant.errors import CodequantError
from codequant.sandbox.cgroup import controller_roots

LAUNCHER = Path(__file__).with_name("launcher.py")
DEFAULT_USER = "codequant-sandbox"

# Must match launcher.py (kept literal there so the launcher imports nothing from codequant).
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000

log = logging.getLogger("codequant.sandbox")


@dataclass(frozen=True)
class Support:
    net: bool  # a fresh network namespace (no interfaces but a down loopback): no network at all
    pid: bool  # a fresh PID namespace: everything the program starts dies with it
    user: bool  # namespaces need a user namespace too (not root)
    mnt: bool = False  # a mount namespace: host read-only, private /tmp, only the scratch dir writable
    proc: bool = False  # a private /proc (only with a PID namespace): host processes invisible
    ipc: bool = False  # a fresh IPC namespace: no host SysV shared memory, semaphores, message queues
    tmpfs: bool = False  # the scratch dir can be a size-limited tmpfs (a disk quota per run)
    seccomp: bool = False  # a seccomp filter: no AF_UNIX sockets, no keyring calls
    keyring: bool = False  # a fresh session keyring per run
    machine: str = ""  # platform.machine() of the probe (selects the syscall numbers)


@functools.cache
def namespace_support() -> Support:
    """Probe once; any failure of the probe itself means no namespaces."""
    try:
        out = subprocess.run(
            [sys.executable, "-I", "-S", str(LAUNCHER), "--probe"],
            capture_output=True,
            text=True,
            timeout=20,
            stdin=subprocess.DEVNULL,
        )
        found = json.loads(out.stdout)
        return Support(
            bool(found["net"]),
            bool(found["pid"]),
            bool(found["user"]),
            bool(found.get("mnt")),
            bool(found.get("proc")),
            bool(found.get("ipc")),
            bool(found.get("tmpfs")),
            bool(found.get("seccomp")),
            bool(found.get("keyring")),
            str(found.get("machine", "")),
        )
    except (OSError, subprocess.SubprocessError, ValueError, KeyError):
        return Support(False, False, False)


def unshare_flags(
    isolate_network: bool, isolate_pids: bool, isolate_files: bool = False, isolate_ipc: bool = False
) -> int:
    """The `unshare` flags for a run, restricted to what the machine supports."""
    sup = namespace_support()
    flags = (CLONE_NEWNET if isolate_network and sup.net else 0) | (
        CLONE_NEWPID if isolate_pids and sup.pid else 0
    )
    if isolate_files and sup.mnt:
        flags |= CLONE_NEWNS
    if isolate_ipc and sup.ipc:
        flags |= CLONE_NEWIPC
    if flags and sup.user:
        flags |= CLONE_NEWUSER
    return flags


@dataclass(frozen=True)
class RunAs:
    name: str
    uid: int
    gid: int


def resolve_user(requested: str | None) -> RunAs | None:
    """The unprivileged user to run programs as, or None for the current user.

    An explicit request (argument or $CODEQUANT_SANDBOX_USER) must be satisfiable, else it is an error: a user
    who asked for privilege separation must not silently run without it. The default user `codequant-sandbox`
    is used only when it exists and we are root.
    """
    explicit = requested or os.environ.get("CODEQUANT_SANDBOX_USER") or None
    name = explicit or DEFAULT_USER
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        if explicit:
            raise CodequantError(
                f"sandbox user {name!r} does not exist; create it (useradd -r {name})"
            ) from None
        return None
    if entry.pw_uid == os.geteuid():
        return None
    if os.geteuid() != 0:
        if explicit:
            raise CodequantError(
                f"running programs as {name!r} needs root; run codequant as root or drop the user"
            )
        return None
    return RunAs(name, entry.pw_uid, entry.pw_gid)


_CGROUP_COST = {
    "pids": "a fork bomb is bounded only by the per-user RLIMIT_NPROC",
    "memory": "memory is bounded per process (RLIMIT_AS), not per run, and Java off-heap memory is not bounded",
    "cpu": "CPU fairness between concurrent programs depends on the kernel's autogroup",
}


@functools.cache
def warn_weak_isolation(root_without_user: bool) -> tuple[str, ...]:
    """Log, once per process, each protection this machine cannot give; returns the warnings (for reports)."""
    sup = namespace_support()
    found = []
    if root_without_user:
        found.append(
            f"generated code runs as root: RLIMIT_NPROC does not bind and only the mount namespace "
            f"protects files; create the sandbox user (make setup, or useradd -r -M -s /usr/sbin/nologin "
            f"{DEFAULT_USER})"
        )
    if not sup.net:
        found.append("no network namespace here: generated code can reach the network")
    if not sup.pid:
        found.append("no PID namespace here: a program that calls setsid() can outlive its run")
    if not sup.mnt:
        found.append(
            "no mount namespace here: generated code sees the host file system with its user's rights"
        )
    elif not sup.tmpfs:
        found.append("no size-limited tmpfs scratch dir here: a program can fill the disk of $TMPDIR")
    if not sup.ipc:
        found.append(
            "no IPC namespace here: generated code shares the host's SysV shared memory and semaphores"
        )
    if not sup.seccomp:
        found.append(
            "no seccomp filter here: generated code can connect to host unix sockets and use the keyring"
        )
    missing = [c for c in ("pids", "memory", "cpu") if c not in controller_roots()]
    if missing:
        found.append(
            f"no per-run {'/'.join(missing)} cgroup here (needs root and the controller): "
            + "; ".join(_CGROUP_COST[c] for c in missing)
        )
    for line in found:
        log.warning("sandbox: %s", line)
    return tuple(found)


def can_execute(path: str, who: RunAs) -> bool:
    """Could `who` (uid/gid, no supplementary groups) execute `path`? Checks every directory on the way."""
    path = os.path.realpath(path)
    parts = path.split(os.sep)
    for i in range(1, len(parts) + 1):
        p = os.sep.join(parts[:i]) or os.sep
        try:
            st = os.stat(p)
        except OSError:
            return False
        if st.st_uid == who.uid:
            bit = stat.S_IXUSR
        elif st.st_gid == who.gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def python_for(requested: str | None, who: RunAs | None) -> str:
    """The interpreter for sandboxed Python programs.

    `requested` (Limits.python) wins. Otherwise the one running codequant, unless the sandbox user cannot execute
    it (a venv under /root): then a system python of the same minor version (programs are compiled in the parent
    to tell syntax errors, so the version must match), which needs only its standard library.
    """
    if requested:
        return requested
    if who is None or can_execute(sys.executable, who):
        return sys.executable
    minor = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (f"/usr/bin/{minor}", f"/usr/local/bin/{minor}", "/usr/bin/python3"):
        real = os.path.realpath(candidate)
        if os.path.basename(real) == minor and can_execute(real, who):
            return real
    raise CodequantError(
        f"the sandbox user {who.name!r} cannot execute {sys.executable} and no system {minor} was found; "
        f"install {minor} (Debian: apt-get install {minor}) or set Limits(python=...)"
    )
