"""What sanitising changes, measured on the same outputs: re-execute a finished run's completions sanitised.

`evaluate --sanitize` sanitises as it generates; this takes a run made without it and, for every row, sanitises
the code that was executed (`completion`, itself taken from `raw_output`, which the new row keeps), rebuilds the
program, runs it and writes a new run folder whose config is the old one with `sanitize: true`. The pass@1 before
and after therefore differ by the sanitiser alone, not by decoding noise.
"""

from __future__ import annotations

import json
from pathlib import Path

from codequant.benchmarks.programs import build_program
from codequant.benchmarks.registry import load_benchmark
from codequant.errors import CodequantError
from codequant.evaluation.runner import execute_and_store, summarize, time_limit
from codequant.evaluation.store import SampleStore
from codequant.evaluation.text_task import is_text_task
from codequant.generation.sanitize import sanitize


def resanitize(
    run_dir: Path | str, out_dir: Path | str, *, workers: int | None = None, progress: bool = False
) -> dict:
    """Sanitise and re-execute the completions of the run in `run_dir` into `out_dir`; returns
    {"before": summary of the old run, "after": summary of the new one}."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise CodequantError(f"{run_dir} holds no run (config.json missing)")
    old = json.loads(config_path.read_text())
    if old.get("sanitize"):
        raise CodequantError(f"{run_dir} is already sanitised")
    problems = load_benchmark(old["benchmark"], old.get("data"))
    by_id = {p.task_id: p for p in problems}
    if any(is_text_task(p) for p in problems):
        raise CodequantError(f"{old['benchmark']} is scored as text; there is no code to sanitise")
    if old.get("prompt_strip"):
        import dataclasses

        by_id = {k: dataclasses.replace(p, prompt=p.prompt.strip()) for k, p in by_id.items()}
    rows = SampleStore(run_dir, old).read()
    store = SampleStore(out_dir, {**old, "sanitize": True})
    done = store.done_keys()
    main = old.get("python_main", "run")  # runs from before the setting executed main blocks
    todo = []
    for r in rows:
        if (r["task_id"], r["sample_index"]) in done or r["task_id"] not in by_id:
            continue
        p = by_id[r["task_id"]]
        code = sanitize(p, r["completion"])
        todo.append(
            {
                **{
                    k: r[k]
                    for k in (
                        "task_id",
                        "sample_index",
                        "language",
                        "prompt",
                        "raw_output",
                        "stop_reason",
                        "prompt_tokens",
                        "new_tokens",
                        "gen_seconds",
                    )
                },
                "unsanitized": r["completion"],
                "completion": code,
                "program": build_program(p, code, main),
            }
        )
    execute_and_store(todo, store, workers, progress, by_id, time_limit(problems))
    samples = max((int(r["sample_index"]) for r in rows), default=0) + 1
    listed = [p for p in problems if p.task_id in {r["task_id"] for r in rows}]
    after = summarize(store.read(), listed, samples)
    before = summarize(rows, listed, samples)
    after.update({"config": {**old, "sanitize": True}, "sanitized_from": str(run_dir)})
    store.write_summary(after)
    return {"before": before, "after": after}
