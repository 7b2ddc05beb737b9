"""Sandbox throughput: HumanEval canonical solutions per second, serial and parallel.

Each program is prompt + canonical_solution + test + `check(entry_point)`, i.e. exactly what an evaluation
runs for a perfect model, so the figure is the harness overhead an evaluation pays per sample. Every program
must pass: a failure here is a harness bug, and the script exits 1.

    .venv/bin/python bench/sandbox.py [--limit N] [--workers W] [--java-data humaneval_java.jsonl.gz]

With --java-data (a HumanEval-X Java file), the same figure for Java programs (javac + JVM per program) is added
under "java", measured with the parallel workers only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import Counter

from codequant.benchmarks.humaneval import load_humaneval
from codequant.benchmarks.python_program import build_python_program
from codequant.sandbox import Limits, run_programs
from codequant.sandbox.isolation import namespace_support


def _measure(programs: list[str], workers: int, language: str = "python") -> dict:
    t0 = time.perf_counter()
    results = run_programs([(language, p) for p in programs], Limits(), workers=workers, progress=False)
    elapsed = time.perf_counter() - t0
    durations = sorted(r.duration_s for r in results)
    return {
        "workers": workers,
        "programs": len(programs),
        "seconds": round(elapsed, 3),
        "programs_per_s": round(len(programs) / elapsed, 2),
        "median_program_s": round(durations[len(durations) // 2], 4),
        "statuses": dict(Counter(str(r.status) for r in results)),
        "failed": [i for i, r in enumerate(results) if not r.passed],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="first N problems only")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel workers (default: cpu count)")
    ap.add_argument("--java-data", default=None, help="HumanEval-X Java file: also measure Java programs")
    args = ap.parse_args()
    problems = load_humaneval()[: args.limit]
    programs = [build_python_program(p, p.canonical_solution or "") for p in problems]
    sup = namespace_support()
    report = {
        "benchmark": "humaneval canonical solutions (python)",
        "machine": {
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "cpu_count": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "network_namespace": sup.net,
            "pid_namespace": sup.pid,
        },
        "serial": _measure(programs, 1),
        "parallel": _measure(programs, args.workers),
    }
    for run in ("serial", "parallel"):
        report[run]["failed"] = [problems[i].task_id for i in report[run]["failed"]]
    runs = ["serial", "parallel"]
    if args.java_data:
        from codequant.benchmarks.humaneval_x import load_humaneval_x_java
        from codequant.benchmarks.java_program import build_java_program

        java = load_humaneval_x_java(args.java_data)[: args.limit]
        report["java"] = _measure([build_java_program(p, p.canonical_solution or "") for p in java], args.workers,
                                  "java")
        report["java"]["failed"] = [java[i].task_id for i in report["java"]["failed"]]
        runs.append("java")
    print(json.dumps(report, indent=2))
    return 0 if not any(report[r]["failed"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
