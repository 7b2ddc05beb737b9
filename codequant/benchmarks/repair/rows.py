"""The shipped repair sets' files (`data/humaneval_repair_v*.jsonl.gz`, `data/humaneval_java_repair_v*.jsonl.gz`):
reading them with a clear error, writing them byte-reproducibly, and the build scripts' write-or-check ending."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Sequence
from pathlib import Path

from codequant.benchmarks.sources.humaneval import read_jsonl
from codequant.errors import CodequantError


def write_rows(path: Path, rows: list[dict]) -> None:
    """JSONL.gz with a fixed gzip header (mtime 0, no name): the same rows give the same bytes."""
    text = "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0))


def read_rows(path: Path, fields: Sequence[str], what: str, script: str) -> list[dict]:
    """The rows of `path`, each checked for `fields`; `what` and `script` name the set and its build in errors."""
    if not path.is_file():
        raise CodequantError(f"{what} {path} does not exist; build it with {script}")
    rows = read_jsonl(path)
    for r in rows:
        missing = [f for f in fields if f not in r]
        if missing:
            raise CodequantError(f"{path}: row {r.get('task_id', '?')!r} lacks {', '.join(missing)}")
    return rows


def write_or_check(
    rows: list[dict], source_ids: set[str], out: Path, check: bool, read: Callable[[Path], list[dict]]
) -> int:
    """The build scripts' ending: write `rows` to `out`, or (`check`) compare them with the rows `out` holds for
    the same source tasks. Returns the exit status (1: they differ)."""
    if not check:
        write_rows(out, rows)
        print(f"wrote {out}")
        return 0
    shipped = [r for r in read(out) if r["source_task_id"] in source_ids]
    if shipped != rows:
        diff = sorted({r["task_id"] for r in rows} ^ {r["task_id"] for r in shipped}) or "row contents"
        print(f"DIFFERENT from {out}: {diff}")
        return 1
    print(f"identical to {out} ({len(rows)} rows)")
    return 0
