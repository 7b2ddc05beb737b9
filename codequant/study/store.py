"""study.db: the results of a study in SQLite, written so that re-running anything never duplicates a row.

Every table has a natural primary key (a step key, plus task/sample for outcomes) and every write is an upsert
inside one transaction per step, so a step whose results were half-ingested when the process died is simply
ingested again. The artifacts on disk stay the source of truth; the database can be rebuilt from them.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS steps (
  key TEXT PRIMARY KEY, kind TEXT NOT NULL, label TEXT NOT NULL, status TEXT NOT NULL,
  config TEXT, meta TEXT, artifact TEXT, started REAL, finished REAL, seconds REAL, peak_rss_mb REAL,
  error TEXT, attempts INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS variants (
  key TEXT PRIMARY KEY, model TEXT NOT NULL, label TEXT NOT NULL, method TEXT NOT NULL, bits INTEGER,
  calibration TEXT, finetuned INTEGER NOT NULL, model_path TEXT);
CREATE TABLE IF NOT EXISTS runs (
  key TEXT PRIMARY KEY, variant_key TEXT NOT NULL, model TEXT NOT NULL, variant TEXT NOT NULL, method TEXT NOT NULL,
  bits INTEGER, calibration TEXT, finetuned INTEGER NOT NULL, benchmark TEXT NOT NULL, language TEXT NOT NULL,
  decoding TEXT NOT NULL, problems INTEGER, completions INTEGER, passed INTEGER, pass_at_1 REAL, artifact TEXT);
CREATE TABLE IF NOT EXISTS outcomes (
  run_key TEXT NOT NULL, task_id TEXT NOT NULL, sample_index INTEGER NOT NULL, passed INTEGER NOT NULL,
  status TEXT, failure TEXT, failure_detail TEXT, PRIMARY KEY (run_key, task_id, sample_index));
CREATE TABLE IF NOT EXISTS perplexities (
  variant_key TEXT NOT NULL, language TEXT NOT NULL, model TEXT NOT NULL, variant TEXT NOT NULL, method TEXT NOT NULL,
  bits INTEGER, calibration TEXT, finetuned INTEGER NOT NULL, perplexity REAL, tokens INTEGER,
  PRIMARY KEY (variant_key, language));
CREATE TABLE IF NOT EXISTS inference (
  variant_key TEXT NOT NULL, backend TEXT NOT NULL, model TEXT NOT NULL, variant TEXT NOT NULL, method TEXT NOT NULL,
  bits INTEGER, calibration TEXT, finetuned INTEGER NOT NULL, prefill_tok_s REAL, decode_tok_s TEXT,
  peak_rss_mb REAL, file_bytes INTEGER, formula_bits REAL, load_s REAL, settings TEXT,
  PRIMARY KEY (variant_key, backend));
CREATE TABLE IF NOT EXISTS footprints (
  variant_key TEXT PRIMARY KEY, model TEXT NOT NULL, variant TEXT NOT NULL, method TEXT NOT NULL, bits INTEGER,
  formula_bits REAL, stored_bits REAL, file_bytes INTEGER, param_bytes INTEGER, quantized_params INTEGER);
CREATE TABLE IF NOT EXISTS quant_errors (
  variant_key TEXT PRIMARY KEY, model TEXT NOT NULL, variant TEXT NOT NULL, method TEXT NOT NULL, bits INTEGER,
  calibration TEXT, layer_error REAL, layer_error_heldout REAL, block_mse REAL, block_mse_heldout REAL,
  val_rows INTEGER, quantize_s REAL);
CREATE TABLE IF NOT EXISTS comparisons (
  step_key TEXT NOT NULL, kind TEXT NOT NULL, model TEXT NOT NULL, language TEXT NOT NULL, benchmark TEXT NOT NULL,
  decoding TEXT NOT NULL, baseline TEXT NOT NULL, other TEXT NOT NULL, b INTEGER, c INTEGER, n_pairs INTEGER,
  odds_ratio REAL, ci_low REAL, ci_high REAL, p_value REAL, p_adjusted REAL, baseline_pass_rate REAL,
  other_pass_rate REAL, correction TEXT, test TEXT, p_mcnemar REAL, n_problems INTEGER,
  samples_per_problem REAL, pass_diff REAL, diff_ci_low REAL, diff_ci_high REAL, mde REAL, icc REAL,
  PRIMARY KEY (step_key, kind, baseline, other));
CREATE TABLE IF NOT EXISTS text_scores (
  run_key TEXT NOT NULL, task_id TEXT NOT NULL, sample_index INTEGER NOT NULL, bleu REAL, rouge_l REAL,
  PRIMARY KEY (run_key, task_id, sample_index));
CREATE TABLE IF NOT EXISTS score_comparisons (
  step_key TEXT NOT NULL, kind TEXT NOT NULL, model TEXT NOT NULL, benchmark TEXT NOT NULL, decoding TEXT NOT NULL,
  metric TEXT NOT NULL, baseline TEXT NOT NULL, other TEXT NOT NULL, n_problems INTEGER, baseline_mean REAL,
  other_mean REAL, mean_diff REAL, median_diff REAL, n_nonzero INTEGER, statistic REAL, p_value REAL,
  p_adjusted REAL, correction TEXT, test TEXT, PRIMARY KEY (step_key, kind, metric, baseline, other));
"""


