"""pass@1 of model versions against their fp baseline on executed benchmarks, as one bench result.

Reads finished `codequant evaluate` run folders (one fp baseline and any quantized versions per benchmark) and
writes what docs/aqlm.md's pass@1 table shows: each run's pass@1, statuses, failure classes, tokens and stop
reasons, the problems it solved, and the paired test against the baseline (`codequant.stats.compare_runs`: exact
McNemar with one completion per problem, BH within each benchmark), plus each version's bits from its model folder.

    python bench/pass_at_1.py --bench humaneval fp=runs/eval/fp-humaneval q2=runs/eval/q2-humaneval ... \
        --bench multipl-e-java fp=... q2=... --model q2=runs/q2-ft --out bench/results/pass_at_1_smollm2_aqlm.json

The first LABEL=RUN after each --bench is that benchmark's baseline.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, NoReturn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from provenance import commit, write_result  # noqa: E402

from codequant.stats.compare import compare_runs  # noqa: E402
from codequant.stats.runs import read_run  # noqa: E402

SUMMARY_KEYS = (
    "problems",
    "completions",
    "passed",
    "pass@1",
    "status_counts",
    "failure_counts",
    "stop_reasons",
    "new_tokens",
    "mean_new_tokens",
    "sum_gen_seconds",
)


def parse_groups(argv: list[str]) -> dict[str, list[tuple[str, Path]]]:
    """`--bench NAME LABEL=RUN ...` groups, in order; the first run of each group is its baseline."""
    groups: dict[str, list[tuple[str, Path]]] = {}
    tokens = iter(argv)
    current = None
    for token in tokens:
        if token == "--bench":
            current = next(tokens, None) or _fail("--bench needs a benchmark name")
            groups.setdefault(current, [])
        elif current is None or "=" not in token:
            _fail(f"expected --bench NAME then LABEL=RUN, got {token!r}")
        else:
            label, run = token.split("=", 1)
            groups[current].append((label, Path(run)))
    return groups


def _fail(message: str) -> NoReturn:
    raise SystemExit(f"pass_at_1.py: {message}")


def run_row(label: str, path: Path) -> dict[str, Any]:
    summary = json.loads((path / "summary.json").read_text())
    run = read_run(path, label=label)
    solved = sorted(task for task, samples in run.outcomes.items() if any(samples.values()))
    with open(path / "samples.jsonl") as lines:
        outputs = [json.loads(line).get("raw_output") or "" for line in lines if line.strip()]
    return {
        "label": label,
        "run": str(path),
        "model": run.model,
        "config": json.loads((path / "config.json").read_text()),
        **{k: summary.get(k) for k in SUMMARY_KEYS},
        "empty_completions": sum(not text.strip() for text in outputs),  # the model stopped at once
        "solved": solved,
    }


def model_bits(folder: Path) -> dict[str, Any]:
    """Linear and whole-file bits/weight of a `quantize`/`finetune` output folder (its codequant.json)."""
    info = json.loads((folder / "codequant.json").read_text())
    return {
        "folder": str(folder),
        "linear_bits_per_weight": info["accounting"]["formula_bits_per_param"],
        "whole_file_bits_per_weight": (info.get("whole_file") or {}).get("bits_per_weight"),
        "config": info.get("config"),
    }


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", action="append", default=[], help="LABEL=FOLDER: the version's model folder"
    )
    parser.add_argument("--out", type=Path, help="write the result JSON here too")
    parser.add_argument("--note", default="", help="free text kept in the result (machine load, splits)")
    args, rest = parser.parse_known_args()
    groups = parse_groups(rest)
    if not groups or any(len(runs) < 2 for runs in groups.values()):
        _fail("give at least one --bench NAME BASE=RUN OTHER=RUN")
    result: dict[str, Any] = {
        "bench": "pass_at_1",
        "measured": {"date": time.strftime("%Y-%m-%d"), "commit": commit()},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "note": args.note,
        "models": {label: model_bits(Path(f)) for label, f in (m.split("=", 1) for m in args.model)},
        "benchmarks": {},
    }
    for bench, runs in groups.items():
        rows = [run_row(label, path) for label, path in runs]
        paths = [path for _, path in runs]
        comparisons = compare_runs(paths[0], paths[1:])
        result["benchmarks"][bench] = {
            "runs": rows,
            "comparisons": [
                {k: _finite(v) for k, v in asdict(c).items()} | {"other_label": label}
                for c, (label, _) in zip(comparisons, runs[1:], strict=True)
            ],
        }
        for row in rows:
            print(f"{bench:16} {row['label']:8} {row['passed']}/{row['problems']} pass@1 {row['pass@1']:.3f}")
        for c in comparisons:
            print(
                f"{bench:16} {c.other:>30} vs base: b={c.b} c={c.c} p={c.p_value:.3g} (BH {c.p_adjusted:.3g})"
            )
    print(json.dumps(result, indent=2))
    write_result(result, args.out)


if __name__ == "__main__":
    main()
