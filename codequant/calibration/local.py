"""User sources: a folder, a text/code file, a JSONL or a parquet file.

Folders: `.py` and `.java` files are code, grouped into one unit per top-level sub-folder (a checkout of several
repositories gives one unit per repository); `.txt`, `.md`, `.rst` files are natural language, one unit each.
JSONL/parquet records: the text is the first string field among text/content/code/body; the language comes from a
language/lang field or the extension of a path field (RedPajama github puts both in `meta`); records of one
repository (repo_name/repo/max_stars_repo_name) form one unit; records without a code language are natural language.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from codequant.calibration.units import Category, Document, Unit
from codequant.errors import CodequantError

CODE_EXT = {".py": "python", ".java": "java"}
TEXT_EXT = {".txt", ".md", ".rst", ".text"}
TEXT_FIELDS = ("text", "content", "code", "body")
REPO_FIELDS = ("repo_name", "repo", "max_stars_repo_name", "repository")
PATH_FIELDS = ("path", "max_stars_repo_path", "file_path", "filename")


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def _fields(record: dict[str, Any]) -> dict[str, Any]:
    meta = record.get("meta")
    if isinstance(meta, str):
        try:
            meta = json.loads(meta)
        except ValueError:
            meta = None
    return {**(meta if isinstance(meta, dict) else {}), **record}


def record_language(record: dict[str, Any]) -> Category:
    """python/java for code records, general for everything else."""
    f = _fields(record)
    lang = str(f.get("language") or f.get("lang") or "").lower()
    if lang in ("python", "java"):
        return lang  # type: ignore[return-value]
    for key in PATH_FIELDS:
        if isinstance(f.get(key), str):
            ext = Path(f[key]).suffix.lower()
            if ext in CODE_EXT:
                return CODE_EXT[ext]  # type: ignore[return-value]
    return "general"


def record_text(record: dict[str, Any]) -> str | None:
    for key in TEXT_FIELDS:
        if isinstance(record.get(key), str):
            return record[key]
    return None


def records_to_units(
    source: str, records: Iterable[dict[str, Any]], *, category: Category | None = None, topic: str = ""
) -> list[Unit]:
    """Group records into units: code by repository, natural language one record per unit."""
    groups: dict[tuple[str, str], list[Document]] = {}
    for i, record in enumerate(records):
        text = record_text(record)
        if not text:
            continue
        f = _fields(record)
        cat = category or record_language(record)
        repo = next((str(f[k]) for k in REPO_FIELDS if f.get(k)), None)
        name = next((str(f[k]) for k in PATH_FIELDS if isinstance(f.get(k), str)), f"record{i}")
        unit = repo if (repo and cat in CODE_EXT.values()) else f"record{i}"
        doc = Document(
            source,
            unit,
            f"{name}#{i}" if not name.startswith("record") else name,
            functools.partial(str, text),
        )
        groups.setdefault((cat, unit), []).append(doc)
    return [
        Unit(source, unit, cat, functools.partial(list, docs), topic=topic)  # type: ignore[arg-type]
        for (cat, unit), docs in groups.items()
    ]


def _jsonl_records(path: Path) -> list[dict[str, Any]]:
    records = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except ValueError as exc:
                    raise CodequantError(
                        f"{path}:{lineno} is not JSON ({exc}); give one JSON object per line"
                    ) from exc
    return records


def _parquet_records(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def _file_unit(source: str, path: Path, unit: str, category: Category) -> Unit:
    doc = Document(source, unit, path.name, functools.partial(_read, path))
    return Unit(source, unit, category, functools.partial(lambda d: [d], doc))


def _folder_units(source: str, root: Path) -> list[Unit]:
    code: dict[tuple[str, str], list[Document]] = {}
    units: list[Unit] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        ext = path.suffix.lower()
        if ext in CODE_EXT:
            unit = rel.parts[0] if len(rel.parts) > 1 else str(rel)
            code.setdefault((CODE_EXT[ext], unit), []).append(
                Document(source, unit, str(rel), functools.partial(_read, path))
            )
        elif ext in TEXT_EXT:
            units.append(_file_unit(source, path, str(rel), "general"))
        elif ext in (".jsonl", ".parquet"):
            units.extend(local_units(str(path)))
    units.extend(
        Unit(source, unit, cat, functools.partial(list, docs))  # type: ignore[arg-type]
        for (cat, unit), docs in sorted(code.items())
    )
    return units


def local_units(spec: str) -> list[Unit]:
    """Units of a local folder or file; raises CodequantError for paths that hold nothing usable."""
    path = Path(spec).expanduser()
    source = f"local:{path}"
    if not path.exists():
        raise CodequantError(
            f"calibration source {spec} does not exist; give a folder, .txt, .jsonl or .parquet file"
        )
    ext = path.suffix.lower()
    if path.is_dir():
        units = _folder_units(source, path)
    elif ext == ".jsonl":
        units = records_to_units(source, _jsonl_records(path))
    elif ext == ".parquet":
        units = records_to_units(source, _parquet_records(path))
    elif ext in CODE_EXT:
        units = [_file_unit(source, path, path.name, CODE_EXT[ext])]  # type: ignore[arg-type]
    elif ext in TEXT_EXT or not ext:
        units = [_file_unit(source, path, path.name, "general")]
    else:
        raise CodequantError(
            f"unsupported calibration source {spec}: use a folder, .txt/.md/.rst, .py/.java, "
            ".jsonl or .parquet"
        )
    if not units:
        raise CodequantError(f"calibration source {spec} holds no .py/.java/.txt/.jsonl/.parquet text")
    return units
