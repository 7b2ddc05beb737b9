"""Build (or check) the HumanEval-X Java program-repair set shipped in codequant/benchmarks/data/.

    python scripts/build_java_repair.py                      # rebuild the shipped file (all 164 problems)
    python scripts/build_java_repair.py --check              # rebuild in memory, compare with the shipped file
    python scripts/build_java_repair.py --check --tasks Java/0,Java/12   # only these problems
    python scripts/build_java_repair.py --out /tmp/set.jsonl.gz --workers 2 --data humaneval_java.jsonl.gz

HumanEval-X Java is read from --data, else $CODEQUANT_BENCHMARKS_DIR/humaneval-x/humaneval_java.jsonl.gz, else
the project's ../shared/benchmarks folder; the file written holds edits and ids only, no HumanEval-X text. The
build is deterministic (seeded per task and operator, gzip without a timestamp): rebuilding with the same
HumanEval-X file and JDK gives the same bytes. `--check` exits 1 when a row differs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

from codequant.benchmarks.build.java_repair import build_rows
from codequant.benchmarks.records import BENCHMARKS_DIR_ENV
from codequant.benchmarks.repair.java import DATA_FILE, read_rows
from codequant.benchmarks.repair.rows import write_or_check
from codequant.benchmarks.sources.humaneval_x import load_humaneval_x_java

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DATA_FILE, help=f"where to write (default {DATA_FILE})")
    ap.add_argument("--check", action="store_true", help="compare with --out instead of writing it")
    ap.add_argument(
        "--tasks", default=None, help="comma-separated HumanEval-X task ids, e.g. Java/0 (default: all)"
    )
    ap.add_argument("--workers", type=int, default=1, help="sandbox processes at once (default 1)")
    ap.add_argument(
        "--data", type=Path, default=None, help="the HumanEval-X Java file (humaneval_java.jsonl.gz)"
    )
    args = ap.parse_args(argv)

    if args.data is None and not os.environ.get(BENCHMARKS_DIR_ENV) and SHARED.is_dir():
        os.environ[BENCHMARKS_DIR_ENV] = str(SHARED)
    problems = load_humaneval_x_java(args.data)
    if args.tasks:
        wanted = set(args.tasks.split(","))
        problems = [p for p in problems if p.task_id in wanted]
    t0 = time.perf_counter()
    rows = build_rows(problems, workers=args.workers, progress=sys.stderr.isatty())
    print(
        f"{len(rows)} repair problems from {len(problems)} HumanEval-X Java problems in "
        f"{time.perf_counter() - t0:.1f} s; by operator: {dict(sorted(Counter(r['operator'] for r in rows).items()))}"
    )
    return write_or_check(rows, {p.task_id for p in problems}, args.out, args.check, read_rows)


if __name__ == "__main__":
    raise SystemExit(main())