# Columns added after the first release: a study.db made before them gets them (empty) when opened.
COMPARISON_COLUMNS_ADDED = {
    "test": "TEXT",
    "p_mcnemar": "REAL",
    "n_problems": "INTEGER",
    "samples_per_problem": "REAL",
    "pass_diff": "REAL",
    "diff_ci_low": "REAL",
    "diff_ci_high": "REAL",
    "mde": "REAL",
    "icc": "REAL",
}

# Failure taxonomy of each completion (codequant.failures); older studies get the columns, filled on the next run.
OUTCOME_COLUMNS_ADDED = {"failure": "TEXT", "failure_detail": "TEXT"}

# Executors (codequant.study.executors): the job a step was given ("local", a Ray task id, a Slurm job id) and
# where it ran (host:pid).
STEP_COLUMNS_ADDED = {"job_id": "TEXT", "worker": "TEXT"}
INFERENCE_COLUMNS_ADDED = {"decode_j_per_token": "TEXT", "energy_method": "TEXT"}
# Text tasks (code summarization): a run's task ("summarize"; null: executed code) and its mean scores; the
# per-sample scores are in text_scores and the Wilcoxon comparisons in score_comparisons (new tables, so older
# study.db files simply get them).
RUN_SCORES = ("bleu", "corpus_bleu", "rouge_l")  # a text run's mean scores (codequant.evaluation.text_task)
RUN_COLUMNS_ADDED = {"task": "TEXT", **{score: "REAL" for score in RUN_SCORES}}
# The whole saved model's bits per weight (every tensor of the native checkpoint over the fp parameters).
FOOTPRINT_COLUMNS_ADDED = {"whole_file_bits": "REAL"}


class StudyStore:
    """A connection to study.db with the few writes and reads the runner and the report need."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, timeout=30)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(SCHEMA)
        self._add_columns("comparisons", COMPARISON_COLUMNS_ADDED)
        self._add_columns("outcomes", OUTCOME_COLUMNS_ADDED)
        self._add_columns("steps", STEP_COLUMNS_ADDED)
        self._add_columns("inference", INFERENCE_COLUMNS_ADDED)
        self._add_columns("runs", RUN_COLUMNS_ADDED)
        self._add_columns("footprints", FOOTPRINT_COLUMNS_ADDED)

    def _add_columns(self, table: str, columns: dict[str, str]) -> None:
        have = {r["name"] for r in self.conn.execute(f"PRAGMA table_info({table})")}
        with self.conn:
            for name, kind in columns.items():
                if name not in have:
                    self.conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> StudyStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All-or-nothing: a process killed inside leaves the database as it was before."""
        with self.conn:
            yield self.conn

    # ---- writes (all upserts) ----
    def upsert(self, table: str, row: dict[str, Any], conn: sqlite3.Connection | None = None) -> None:
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        (conn or self.conn).execute(
            f"INSERT OR REPLACE INTO {table} ({cols}) VALUES ({marks})", list(row.values())
        )

    def upsert_many(self, table: str, rows: Iterable[dict[str, Any]], conn: sqlite3.Connection) -> None:
        rows = list(rows)
        if not rows:
            return
        cols = list(rows[0])
        sql = f"INSERT OR REPLACE INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})"
        conn.executemany(sql, [[r[c] for c in cols] for r in rows])

    def mark_step(self, key: str, kind: str, label: str, status: str, **fields: Any) -> None:
        """Record a step's state; `attempts` counts starts, so a resumed step shows how often it was begun."""
        with self.transaction() as conn:
            old = conn.execute("SELECT attempts FROM steps WHERE key = ?", (key,)).fetchone()
            attempts = (old["attempts"] if old else 0) + (1 if status == "running" else 0)
            row = {"key": key, "kind": kind, "label": label, "status": status, "attempts": attempts}
            current = dict(conn.execute("SELECT * FROM steps WHERE key = ?", (key,)).fetchone() or {})
            merged = {
                **current,
                **row,
                **{k: (json.dumps(v, default=str) if isinstance(v, dict) else v) for k, v in fields.items()},
            }
            self.upsert("steps", merged, conn)

    def set_step_fields(self, key: str, **fields: Any) -> None:
        """Update some columns of a recorded step (not its status or attempts)."""
        if fields:
            with self.transaction() as conn:
                sets = ", ".join(f"{k} = ?" for k in fields)
                conn.execute(f"UPDATE steps SET {sets} WHERE key = ?", [*fields.values(), key])

    # ---- reads ----
    def rows(self, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
        return [dict(r) for r in self.conn.execute(sql, params).fetchall()]

    def step_status(self) -> dict[str, dict[str, Any]]:
        return {r["key"]: r for r in self.rows("SELECT * FROM steps")}

    def outcome_groups(self, where: str = "", params: tuple = ()) -> dict[str, dict[str, dict[int, bool]]]:
        """`{run_key: {task_id: {sample_index: passed}}}` for the runs selected by `where` (on runs r)."""
        sql = (
            "SELECT o.run_key, o.task_id, o.sample_index, o.passed FROM outcomes o JOIN runs r ON r.key = o.run_key"
            + (f" WHERE {where}" if where else "")
        )
        groups: dict[str, dict[str, dict[int, bool]]] = {}
        for r in self.conn.execute(sql, params):
            groups.setdefault(r[0], {}).setdefault(r[1], {})[int(r[2])] = bool(r[3])
        return groups


def now() -> float:
    return time.time()
