"""evaluate: one version on one benchmark and decoding; its run and every completion's outcome go into study.db."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from codequant.failures import classify
from codequant.study.config import Decoding
from codequant.study.kinds.common import (
    json_safe,
    load_model,
    model_spec,
    variant_key,
    variant_row,
    version_columns,
)
from codequant.study.plan import FP, Evaluations, Planning, Step
from codequant.study.store import RUN_SCORES


def plan(planning: Planning) -> None:
    """Every version on every benchmark and decoding."""
    for bench in planning.benchmarks:
        for dec in planning.config.decoding:
            steps = []
            for variant, source in planning.versions():
                cfg = {
                    "benchmark": bench.benchmark.name,
                    "data": bench.data,
                    "limit": bench.benchmark.limit,
                    **_decoding(dec),
                    "model": planning.model if source is None else None,
                    **planning.dtype,
                }
                steps.append(
                    planning.add(
                        "evaluate",
                        f"{planning.name}-{variant.label}-{bench.benchmark.name}-{dec.name}",
                        cfg,
                        [source.key] if source else [],
                        {
                            "variant": variant.to_dict(),
                            "benchmark": bench.benchmark.name,
                            "language": bench.language,
                            "decoding": dec.name,
                        },
                    )
                )
            planning.evaluations.append(Evaluations(bench, dec, steps))


def _decoding(dec: Decoding) -> dict[str, Any]:
    """A decoding's hashed settings; defaults of later fields (the engine backend, no prompt strip, skipped
    Python main blocks, no sanitising) are left out, so studies written before them keep their step keys."""
    d = dec.model_dump()
    for key, default in (
        ("backend", "engine"),
        ("prompt_strip", False),
        ("python_main", "skip"),
        ("sanitize", False),
    ):
        if d.get(key) == default:
            del d[key]
    return d


def run(
    step: Step,
    workdir: Path,
    inputs: dict[str, Path],
    settings: dict[str, Any],
    metas: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    from codequant.evaluation import EvalSettings, Loaded, evaluate
    from codequant.models import footprint
    from codequant.models.filebits import model_file_bits

    cfg = step.config
    spec = model_spec(step, inputs)
    target: str | Loaded = spec
    fp = None
    backend = cfg.get("backend", "engine")
    if (
        step.config.get("model") != "canonical" and backend != "vllm"
    ):  # vLLM loads the weights in its own process
        model, tokenizer = load_model(spec, settings.get("device", "cpu"), settings.get("dtype", "auto"))
        fp = footprint(model).to_dict()
        fp["whole_file_bits"] = model_file_bits(spec, model)  # its saved tensors over its parameters
        target = Loaded(spec, model, tokenizer)
    run_settings = EvalSettings(
        samples=cfg["samples"],
        temperature=cfg["temperature"],
        top_p=cfg["top_p"],
        max_new_tokens=cfg["max_new_tokens"],
        limit=cfg["limit"],
        prompt_style=cfg["prompt_style"],
        seed=cfg["seed"],
        batch_size=cfg["batch_size"],
        workers=settings.get("workers"),
        backend=backend,
        device=settings.get("device", "cpu"),
        dtype=settings.get("dtype", "auto"),
        prompt_strip=cfg.get("prompt_strip", False),
        python_main=cfg.get("python_main", "skip"),
        sanitize=cfg.get("sanitize", False),
        vllm=_vllm(settings),
    )
    summary = evaluate(
        target, cfg["benchmark"], run_settings, data=cfg["data"], out_dir=workdir, progress=True
    )
    return {
        "samples": "samples.jsonl",
        "footprint": json_safe(fp),
        "dtype": summary["config"].get("dtype"),
        **{
            k: summary.get(k) for k in ("problems", "completions", "passed", "pass@1", "status_counts", "run")
        },
        **{k: summary[k] for k in ("task", *RUN_SCORES) if k in summary},
    }


def _vllm(settings: dict[str, Any]):
    """runner.vllm as VllmSettings; its dtype follows runner.dtype unless it names its own."""
    from codequant.generation.vllm import VllmSettings, pick_dtype

    vllm = dict(settings.get("vllm", {}))
    vllm["dtype"] = pick_dtype(vllm.get("dtype", "auto"), settings.get("dtype", "auto"))
    return VllmSettings(**vllm)


def ingest(store, step: Step, res: dict[str, Any], artifact: Path, conn) -> None:
    from codequant.stats import read_run

    v, vkey = step.meta["variant"], variant_key(step)
    cols = version_columns(v)
    if v["method"] == FP:
        store.upsert("variants", variant_row(vkey, v, v["spec"]), conn)
        fp = res.get("footprint")
        if fp:
            store.upsert(
                "footprints",
                {
                    "variant_key": vkey,
                    **{k: cols[k] for k in ("model", "variant", "method", "bits")},
                    "formula_bits": fp["linear_bits_per_weight"],
                    "stored_bits": fp["linear_bits_per_weight"],
                    "file_bytes": fp["bytes"],
                    "param_bytes": fp["kinds"]["linear"]["bytes"],
                    "quantized_params": 0,
                    "whole_file_bits": fp.get("whole_file_bits"),
                },
                conn,
            )
    run = read_run(artifact)
    if run.scored:
        _ingest_text(store, step, res, artifact, run, {"key": step.key, "variant_key": vkey, **cols}, conn)
        return
    why = _classified(artifact / res.get("samples", "samples.jsonl"))
    outcomes = [
        {
            "run_key": step.key,
            "task_id": t,
            "sample_index": i,
            "passed": int(p),
            **why.get((t, i), {"status": None, "failure": None, "failure_detail": None}),
        }
        for t, s in run.outcomes.items()
        for i, p in s.items()
    ]
    store.upsert(
        "runs",
        {
            "key": step.key,
            "variant_key": vkey,
            **cols,
            "benchmark": step.meta["benchmark"],
            "language": step.meta["language"],
            "decoding": step.meta["decoding"],
            "problems": res.get("problems"),
            "completions": len(outcomes),
            "passed": sum(o["passed"] for o in outcomes),
            "pass_at_1": res.get("pass@1"),
            "artifact": str(artifact),
        },
        conn,
    )
    store.upsert_many("outcomes", outcomes, conn)


def _ingest_text(
    store, step: Step, res: dict[str, Any], artifact: Path, run, head: dict[str, Any], conn
) -> None:
    """A text task's run (code summarization): its mean scores in `runs` (no pass/fail: passed and pass_at_1 stay
    null) and every completion's scores in `text_scores`."""
    scores = [
        {
            "run_key": step.key,
            "task_id": t,
            "sample_index": i,
            "bleu": b,
            "rouge_l": run.scores["rouge_l"][t][i],
        }
        for t, s in run.scores["bleu"].items()
        for i, b in s.items()
    ]
    store.upsert(
        "runs",
        {
            **head,
            "benchmark": step.meta["benchmark"],
            "language": step.meta["language"],
            "decoding": step.meta["decoding"],
            "problems": res.get("problems"),
            "completions": len(scores),
            "passed": None,
            "pass_at_1": None,
            "artifact": str(artifact),
            "task": res.get("task", "summarize"),
            **{k: res.get(k) for k in RUN_SCORES},
        },
        conn,
    )
    store.upsert_many("text_scores", scores, conn)


def _classified(samples: Path) -> dict[tuple[str, int], dict[str, Any]]:
    """(task, sample) -> sandbox status and failure class of every executed completion (codequant.failures)."""
    import json

    out: dict[tuple[str, int], dict[str, Any]] = {}
    if not samples.is_file():
        return out
    with open(samples, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            r = json.loads(line)
            found = classify(r) if r.get("status") is not None else None
            out[(str(r["task_id"]), int(r["sample_index"]))] = {
                "status": r.get("status"),
                "failure": str(found.failure) if found else None,
                "failure_detail": found.detail if found else None,
            }
    return out


def stale(store, step: Step) -> bool:
    """A run ingested before the failure taxonomy existed: failed completions without a class."""
    return bool(
        store.rows(
            "SELECT 1 FROM outcomes WHERE run_key = ? AND passed = 0 AND failure IS NULL LIMIT 1", (step.key,)
        )
    )
