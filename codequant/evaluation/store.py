"""A run folder: config.json (what the results depend on), samples.jsonl (append-only), summary.json.

samples.jsonl is written line by line with a flush after each batch, so a crash can leave at most one truncated
last line; reading drops it (and rewrites the file without it) so the completion is simply redone. A folder that
holds a run with another config is refused rather than silently mixed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from codequant.errors import CodequantError


class SampleStore:
    def __init__(self, out_dir: Path, config: dict):
        self.dir = Path(out_dir)
        self.samples_path = self.dir / "samples.jsonl"
        self.config_path = self.dir / "config.json"
        self.summary_path = self.dir / "summary.json"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._check_config(config)

    def _check_config(self, config: dict) -> None:
        if self.config_path.is_file():
            old = json.loads(self.config_path.read_text())
            if (
                "dtype" not in old and config.get("dtype") == "float32"
            ):  # runs before dtypes were recorded: fp32
                old = {**old, "dtype": "float32"}
            if old != config:
                diffs = [
                    f"{k}: {old.get(k)!r} -> {config.get(k)!r}"
                    for k in sorted(set(old) | set(config))
                    if old.get(k) != config.get(k)
                ]
                raise CodequantError(
                    f"{self.dir} holds a run with a different config ({'; '.join(diffs)}); "
                    "use another --out folder or delete this one"
                )
        elif self.samples_path.is_file() and self.samples_path.stat().st_size > 0:
            raise CodequantError(f"{self.dir} has samples.jsonl but no config.json; use another --out folder")
        else:
            self.config_path.write_text(json.dumps(config, indent=2) + "\n")

    def read(self) -> list[dict]:
        """All complete lines; a truncated last line (an interrupted write) is dropped from the file."""
        if not self.samples_path.is_file():
            return []
        raw = self.samples_path.read_bytes()
        rows, good_end = [], 0
        for line in raw.splitlines(keepends=True):
            try:
                if not line.endswith(b"\n"):
                    raise ValueError("truncated")
                if line.strip():
                    rows.append(json.loads(line))
            except ValueError:
                break
            good_end += len(line)
        if good_end < len(raw):
            with open(self.samples_path, "r+b") as fh:
                fh.truncate(good_end)
        return rows

    def done_keys(self) -> set[tuple[str, int]]:
        return {(r["task_id"], int(r["sample_index"])) for r in self.read()}

    def append(self, rows: list[dict]) -> None:
        with open(self.samples_path, "a", encoding="utf-8") as fh:
            for r in rows:
                fh.write(_json_line(r))
            fh.flush()
            os.fsync(fh.fileno())

    def write_summary(self, summary: dict) -> None:
        tmp = self.summary_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
        tmp.replace(self.summary_path)


def _json_line(row: dict) -> str:
    """One JSON line, readable UTF-8; text that UTF-8 cannot hold (a lone surrogate in a model's output) is kept
    as a JSON escape rather than failing the whole batch's write."""
    line = json.dumps(row, ensure_ascii=False) + "\n"
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        line = json.dumps(row) + "\n"
    return line
