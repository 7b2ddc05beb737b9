"""Clean up after a runner that died: its sandboxes' cgroups (and their processes) and scratch dirs.

`PR_SET_PDEATHSIG` kills a sandbox's launcher, init and program when the runner dies, even by SIGKILL, but
nothing in the dead runner removes their scratch dirs and cgroups. One reaper per runner process does:
started (in its own session, so a signal to the runner's process group does not reach it) on the runner's first
sandboxed run, it blocks reading a pipe whose only write end the runner holds. End of file means the runner
is gone, exited or killed: the reaper then SIGKILLs what is left in the runner's `run-<pid>-*` cgroups, removes
them and the runner's `codequant-sbx-<pid>-*` scratch dirs, and exits.

Run as `python -I -S reaper.py CONFIG_JSON` with the pipe on stdin; standard library only (it imports the
sibling modules `scratch` and `cgroup` by path, not the codequant package).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def reap(runner: int, tmpdir: str, roots: dict[str, str]) -> None:
    """Remove what runner `runner` left: processes in its cgroups, the cgroups, its scratch dirs."""
    import cgroup
    import scratch

    time.sleep(0.05)  # let PDEATHSIG finish off the launchers first
    cgroup.sweep_stale({k: Path(v) for k, v in roots.items()}, owner=runner)
    scratch.sweep_stale(tmpdir, owner=runner)


def main() -> None:
    cfg = json.loads(sys.argv[1])
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    while os.read(0, 4096):  # nothing is ever written: this returns b"" when the runner is gone
        pass
    reap(int(cfg["runner"]), cfg["tmpdir"], cfg.get("cgroups", {}))


if __name__ == "__main__":
    main()
