"""Where a published benchmark's records come from, and how they are read.

Order: the file the user gave (`--data`), else `$CODEQUANT_BENCHMARKS_DIR/<relative path>` (a folder laid out
like the project's shared benchmarks folder), else the same relative path under the default folder
`$CODEQUANT_CACHE/benchmarks` (`~/.cache/codequant/benchmarks`: put downloaded benchmark files there once, as
evalplus keeps its datasets in its cache), else the Hugging Face hub when the network is usable. Offline with
none of these, the error names `--data` and both folders: a fresh machine has no copy, and guessing a path
would hide it.
Files may be JSON (a list of records), JSONL(.gz) or parquet.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from codequant.benchmarks.sources.humaneval import read_jsonl
from codequant.cache import cache_root
from codequant.errors import CodequantError

BENCHMARKS_DIR_ENV = "CODEQUANT_BENCHMARKS_DIR"


def default_benchmarks_dir() -> Path:
    """The folder searched after $CODEQUANT_BENCHMARKS_DIR: `<cache root>/benchmarks` (not created)."""
    return cache_root() / "benchmarks"


def benchmark_folders() -> list[Path]:
    """Where a benchmark's relative path is looked up, in order."""
    folder = os.environ.get(BENCHMARKS_DIR_ENV)
    return ([Path(folder)] if folder else []) + [default_benchmarks_dir()]


def local_file(relative: str) -> Path | None:
    """The first existing `<folder>/<relative>` of `benchmark_folders()`."""
    return next((f / relative for f in benchmark_folders() if (f / relative).is_file()), None)


def read_records(path: Path) -> list[dict]:
    """Records of a JSON / JSONL(.gz) / parquet file."""
    if not path.is_file():
        raise CodequantError(f"benchmark file {path} does not exist")
    name = path.name.lower()
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    if name.endswith(".json"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise CodequantError(f"{path}: not valid JSON ({exc.msg})") from None
        if isinstance(data, dict):  # {"data": [...]} or {"task": {...}, ...}
            data = data.get("data", data.get("rows", list(data.values())))
        if not isinstance(data, list):
            raise CodequantError(f"{path}: expected a list of records")
        return [r.get("row", r) if isinstance(r, dict) else r for r in data]
    return read_jsonl(path)


def require_fields(path: Path | str, records: list[dict], fields: tuple[str, ...], fmt: str) -> None:
    if not records:
        raise CodequantError(f"{path} holds no problems")
    for rec in records:
        missing = [f for f in fields if f not in rec]
        if missing:
            raise CodequantError(
                f"{path}: a record lacks {', '.join(missing)}; a {fmt} file needs {', '.join(fields)}"
            )


def _offline() -> bool:
    """Offline by setting, or because the hub's host cannot be reached within a few seconds (one quick probe
    instead of the hub client's minute of retries)."""
    if any(
        os.environ.get(v, "").lower() in ("1", "true", "yes")
        for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    ):
        return True
    try:
        socket.create_connection(("huggingface.co", 443), timeout=3).close()
    except OSError:
        return True
    return False


def hub_file(repo: str, wanted: tuple[str, ...], what: str) -> Path:
    """Download the first file of dataset `repo` whose path contains every part of `wanted`."""
    hint = (
        f"pass --data FILE with a {what} file, or set {BENCHMARKS_DIR_ENV}, or put the file in "
        f"{default_benchmarks_dir()}"
    )
    if _offline():
        raise CodequantError(f"no {what} file given and the Hugging Face hub is offline; {hint}")
    try:
        from huggingface_hub import hf_hub_download, list_repo_files

        files = list_repo_files(repo, repo_type="dataset")
        match = sorted(
            f
            for f in files
            if all(w in f.lower() for w in wanted)
            and f.lower().endswith((".jsonl", ".jsonl.gz", ".json", ".parquet"))
        )
        if not match:
            raise CodequantError(f"the hub dataset {repo} has no file matching {'/'.join(wanted)}; {hint}")
        return Path(hf_hub_download(repo, match[0], repo_type="dataset"))
    except CodequantError:
        raise
    except Exception as exc:  # network down, hub refused, package missing: all mean "not reachable"
        raise CodequantError(
            f"cannot fetch {what} from the Hugging Face hub ({type(exc).__name__}); {hint}"
        ) from None


def resolve(data: Path | None, relative: str, repo: str, wanted: tuple[str, ...], what: str) -> Path:
    """The file to read: --data, else `relative` in the benchmark folders, else the hub."""
    if data is not None:
        return Path(data)
    return local_file(relative) or hub_file(repo, wanted, what)
