"""A pids cgroup per run, so a fork bomb is bounded within its own run.

RLIMIT_NPROC counts every process and thread of the sandbox *user*, across all parallel runs: while one program
fork-bombs up to the limit, an honest program started beside it fails to fork or even to exec (EAGAIN), and its
sample would be scored by another sample's behaviour. A cgroup with `pids.max` bounds each run separately;
where one can be made (root, with a pids controller: cgroup v1 `pids` hierarchy or v2 with `pids` delegated),
the launcher joins it before anything else and RLIMIT_NPROC is left off. The cgroup also gives a last sweep:
whatever is still in it after the run (no PID namespace, a setsid() escapee) is SIGKILLed before it is removed.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path

BASES = (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup"))  # v1 pids hierarchy, v2 unified hierarchy
_REMOVE_WITHIN_S = 2.0


def _pids_base(base: Path) -> bool:
    if not (base / "cgroup.procs").exists():
        return False
    if base.name == "pids":
        return True
    try:
        return "pids" in (base / "cgroup.controllers").read_text().split()
    except OSError:
        return False


@functools.cache
def pids_root() -> Path | None:
    """`<base>/codequant`, the parent of the per-run cgroups, or None where none can be made."""
    if os.geteuid() != 0:
        return None
    for base in BASES:
        if not _pids_base(base):
            continue
        root = base / "codequant"
        try:
            root.mkdir(exist_ok=True)
            if (root / "cgroup.subtree_control").exists():  # v2: children get the pids controller
                (root / "cgroup.subtree_control").write_text("+pids")
            probe = root / f"probe-{os.getpid()}"
            probe.mkdir(exist_ok=True)
            (probe / "pids.max").write_text("8")
            probe.rmdir()
            return root
        except OSError:
            continue
    return None


@contextlib.contextmanager
def run_cgroup(max_pids: int | None) -> Iterator[Path | None]:
    """A fresh cgroup with `pids.max = max_pids` for one run (None where unavailable); emptied and removed after."""
    root = pids_root()
    if root is None or max_pids is None:
        yield None
        return
    path = root / f"run-{os.getpid()}-{secrets.token_hex(6)}"
    try:
        path.mkdir()
        (path / "pids.max").write_text(str(int(max_pids)))
    except OSError:
        with contextlib.suppress(OSError):
            path.rmdir()
        yield None
        return
    try:
        yield path
    finally:
        remove(path)


def remove(path: Path) -> bool:
    """SIGKILL whatever is left in the cgroup and remove it; False if it would not empty in time."""
    end = time.monotonic() + _REMOVE_WITHIN_S
    while True:
        try:
            pids = [int(p) for p in (path / "cgroup.procs").read_text().split()]
        except OSError:
            pids = []
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        try:
            path.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError:
            if time.monotonic() > end:
                return False
            time.sleep(0.01)
