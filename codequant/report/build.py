"""`codequant report STUDY`: study.db -> report.md with its tables (also as CSV and LaTeX) and PNG plots.

Everything is read from the database the runner filled, so a report can be rebuilt at any time, also from an
unfinished study (it then shows what is done so far).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from codequant.errors import CodequantError
from codequant.failures import CLASSES
from codequant.report import plots, tables
from codequant.study.store import StudyStore

PASS_COLS = ("model", "benchmark", "language", "decoding", "version", "pass@1", "diff", "diff_ci_low",
             "diff_ci_high", "mde", "b", "c", "odds_ratio", "ci_low", "ci_high", "test", "p", "p_mcnemar", "p_adj")
PAIR_COLS = ("model", "benchmark", "language", "baseline", "other", "pass@1 baseline", "pass@1 other", "diff",
             "diff_ci_low", "diff_ci_high", "mde", "b", "c", "odds_ratio", "test", "p", "p_mcnemar", "p_adj")
STATS_NOTE = (
    "OR = b/c where b = baseline passes and the other fails, c = the reverse: OR > 1 means the other is worse. "
    "`test` names the test behind p and p_adj (corrected within each (model, language) family): `clustered` is "
    "McNemar's test with problems as clusters (Durkalski), the default where a problem has several completions, "
    "because completions of one problem share its difficulty and are not independent; `mcnemar` is the exact "
    "per-completion test (the default with one completion per problem). p_mcnemar is always the exact "
    "per-completion p, the study's method, for comparison. diff = pass@1 other - baseline in points with its "
    "95% problem-bootstrap interval (diff_ci_low, diff_ci_high); mde = the smallest drop the design detects at 80% "
    "power (points; `none`: no drop up to the whole pass rate). See docs/statistics.md.")

FAILURE_COLS = ("model", "benchmark", "language", "decoding", "version", "completions", "passed", *CLASSES)
FAILURE_NOTE = (
    "`degenerate`: no code, a repetition loop, or cut at the token limit so that it does not parse; `syntax`: "
    "does not parse; `compile`: javac rejects it otherwise (types, a missing JDK import); `hallucinated_api`: "
    "calls a name, module, attribute or Java method/class that neither the program, the standard library (JDK) nor "
    "the allowed imports define; `assertion`: a wrong answer; `runtime`: any other exception; `harness`: the "
    "sandbox failed on it (not the model's). Precedence in that "
    "order (docs/evaluation.md, failure taxonomy); per-completion classes are in study.db `outcomes.failure`.")
SUMMARIZE_COLS = ("model", "benchmark", "decoding", "version", "problems", "bleu", "corpus_bleu", "rouge_l",
                  "bleu_diff", "p_bleu", "p_adj_bleu", "rouge_l_diff", "p_rouge_l", "p_adj_rouge_l")
SUMMARIZE_NOTE = (
    "Code summarization (humaneval-summarize): the model writes the docstring of a HumanEval function shown without "
    "it; the reference is the docstring's description (before its first example). `bleu`: mean sentence BLEU-4 "
    "(sacrebleu, 13a tokens, exponential smoothing, 0-100); `corpus_bleu`: BLEU-4 over the whole run; `rouge_l`: "
    "mean ROUGE-L F1 (rouge-score, stemmed, 0-1); each mean is over problems of the per-problem mean over samples. "
    "`*_diff` = version - fp; p: Wilcoxon signed-rank test of the per-problem scores against fp, paired by problem; "
    "p_adj: BH within each metric's family (model, benchmark, decoding). Nothing is executed, so these runs have "
    "no pass@1 and no failure classes (docs/evaluation.md).")
GROWTH_NOTE = (
    "For each version and class, the completions of fp and of the version are paired (same problem, same sample) "
    "and the outcome is \"has this class\": `new` counts completions that have it only under the version, `gone` "
    "only under fp. The test is the study's (`stats.test`; auto: clustered McNemar with several completions per "
    "problem, exact McNemar with one). `grows`: more completions of the class than fp, p_adj < alpha.")


def _stats_settings(study: Path) -> dict:
    """The study's `stats:` test and alpha (study.json), for the failure-growth tests."""
    path = study / "study.json"
    stats = json.loads(path.read_text(encoding="utf-8")).get("stats", {}) if path.is_file() else {}
    return {"test": stats.get("test", "auto"), "alpha": stats.get("alpha", 0.05)}


