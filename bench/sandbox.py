"""Sandbox throughput: HumanEval canonical solutions per second, serial and parallel.

Each program is prompt + canonical_solution + test + `check(entry_point)`, i.e. exactly what an evaluation
runs for a perfect model, so the figure is the harness overhead an evaluation pays per sample. Every program
must pass: a failure here is a harness bug, and the script exits 1.

    .venv/bin/python bench/sandbox.py [--limit N] [--workers W] [--java-data humaneval_java.jsonl.gz] [--rounds R]

With --java-data (a HumanEval-X Java file), the same figure for Java programs (javac + JVM per program) is added
under "java", measured with the parallel workers only.

"layers" measures, in the same run, what the second round of isolation costs: every program with all limits
(`Limits()`: IPC namespace, seccomp, memory and cpu cgroups per run, tmpfs scratch quota) against the same
programs with those layers off (the first round's sandbox), R rounds in ABBA order so that a load that drifts
during the run hits both alike; `cost` is 1 - (programs/s with) / (programs/s without), from the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections import Counter

from codequant.benchmarks.programs.python import build_python_program
from codequant.benchmarks.sources.humaneval import load_humaneval
from codequant.sandbox import Limits, run_programs
from codequant.sandbox.cgroup import controller_roots
from codequant.sandbox.isolation import namespace_support

ROUND_ONE = Limits(isolate_ipc=False, memory_mb=None, disk_mb=None, seccomp=False, isolate_cpu=False)


def _measure(
    programs: list[str], workers: int, language: str = "python", limits: Limits | None = None
) -> dict:
    t0 = time.perf_counter()
    results = run_programs(
        [(language, p) for p in programs], limits or Limits(), workers=workers, progress=False
    )
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
    ap.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="parallel workers (default: cpu count)"
    )
    ap.add_argument("--java-data", default=None, help="HumanEval-X Java file: also measure Java programs")
    ap.add_argument(
        "--rounds", type=int, default=3, help="alternating rounds per variant for the layers' cost"
    )
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
            "ipc_namespace": sup.ipc,
            "seccomp": sup.seccomp,
            "tmpfs_scratch": sup.tmpfs,
            "cgroups": sorted(controller_roots()),
        },
        "serial": _measure(programs, 1),
        "parallel": _measure(programs, args.workers),
    }
    for run in ("serial", "parallel"):
        report[run]["failed"] = [problems[i].task_id for i in report[run]["failed"]]
    report["layers"] = _layers_cost(programs, args.workers, args.rounds)
    runs = ["serial", "parallel"]
    if args.java_data:
        from codequant.benchmarks.programs.java import build_java_program
        from codequant.benchmarks.sources.humaneval_x import load_humaneval_x_java

        java = load_humaneval_x_java(args.java_data)[: args.limit]
        report["java"] = _measure(
            [build_java_program(p, p.canonical_solution or "") for p in java], args.workers, "java"
        )
        report["java"]["failed"] = [java[i].task_id for i in report["java"]["failed"]]
        runs.append("java")
    print(json.dumps(report, indent=2))
    return 0 if not any(report[r]["failed"] for r in runs) and not report["layers"]["failed"] else 1


def _layers_cost(programs: list[str], workers: int, rounds: int) -> dict:
    """programs/s with every limit (`Limits()`) and with the second round's layers off, alternating rounds."""
    rates: dict[str, dict[str, list[float]]] = {
        "with": {"serial": [], "parallel": []},
        "without": {"serial": [], "parallel": []},
    }
    failed = 0
    variants = [("with", Limits()), ("without", ROUND_ONE)]
    for r in range(rounds):  # ABBA order: a load that drifts during the run does not favour either variant
        for name, limits in variants if r % 2 == 0 else variants[::-1]:
            for mode, w in (("serial", 1), ("parallel", workers)):
                m = _measure(programs, w, limits=limits)
                rates[name][mode].append(m["programs_per_s"])
                failed += len(m["failed"])
    out: dict = {"rounds": rates, "failed": failed}
    for mode in ("serial", "parallel"):
        with_, without = statistics.median(rates["with"][mode]), statistics.median(rates["without"][mode])
        out[mode] = {
            "with_programs_per_s": with_,
            "without_programs_per_s": without,
            "cost": round(1 - with_ / without, 3),
        }
    return out


if __name__ == "__main__":
    sys.exit(main())
