"""Where paired outcomes come from: an `evaluate` run folder, or a per-completion CSV like the study's.

A run folder holds samples.jsonl (one JSON line per completion with task_id, sample_index, passed) and
summary.json (config, scope). Only the completions in the summary's scope (sample_index < scope.samples) are read,
so the statistics describe the same completions as the run's reported pass@1. A text task's run (code
summarization: rows with `status` "scored", `passed` null) has no outcomes; its per-sample metrics (`bleu`,
`rouge_l`) are read into `Run.scores` instead, for the Wilcoxon signed-rank test (codequant.stats.scores).

The CSV format is the study's replication package's: columns model, quantization, language, problem, pass. How
a row finds its partner in another quantization (the pairing key, reported as `OutcomeTable.pairing_key`):

- with a `sample` column (or `sample_index`): by (model, language, problem, sample), whatever the row order;
  a sample given twice is an error naming the first offending keys;
- without one (the study's files): by order, the i-th row of a (model, quantization, language, problem) is
  completion i. Re-sorting the file by another column is harmless as long as the order within each problem
  is kept (a stable sort); shuffling it is not, and nothing in such a file could tell.

A pass value must say pass or fail: 1/0, true/false, yes/no, pass/fail (any case), or the numbers 1.0/0.0.
Empty cells, "nan", "NA" and any other number are errors naming the row, never a silent fail or pass: an
unexecuted completion is not a failed one, and deciding what it is belongs to whoever made the file.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from codequant.errors import CodequantError
from codequant.metrics.text import METRICS as TEXT_METRICS  # stdlib-only at import: no sacrebleu loaded

TEXT_STATUS = (
    "scored"  # codequant.evaluation.text_task.STATUS (kept here so that stats need no evaluation import)
)
CSV_COLUMNS = ("model", "quantization", "language", "problem", "pass")
SAMPLE_COLUMNS = ("sample", "sample_index")  # the first one present numbers the completions
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
    scores: dict[str, dict[str, dict[int, float]]] = field(
        default_factory=dict
    )  # {metric: {task: {i: value}}}

    @property
    def scored(self) -> bool:
        """True for a text task's run (scores, no pass/fail)."""
        return bool(self.scores)

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
        raise CodequantError(
            f"{p} is not an evaluate run (no samples.jsonl); create one with `codequant evaluate "
            "MODEL --benchmark NAME --out DIR`"
        )
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
    scores: dict[str, dict[str, dict[int, float]]] = {}
    seen: set[tuple[str, int]] = set()
    for no, row in enumerate(_read_jsonl(samples_path), 1):
        missing = [k for k in ("task_id", "sample_index", "passed") if k not in row]
        if missing:
            raise CodequantError(
                f"{samples_path} row {no} lacks {', '.join(missing)}; is it an evaluate output?"
            )
        task, index = str(row["task_id"]), int(row["sample_index"])
        if scope is not None and index >= int(scope):
            continue
        if (task, index) in seen:
            raise CodequantError(
                f"{samples_path} holds completion {index} of {task} twice; the run is damaged"
            )
        seen.add((task, index))
        if row.get("status") == TEXT_STATUS:
            for metric in TEXT_METRICS:
                scores.setdefault(metric, {}).setdefault(task, {})[index] = float(row[metric])
        elif row["passed"] is None:
            raise CodequantError(
                f"{samples_path} row {no} has neither an outcome nor text scores; the run is damaged"
            )
        else:
            outcomes.setdefault(task, {})[index] = bool(row["passed"])
        if row.get("language"):
            languages.add(str(row["language"]))
    if not outcomes and not scores:
        raise CodequantError(f"{samples_path} holds no completions; run (or resume) the evaluation first")
    if outcomes and scores:
        raise CodequantError(f"{samples_path} mixes executed and text-scored completions; the run is damaged")
    config = summary.get("config") or {}
    return Run(
        label=label or folder.name,
        path=folder,
        outcomes=outcomes,
        model=config.get("model"),
        benchmark=config.get("benchmark"),
        languages=sorted(languages),
        summary=summary,
        scores=scores,
    )


def _as_bool(value: str | None, where: str) -> bool:
    v = (value or "").strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    try:
        number = float(v)
    except ValueError:
        number = None
    if number == 1.0:
        return True
    if number == 0.0:
        return False
    raise CodequantError(
        f"{where}: pass value {value!r} is neither pass nor fail (use 1/0 or true/false); "
        "an empty, nan or unexecuted completion must be fixed or removed from the file"
    )


@dataclass
class OutcomeTable:
    """A per-completion CSV read into `{(model, quantization, language): {problem: {i: passed}}}`.

    `pairing_key` says how completions are matched across quantizations: "sample" or "sample_index" (the
    column that numbers them) or "order" (the i-th row of a problem is completion i).
    """

    groups: dict[tuple[str, str, str], dict[str, dict[int, bool]]]
    pairing_key: str


def _examples(keys: list) -> str:
    head = "; ".join("/".join(map(str, k)) for k in keys[:3])
    return head + (f" (and {len(keys) - 3} more)" if len(keys) > 3 else "")


def read_outcome_table(path: str | Path) -> OutcomeTable:
    """Read a per-completion CSV; pairs by its `sample` (or `sample_index`) column when it has one, else by order."""
    p = Path(path)
    if not p.is_file():
        raise CodequantError(f"no such CSV file: {p}")
    groups: dict[tuple[str, str, str], dict[str, dict[int, bool]]] = {}
    duplicates: list[tuple] = []
    with open(p, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        absent = [c for c in CSV_COLUMNS if c not in fields]
        if absent:
            raise CodequantError(
                f"{p} lacks the column(s) {', '.join(absent)}; expected {', '.join(CSV_COLUMNS)}"
            )
        key_col = next((c for c in SAMPLE_COLUMNS if c in fields), None)
        for no, row in enumerate(reader, 2):
            key = (row["model"], row["quantization"], row["language"])
            per_task = groups.setdefault(key, {}).setdefault(row["problem"], {})
            passed = _as_bool(row["pass"], f"{p}:{no}")
            if key_col is None:
                per_task[len(per_task)] = passed
                continue
            raw = (row[key_col] or "").strip()
            try:
                index = int(raw)
            except ValueError:
                raise CodequantError(f"{p}:{no}: {key_col} {raw!r} is not an integer") from None
            if index in per_task:
                duplicates.append((*key, row["problem"], index))
            per_task[index] = passed
    if duplicates:
        raise CodequantError(
            f"{p} holds {len(duplicates)} completion(s) twice (model/quantization/language/"
            f"problem/{key_col}): {_examples(duplicates)}; each sample must appear once"
        )
    if not groups:
        raise CodequantError(f"{p} has no rows")
    return OutcomeTable(groups=groups, pairing_key=key_col or "order")


def read_outcome_csv(path: str | Path) -> dict[tuple[str, str, str], dict[str, dict[int, bool]]]:
    """`{(model, quantization, language): {problem: {i: passed}}}` from a per-completion CSV (see the module)."""
    return read_outcome_table(path).groups
