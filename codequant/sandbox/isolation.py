"""What isolation this machine allows, detected once per process, and who runs the programs.

Namespaces need root or unprivileged user namespaces; containers often forbid both. Rather than fail, the
sandbox probes once (a throw-away child tries `unshare`) and uses what works; `codequant exec` and the bench
report it, so a user can see whether network isolation held on their machine.
"""

from __future__ import annotations

import functools
import json
import os
import pwd
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from codequant.errors import CodequantError

LAUNCHER = Path(__file__).with_name("launcher.py")
DEFAULT_USER = "codequant-sandbox"

# Must match launcher.py (kept literal there so the launcher imports nothing from codequant).
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000


@dataclass(frozen=True)
class Support:
    net: bool  # a fresh network namespace (no interfaces but a down loopback): no network at all
    pid: bool  # a fresh PID namespace: everything the program starts dies with it
    user: bool  # namespaces need a user namespace too (not root)


@functools.cache
def namespace_support() -> Support:
    """Probe once; any failure of the probe itself means no namespaces."""
    try:
        out = subprocess.run(
            [sys.executable, "-I", "-S", str(LAUNCHER), "--probe"],
            capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL,
        )
        found = json.loads(out.stdout)
        return Support(bool(found["net"]), bool(found["pid"]), bool(found["user"]))
    except (OSError, subprocess.SubprocessError, ValueError, KeyError):
        return Support(False, False, False)


def unshare_flags(isolate_network: bool, isolate_pids: bool) -> int:
    """The `unshare` flags for a run, restricted to what the machine supports."""
    sup = namespace_support()
    flags = (CLONE_NEWNET if isolate_network and sup.net else 0) | (CLONE_NEWPID if isolate_pids and sup.pid else 0)
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
            raise CodequantError(f"sandbox user {name!r} does not exist; create it (useradd -r {name})") from None
        return None
    if entry.pw_uid == os.geteuid():
        return None
    if os.geteuid() != 0:
        if explicit:
            raise CodequantError(f"running programs as {name!r} needs root; run codequant as root or drop the user")
        return None
    return RunAs(name, entry.pw_uid, entry.pw_gid)