def _plan_keys(study: Path) -> set[str] | None:
    """The steps of the grid as configured now (study.db also keeps earlier grids' steps); None without a plan."""
    if not (study / "plan.json").is_file():
        return None
    return {s["key"] for s in json.loads((study / "plan.json").read_text(encoding="utf-8"))}


def power_summary(study: str | Path) -> list[str]:
    """One line per comparison design of the study: the smallest pass@1 drop it detects at 80% power."""
    study = Path(study)
    if not (study / "study.db").is_file():
        return []
    with StudyStore(study / "study.db") as store:
        return tables.power_lines(tables.pass_table(store, tables.Scope(store, _plan_keys(study))))


def build_report(study: str | Path, out: str | Path | None = None) -> Path:
    """Write STUDY/report (or `out`): report.md, tables/*.csv|tex, plots/*.png; returns the report.md path."""
    study = Path(study)
    db = study / "study.db"
    if not db.is_file():
        raise CodequantError(f"{study} holds no study.db; run `codequant study run CONFIG` first (the study folder "
                             "is studies/<name>/ next to the YAML, or its --out)")
    out = Path(out) if out is not None else study / "report"
    (out / "tables").mkdir(parents=True, exist_ok=True)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    plan_keys = _plan_keys(study)
    with StudyStore(db) as store:
        scope = tables.Scope(store, plan_keys)
        data = {
            "pass_at_1": tables.pass_table(store, scope),
            "summarization": tables.summarize_table(store, scope),
            "calibration": tables.pair_table(store, "calibration", scope),
            "finetune": tables.pair_table(store, "finetune", scope),
            "memory": tables.memory_table(store, scope),
            "perplexity": tables.perplexity_table(store, scope),
            "quant_errors": tables.quant_error_table(store, scope),
            "inference": tables.inference_table(store, scope),
            "timings": tables.timing_table(store, scope),
            "failures": tables.failure_table(store, scope),
            "failure_growth": tables.failure_growth_table(store, scope, **_stats_settings(study)),
        }
        pareto = tables.pareto_points(store, scope)
    captions = {
        "pass_at_1": "pass@1 per version and language; paired test against fp (clustered McNemar where problems have "
                     "several completions), corrected per (model, language)",
        "summarization": "Code summarization: mean BLEU-4 and ROUGE-L per version; Wilcoxon signed-rank test of "
                         "per-problem scores against fp, BH-corrected per metric",
        "calibration": "Calibration kinds compared at equal method and bits (paired test as in the pass@1 table)",
        "finetune": "Fine-tuned vs not (baseline: fine-tuned; OR > 1: fine-tuning helped; uncorrected)",
        "memory": "Memory: formula and stored bits per quantized weight, file size, peak RSS while evaluating",
        "perplexity": "Held-out perplexity per version and language",
        "quant_errors": "Quantization output error: mean relative output error over layers and the last block's "
                        "relative output MSE, on the calibration rows (in-sample) and on held-out rows",
        "inference": "Inference cost per version and backend: prefill and greedy decode tokens/s, peak RSS",
        "timings": "Step timings and peak RSS",
        "failures": "Failed completions by class (codequant.failures): one class per failed completion",
        "failure_growth": "Does a failure class grow from fp? Paired test per version and class, BH-corrected per "
                          "(model, benchmark, language, decoding)",
    }
    for name, rows in data.items():
        tables.write_csv(rows, out / "tables" / f"{name}.csv")
        tables.write_latex(rows, out / "tables" / f"{name}.tex", captions[name], f"tab:{name.replace('_', '-')}")
    plots.pass_vs_bits(data["pass_at_1"], out / "plots" / "pass_vs_bits.png")
    plots.memory_pareto(data["memory"], out / "plots" / "memory_pareto.png")
    plots.perplexity_vs_bits(data["perplexity"], out / "plots" / "perplexity_vs_bits.png")
    plots.perplexity_pareto([p for p in pareto if p["bits_per_weight"] is not None or p["series"] == "fp"],
                            out / "plots" / "perplexity_pareto.png")
    plots.failure_bars(data["failures"], out / "plots" / "failures.png", CLASSES)
    config = {}
    if (study / "study.json").is_file():
        config = json.loads((study / "study.json").read_text(encoding="utf-8"))
    md = [f"# Study report: {config.get('name', study.name)}", "",
          f"Generated {time.strftime('%Y-%m-%d %H:%M')} from `{db}`. " + STATS_NOTE, "",
          "## pass@1 against fp", "", tables.markdown(data["pass_at_1"], PASS_COLS),
          "![pass@1 vs bits](plots/pass_vs_bits.png)", "",
          "### What these designs can detect", "",
          "A comparison that is not significant shows no loss only down to its minimum detectable drop:", "",
          *[f"- {line}" for line in tables.power_lines(data["pass_at_1"]) or ["(no comparisons yet)"]], "",
          "## Code summarization", "", SUMMARIZE_NOTE, "",
          tables.markdown(data["summarization"], SUMMARIZE_COLS) if data["summarization"] else
          "(no summarization runs in this study)\n",
          "## Calibration", "", tables.markdown(data["calibration"], PAIR_COLS),
          "## Fine-tuning", "", captions["finetune"] + ".", "", tables.markdown(data["finetune"], PAIR_COLS),
          "## Memory", "", captions["memory"] + ". fp: the model as loaded (fp32 tensors); quantized: the codequant "
          "checkpoint on disk. Evaluation runs the dequantized export, so peak RSS is that of an fp32 model.", "",
          tables.markdown(data["memory"]), "![memory vs pass@1](plots/memory_pareto.png)", "",
          "## Perplexity", "", tables.markdown(data["perplexity"]),
          "![perplexity vs bits](plots/perplexity_vs_bits.png)",
          "![perplexity vs bits per weight](plots/perplexity_pareto.png)", "",
          "## Quantization error", "", captions["quant_errors"] + ". Decide on the held-out columns: in-sample "
          "errors flatter a fit that overfits the calibration rows.", "", tables.markdown(data["quant_errors"]),
          "## Inference", "", captions["inference"] + ". `dequantized`: the fp32 export the evaluations ran; "
          "`aqlm-kernels`: the AQLM codes through the `aqlm` package's kernels (on CPU: numba, one thread). Each "
          "backend was measured in its own process; `bN_x_fp`: decode tokens/s at batch N over fp's. "
          "`j_per_token_bN`: energy per decoded token at batch N, by `energy_method`: `rapl`/`nvml` are counter "
          "readings, `estimate:cpu-time` is CPU seconds times a stated power per busy core (no counters on that "
          "machine), an estimate that ranks versions by CPU work (codequant.metrics.energy).", "",
          tables.markdown(data["inference"]),
          "## Why completions fail", "", captions["failures"] + ". " + FAILURE_NOTE, "",
          tables.markdown(data["failures"], FAILURE_COLS), "![failures per version](plots/failures.png)", "",
          "### Does a class grow from fp?", "", GROWTH_NOTE, "",
          tables.markdown(data["failure_growth"]) if data["failure_growth"] else "(no fp and quantized runs to "
          "compare yet)", "",
          "## Timings", "", tables.markdown(data["timings"]),
          "Tables as CSV and LaTeX: `tables/`. Plots: `plots/`.", ""]
    path = out / "report.md"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text("\n".join(md), encoding="utf-8")
    tmp.replace(path)
    return path
