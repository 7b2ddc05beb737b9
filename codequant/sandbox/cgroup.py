"""Cgroups per run: pids (fork bombs), memory (all processes of the run together) and cpu (fairness).

RLIMIT_NPROC counts every process and thread of the sandbox *user*, across all parallel runs: while one program
fork-bombs up to the limit, an honest program started beside it fails to fork or even to exec (EAGAIN), and its
sample would be scored by another sample's behaviour. RLIMIT_AS is per process: three forked children of 1 GB
each all live, and a JVM's off-heap memory (`Unsafe.allocateMemory`) is outside `-Xmx`. So each run gets:

- `pids`: `pids.max = max_processes` for the run alone (RLIMIT_NPROC is then left off);
- `memory`: `memory_mb` for all its processes together (v1 `memory.limit_in_bytes` and, with swap accounting,
  `memory.memsw.limit_in_bytes`; v2 `memory.max` and `memory.swap.max = 0`); the kernel's OOM killer then
  kills inside the run only, and the run is reported as `memory`;
- `cpu`: its own group with the default weight (v1 `cpu.shares = 1024`, v2 `cpu.weight = 100`), so concurrent
  programs share the CPU run by run whatever the kernel's autogroup setting (a fork bomb of 100 processes gets
  the share of one run, not of 100 tasks). On cgroup v1 the run's cpu group sits at the top of the cpu
  hierarchy, beside the machine's other groups, so a run weighs what one session weighs under autogroup: a
  common parent would make all parallel runs together weigh one session on a loaded machine (measured: -16%
  programs/s with 2 workers at load 15). On v2 (one directory per run for every controller) the common parent
  `codequant` gets the weight of one run per CPU.

Each controller is taken from its cgroup v1 hierarchy (`/sys/fs/cgroup/<controller>`) or from the v2 unified
hierarchy (`/sys/fs/cgroup` with the controller in `cgroup.controllers`); one not available is left out (and
logged by `codequant.sandbox.isolation`). Only root can make them. The launcher joins every directory before
anything else; after the run, whatever is still in them is SIGKILLed before they are removed. Run directories
are named `run-<runner pid>-<random>`, so `sweep_stale` can remove those of runners that died (`kill -9`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import secrets
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

CGROUP_FS = Path("/sys/fs/cgroup")
CONTROLLERS = ("pids", "memory", "cpu")
_REMOVE_WITHIN_S = 2.0
_RUN_DIR = re.compile(
    r"^(?:codequant-)?run-(\d+)-[0-9a-f]+$"
)  # `codequant-run-*`: at a hierarchy's top level
MB = 1024 * 1024


def _v2_controllers(base: Path) -> set[str]:
    try:
        return set((base / "cgroup.controllers").read_text().split())
    except OSError:
        return set()


def _base_for(controller: str) -> Path | None:
    """The hierarchy holding `controller`: its v1 mount, else the v2 root when the controller is there."""
    v1 = CGROUP_FS / controller
    if (v1 / "cgroup.procs").exists() and not (v1 / "cgroup.controllers").exists():
        return v1
    if controller in _v2_controllers(CGROUP_FS):
        return CGROUP_FS
    return None


def _is_v2(root: Path) -> bool:
    return (root / "cgroup.controllers").exists()


def _probe(root: Path, controller: str) -> None:
    probe = root / f"codequant-probe-{os.getpid()}-{secrets.token_hex(3)}"
    probe.mkdir()
    try:
        for name, value in _settings(controller, _is_v2(root), 8, 64).items():
            if (probe / name).exists():
                (probe / name).write_text(value)
    finally:
        probe.rmdir()


@functools.cache
def controller_roots() -> dict[str, Path]:
    """controller -> `<hierarchy>/codequant`, the parent of the per-run cgroups (empty unless root)."""
    if os.geteuid() != 0:
        return {}
    found: dict[str, Path] = {}
    for controller in CONTROLLERS:
        base = _base_for(controller)
        if base is None:
            continue
        root = base if controller == "cpu" and base != CGROUP_FS else base / "codequant"
        try:
            root.mkdir(exist_ok=True)
            if base == CGROUP_FS:  # v2: the children get the controller
                (root / "cgroup.subtree_control").write_text(f"+{controller}")
                if (
                    controller == "cpu"
                ):  # all runs together: one run's weight per CPU (see the module docstring)
                    (root / "cpu.weight").write_text(str(100 * (os.cpu_count() or 1)))
            _probe(root, controller)
            found[controller] = root
        except OSError:
            continue
    return found


def pids_root() -> Path | None:
    """Where the per-run pids cgroups live, or None where none can be made."""
    return controller_roots().get("pids")


def _settings(controller: str, v2: bool, max_pids: int | None, memory_mb: int | None) -> dict[str, str]:
    """The files to write in a run's cgroup for `controller`, in order."""
    if controller == "pids":
        return {"pids.max": str(int(max_pids))} if max_pids is not None else {}
    if controller == "memory":
        if memory_mb is None:
            return {}
        limit = str(int(memory_mb) * MB)
        if v2:
            return {"memory.max": limit, "memory.swap.max": "0"}
        return {"memory.limit_in_bytes": limit, "memory.memsw.limit_in_bytes": limit}
    if controller == "cpu":
        return {"cpu.weight": "100"} if v2 else {"cpu.shares": "1024"}
    return {}


