"""How often each failure class occurs in a run: the class of every completion of an `evaluate` output folder,
and the counts per class (zeros included). Whether a class grows between versions is a statistical question,
answered in `codequant.stats.growth`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from codequant.errors import CodequantError
from codequant.failures.assign import classify
from codequant.failures.classes import CLASSES

Failures = dict[str, dict[int, str | None]]  # task -> sample -> class (None: passed)


def run_failures(records: Iterable[Mapping[str, Any]]) -> Failures:
    """Class of every completion of a run (its samples.jsonl records); None for the passed ones."""
    out: Failures = {}
    for r in records:
        if r.get("status") is None:
            continue  # not executed yet
        found = classify(r)
        out.setdefault(str(r["task_id"]), {})[int(r["sample_index"])] = str(found.failure) if found else None
    return out


def read_failures(run_dir: str | Path) -> Failures:
    path = Path(run_dir) / "samples.jsonl"
    if not path.is_file():
        raise CodequantError(f"{run_dir} has no samples.jsonl; is it a `codequant evaluate` output folder?")
    with open(path, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    if rows and all(r.get("status") == "scored" for r in rows):
        raise CodequantError(
            f"{run_dir} is scored by text (code summarization): nothing was executed, so there are "
            "no failures to classify; its scores are in samples.jsonl (bleu, rouge_l)"
        )
    return run_failures(rows)


def counts(failures: Failures) -> dict[str, int]:
    """{"completions", "passed", "failed", and one count per class (zeros included)}."""
    flat = [c for samples in failures.values() for c in samples.values()]
    tally = Counter(c for c in flat if c is not None)
    return {
        "completions": len(flat),
        "passed": sum(c is None for c in flat),
        "failed": sum(tally.values()),
        **{c: tally.get(c, 0) for c in CLASSES},
    }
