"""Where paired outcomes come from: an `evaluate` run folder, or a per-completion CSV like the study's.

A run folder holds samples.jsonl (one JSON line per completion with task_id, sample_index, passed) and
summary.json (config, scope). Only the completions in the summary's scope (sample_index < scope.samples) are read,
so the statistics describe the same completions as the run's reported pass@1.

The CSV format is the study's replication package's: columns model, quantization, language, problem, pass; the
rows of one (model, quantization, language, problem) are its completions in order, so the i-th row is
completion i.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from codequant.errors import CodequantError

CSV_COLUMNS = ("model", "quantization", "language", "problem", "pass")
_TRUE = {"1", "true", "t", "yes", "pass", "passed"}
_FALSE = {"0", "false", "f", "no", "fail", "failed"}


@dataclass
class Run:
    """One run's outcomes `{task_id: {sample_index: passed}}` and what it says about itself."""

    label: str
    path: Path
    outcomes: dict[str, dict[int, bool]]
    model: str | None = None
    benchmark: str | None = None
    languages: list[str] = field(default_factory=list)
    summary: dict = field(default_factory=dict)

    @property
    def n_completions(self) -> int:
        return sum(len(s) for s in self.outcomes.values())

    @property
    def pass_rate(self) -> float:
        n = self.n_completions
        return sum(sum(s.values()) for s in self.outcomes.values()) / n if n else float("nan")


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError as exc:
            if no == len(lines) and not line.endswith("\n"):
                break  # an interrupted append: the evaluate runner redoes that completion on resume
            raise CodequantError(f"{path}:{no} is not valid JSON ({exc}); the run file is damaged") from None
    return rows


def read_run(path: str | Path, label: str | None = None) -> Run:
    """Read an evaluate run folder (or its samples.jsonl directly)."""
    p = Path(path)
    samples_path = p if p.is_file() else p / "samples.jsonl"
    folder = samples_path.parent
    if not samples_path.is_file():
        raise CodequantError(f"{p} is not an evaluate run (no samples.jsonl); create one with `codequant evaluate "
                             "MODEL BENCHMARK --out DIR`")
    summary: dict = {}
    summary_path = folder / "summary.json"
    if summary_path.is_file():
        try:
            summary = json.loads(summary_path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise CodequantError(f"{summary_path} is not valid JSON ({exc})") from None
    scope = (summary.get("scope") or {}).get("samples")
    outcomes: dict[str, dict[int, bool]] = {}
    languages: set[str] = set()
    for no, row in enumerate(_read_jsonl(samples_path), 1):
        missing = [k for k in ("task_id", "sample_index", "passed") if k not in row]
        if missing:
            raise CodequantError(f"{samples_path} row {no} lacks {', '.join(missing)}; is it an evaluate output?")
        task, index = str(row["task_id"]), int(row["sample_index"])
        if scope is not None and index >= int(scope):
            continue
        per_task = outcomes.setdefault(task, {})
        if index in per_task:
            raise CodequantError(f"{samples_path} holds completion {index} of {task} twice; the run is damaged")
        per_task[index] = bool(row["passed"])
        if row.get("language"):
            languages.add(str(row["language"]))
    if not outcomes:
        raise CodequantError(f"{samples_path} holds no completions; run (or resume) the evaluation first")
    config = summary.get("config") or {}
    return Run(label=label or folder.name, path=folder, outcomes=outcomes, model=config.get("model"),
               benchmark=config.get("benchmark"), languages=sorted(languages), summary=summary)


def _as_bool(value: str, where: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    try:
        return float(v) != 0.0
    except ValueError:
        raise CodequantError(f"{where}: pass value {value!r} is not 0/1 or true/false") from None


def read_outcome_csv(path: str | Path) -> dict[tuple[str, str, str], dict[str, dict[int, bool]]]:
    """`{(model, quantization, language): {problem: {i: passed}}}` from a per-completion CSV."""
    p = Path(path)
    if not p.is_file():
        raise CodequantError(f"no such CSV file: {p}")
    groups: dict[tuple[str, str, str], dict[str, dict[int, bool]]] = {}
    with open(p, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        absent = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if absent:
            raise CodequantError(f"{p} lacks the column(s) {', '.join(absent)}; expected {', '.join(CSV_COLUMNS)}")
        for no, row in enumerate(reader, 2):
            key = (row["model"], row["quantization"], row["language"])
            per_task = groups.setdefault(key, {}).setdefault(row["problem"], {})
            per_task[len(per_task)] = _as_bool(row["pass"], f"{p}:{no}")
    if not groups:
        raise CodequantError(f"{p} has no rows")
    return groups