@dataclass
class RunCgroups:
    """The cgroup directories of one run (the launcher joins each); `memory` is where OOM kills are counted."""

    paths: list[Path] = field(default_factory=list)
    memory: Path | None = None
    pids: bool = False

    def oom_killed(self) -> bool:
        """Did the kernel's OOM killer kill a process of this run (its memory limit was hit)?"""
        if self.memory is None:
            return False
        for name in ("memory.events", "memory.oom_control"):  # v2, v1
            try:
                text = (self.memory / name).read_text()
            except OSError:
                continue
            m = re.search(r"^oom_kill (\d+)$", text, re.MULTILINE)
            return bool(m and int(m.group(1)) > 0)
        return False


@contextlib.contextmanager
def run_cgroups(max_pids: int | None, memory_mb: int | None, cpu: bool = True) -> Iterator[RunCgroups]:
    """Fresh cgroups for one run (those this machine allows; `cpu`: a cpu group of its own); emptied and removed
    afterwards."""
    groups = RunCgroups()
    name = f"run-{os.getpid()}-{secrets.token_hex(6)}"
    try:
        for controller, root in controller_roots().items():
            settings = _settings(controller, _is_v2(root), max_pids, memory_mb)
            if not settings or (controller == "cpu" and not cpu):
                continue
            path = root / (name if root.name == "codequant" else f"codequant-{name}")  # v1 cpu: top level
            try:
                path.mkdir(exist_ok=True)
                for file, value in settings.items():
                    if (path / file).exists():  # memsw / swap.max only with swap accounting
                        (path / file).write_text(value)
            except OSError:
                continue
            if path not in groups.paths:
                groups.paths.append(path)
            if controller == "memory":
                groups.memory = path
            if controller == "pids":
                groups.pids = True
        yield groups
    finally:
        for path in groups.paths:
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


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(roots: dict[str, Path] | None = None, owner: int | None = None) -> list[Path]:
    """Remove the run cgroups of runners that are gone (or, with `owner`, of that runner pid); returns them."""
    removed = []
    for root in (controller_roots() if roots is None else roots).values():
        try:
            entries = list(root.iterdir())
        except OSError:
            continue
        for path in entries:
            m = _RUN_DIR.match(path.name)
            if not m or not path.is_dir():
                continue
            pid = int(m.group(1))
            if (pid == owner) if owner is not None else not pid_alive(pid):
                if remove(path):
                    removed.append(path)
    return removed
