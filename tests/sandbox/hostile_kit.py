"""Helpers shared by the hostile-program suites (imported by name: tests/sandbox is on sys.path under pytest).

Leftovers are found by name: every hostile program first renames itself (prctl PR_SET_NAME, inherited by its
forks) to a per-test token, and processes it execs carry the token in argv; `pgrep` then sees them from the
host whatever PID namespace they are in.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from codequant.sandbox import Limits, Status, run_program

QUICK = Limits().with_timeout(1.5)


def prelude(token: str) -> str:
    return f"import ctypes\nctypes.CDLL(None).prctl(15, b'{token}', 0, 0, 0)\n"


def leftovers(token: str, within_s: float = 3.0) -> list[str]:
    """Processes still named or invoked with `token` (zombies count as gone), waiting up to `within_s`."""
    end = time.monotonic() + within_s
    while True:
        found = []
        for flag in ([], ["-f"]):
            out = subprocess.run(["pgrep", "-a", *flag, token], capture_output=True, text=True).stdout
            for line in out.splitlines():
                pid = line.split()[0]
                try:
                    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
                except OSError:
                    continue
                if state not in ("Z", "X"):
                    found.append(line)
        if not found or time.monotonic() > end:
            return found
        time.sleep(0.05)


def assert_runner_alive() -> None:
    r = run_program("python", "assert sum(range(4)) == 6\n", QUICK)
    assert r.status == Status.OK, r.stderr
