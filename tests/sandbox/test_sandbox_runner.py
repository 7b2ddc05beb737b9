"""Dispatch by language and the parallel runner."""

from __future__ import annotations

import pytest

from codequant.errors import CodequantError
from codequant.sandbox import Limits, Status, run_program, run_programs


def test_run_program_dispatches_python():
    r = run_program("python", "print('hi')\n", Limits(wall_timeout_s=5))
    assert (r.status, r.stdout) == (Status.OK, "hi\n")


def test_unknown_language_is_a_user_error():
    with pytest.raises(CodequantError, match="no sandbox for language 'cobol'"):
        run_program("cobol", "DISPLAY 'HI'.")


def test_parallel_runner_preserves_order():
    # Later items finish first, so completion order is the reverse of input order.
    n = 6
    items = [
        ("python", f"import time\ntime.sleep({(n - i) * 0.08})\nprint({i})\nassert {i} % 3 != 2\n")
        for i in range(n)
    ]
    results = run_programs(items, Limits(wall_timeout_s=10), workers=3, progress=False)
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(n)]
    assert [r.status for r in results] == [Status.ASSERTION if i % 3 == 2 else Status.OK for i in range(n)]


def test_unknown_language_fails_before_anything_runs():
    with pytest.raises(CodequantError):
        run_programs([("python", "print(1)\n"), ("rust", "fn main() {}")], progress=False)


def test_limits_validation():
    with pytest.raises(CodequantError):
        Limits(wall_timeout_s=0)
    with pytest.raises(CodequantError):
        Limits(address_space_mb=-1)
    lim = Limits().with_timeout(2.5)
    assert (lim.wall_timeout_s, lim.cpu_s) == (2.5, 3)
    assert lim.rlimits()["RLIMIT_CPU"] == (3, 4)
    assert "RLIMIT_AS" not in Limits(address_space_mb=None).rlimits()
