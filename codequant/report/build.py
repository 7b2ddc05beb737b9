"""`codequant report STUDY`: study.db -> report.md with its tables (also as CSV and LaTeX) and PNG plots.

Everything is read from the database the runner filled, so a report can be rebuilt at any time, also from an
unfinished study (it then shows what is done so far).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from codequant.errors import CodequantError
from codequant.failures import CLASSES
from codequant.report import plots, tables
from codequant.report.tables import Row
from codequant.study.store import StudyStore

PASS_COLS = (
    "model",
    "benchmark",
    "language",
    "decoding",
    "version",
    "pass@1",
    "diff",
    "diff_ci_low",
    "diff_ci_high",
    "mde",
    "b",
    "c",
    "odds_ratio",
    "ci_low",
    "ci_high",
    "test",
    "p",
    "p_mcnemar",
    "p_adj",
)
PAIR_COLS = (
    "model",
    "benchmark",
    "language",
    "baseline",
    "other",
    "pass@1 baseline",
    "pass@1 other",
    "diff",
    "diff_ci_low",
    "diff_ci_high",
    "mde",
    "b",
    "c",
    "odds_ratio",
    "test",
    "p",
    "p_mcnemar",
    "p_adj",
)
STATS_NOTE = (
    "OR = b/c where b = baseline passes and the other fails, c = the reverse: OR > 1 means the other is worse. "
    "`test` names the test behind p and p_adj (corrected within each (model, language) family): `clustered` is "
    "McNemar's test with problems as clusters (Durkalski), the default where a problem has several completions, "
    "because completions of one problem share its difficulty and are not independent; `mcnemar` is the exact "
    "per-completion test (the default with one completion per problem). p_mcnemar is always the exact "
    "per-completion p, the study's method, for comparison. diff = pass@1 other - baseline in points with its "
    "95% problem-bootstrap interval (diff_ci_low, diff_ci_high); mde = the smallest drop the design detects at 80% "
    "power (points; `none`: no drop up to the whole pass rate). See docs/statistics.md."
)

FAILURE_COLS = ("model", "benchmark", "language", "decoding", "version", "completions", "passed", *CLASSES)
FAILURE_NOTE = (
    "`degenerate`: no code, a repetition loop, or cut at the token limit so that it does not parse; `syntax`: "
    "does not parse; `compile`: javac rejects it otherwise (types, a missing JDK import); `hallucinated_api`: "
    "calls a name, module, attribute or Java method/class that neither the program, the standard library (JDK) nor "
    "the allowed imports define; `assertion`: a wrong answer; `runtime`: any other exception; `harness`: the "
    "sandbox failed on it (not the model's). Precedence in that "
    "order (docs/evaluation.md, failure taxonomy); per-completion classes are in study.db `outcomes.failure`."
)
SUMMARIZE_COLS = (
    "model",
    "benchmark",
    "decoding",
    "version",
    "problems",
    "bleu",
    "corpus_bleu",
    "rouge_l",
    "bleu_diff",
    "p_bleu",
    "p_adj_bleu",
    "rouge_l_diff",
    "p_rouge_l",
    "p_adj_rouge_l",
)
SUMMARIZE_NOTE = (
    "Code summarization (humaneval-summarize): the model writes the docstring of a HumanEval function shown without "
    "it; the reference is the docstring's description (before its first example). `bleu`: mean sentence BLEU-4 "
    "(sacrebleu, 13a tokens, exponential smoothing, 0-100); `corpus_bleu`: BLEU-4 over the whole run; `rouge_l`: "
    "mean ROUGE-L F1 (rouge-score, stemmed, 0-1); each mean is over problems of the per-problem mean over samples. "
    "`*_diff` = version - fp; p: Wilcoxon signed-rank test of the per-problem scores against fp, paired by problem; "
    "p_adj: BH within each metric's family (model, benchmark, decoding). Nothing is executed, so these runs have "
    "no pass@1 and no failure classes (docs/evaluation.md)."
)
GROWTH_NOTE = (
    "For each version and class, the completions of fp and of the version are paired (same problem, same sample) "
    'and the outcome is "has this class": `new` counts completions that have it only under the version, `gone` '
    "only under fp. The test is the study's (`stats.test`; auto: clustered McNemar with several completions per "
    "problem, exact McNemar with one). `grows`: more completions of the class than fp, p_adj < alpha."
)


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


@dataclass(frozen=True)
class Table:
    """One table of the report: tables/<name>.csv and .tex, read from study.db by `read(store, scope, stats)`."""

    name: str
    read: Callable[[StudyStore, tables.Scope, dict], list[Row]]
    caption: str


@dataclass(frozen=True)
class Plot:
    """One figure: plots/<name>.png, drawn from the tables' rows (and `pareto`: the perplexity points)."""

    name: str
    draw: Callable[[dict[str, list[Row]], Path], Path]


@dataclass(frozen=True)
class Section:
    """One part of report.md: a heading, an optional paragraph, a body (Markdown lines from the tables' rows), the
    plots shown after it, and a blank line to close it where `gap` (always after plots)."""

    heading: str
    body: Callable[[dict[str, list[Row]]], list[str]]
    intro: str | None = None
    plots: tuple[str, ...] = ()
    gap: bool = False

    def lines(self, data: dict[str, list[Row]]) -> list[str]:
        intro = [self.intro, ""] if self.intro is not None else []
        return [
            self.heading,
            "",
            *intro,
            *self.body(data),
            *self.plots,
            *([""] if self.plots or self.gap else []),
        ]


TABLES = (
    Table(
        "pass_at_1",
        lambda store, scope, stats: tables.pass_table(store, scope),
        "pass@1 per version and language; paired test against fp (clustered McNemar where problems have several "
        "completions), corrected per (model, language)",
    ),
    Table(
        "summarization",
        lambda store, scope, stats: tables.summarize_table(store, scope),
        "Code summarization: mean BLEU-4 and ROUGE-L per version; Wilcoxon signed-rank test of per-problem scores "
        "against fp, BH-corrected per metric",
    ),
    Table(
        "calibration",
        lambda store, scope, stats: tables.pair_table(store, "calibration", scope),
        "Calibration kinds compared at equal method and bits (paired test as in the pass@1 table)",
    ),
    Table(
        "finetune",
        lambda store, scope, stats: tables.pair_table(store, "finetune", scope),
        "Fine-tuned vs not (baseline: fine-tuned; OR > 1: fine-tuning helped; uncorrected)",
    ),
    Table(
        "memory",
        lambda store, scope, stats: tables.memory_table(store, scope),
        "Memory: formula and stored bits per quantized weight, file size, peak RSS while evaluating",
    ),
    Table(
        "perplexity",
        lambda store, scope, stats: tables.perplexity_table(store, scope),
        "Held-out perplexity per version and language",
    ),
    Table(
        "quant_errors",
        lambda store, scope, stats: tables.quant_error_table(store, scope),
        "Quantization output error: mean relative output error over layers and the last block's relative output "
        "MSE, on the calibration rows (in-sample) and on held-out rows",
    ),
    Table(
        "inference",
        lambda store, scope, stats: tables.inference_table(store, scope),
        "Inference cost per version and backend: prefill and greedy decode tokens/s, peak RSS",
    ),
    Table(
        "timings", lambda store, scope, stats: tables.timing_table(store, scope), "Step timings and peak RSS"
    ),
    Table(
        "failures",
        lambda store, scope, stats: tables.failure_table(store, scope),
        "Failed completions by class (codequant.failures): one class per failed completion",
    ),
    Table(
        "failure_growth",
        lambda store, scope, stats: tables.failure_growth_table(store, scope, **stats),
        "Does a failure class grow from fp? Paired test per version and class, BH-corrected per "
        "(model, benchmark, language, decoding)",
    ),
)
CAPTIONS = {t.name: t.caption for t in TABLES}


def _failure_bars(data: dict[str, list[Row]], path: Path) -> Path:
    return plots.failure_bars(data["failures"], path, CLASSES)


PLOTS = (
    Plot("pass_vs_bits", lambda data, path: plots.pass_vs_bits(data["pass_at_1"], path)),
    Plot("memory_pareto", lambda data, path: plots.memory_pareto(data["memory"], path)),
    Plot("perplexity_vs_bits", lambda data, path: plots.perplexity_vs_bits(data["perplexity"], path)),
    Plot(
        "perplexity_pareto",
        lambda data, path: plots.perplexity_pareto(
            [p for p in data["pareto"] if p["bits_per_weight"] is not None or p["series"] == "fp"], path
        ),
    ),
    Plot("failures", _failure_bars),
)


def _table(
    name: str, columns: tuple[str, ...] | None = None, empty: str | None = None
) -> Callable[[dict[str, list[Row]]], list[str]]:
    """A section body: the table's Markdown (or `empty` where it has no rows: else `_(no rows)_`)."""

    def body(data: dict[str, list[Row]]) -> list[str]:
        rows = data[name]
        return [tables.markdown(rows, columns) if rows or empty is None else empty]

    return body


def _power(data: dict[str, list[Row]]) -> list[str]:
    return [f"- {line}" for line in tables.power_lines(data["pass_at_1"]) or ["(no comparisons yet)"]]


SECTIONS = (
    Section(
        "## pass@1 against fp",
        _table("pass_at_1", PASS_COLS),
        plots=("![pass@1 vs bits](plots/pass_vs_bits.png)",),
    ),
    Section(
        "### What these designs can detect",
        _power,
        gap=True,
        intro="A comparison that is not significant shows no loss only down to its minimum detectable drop:",
    ),
    Section(
        "## Code summarization",
        _table("summarization", SUMMARIZE_COLS, empty="(no summarization runs in this study)\n"),
        intro=SUMMARIZE_NOTE,
    ),
    Section("## Calibration", _table("calibration", PAIR_COLS)),
    Section("## Fine-tuning", _table("finetune", PAIR_COLS), intro=CAPTIONS["finetune"] + "."),
    Section(
        "## Memory",
        _table("memory"),
        plots=("![memory vs pass@1](plots/memory_pareto.png)",),
        intro=CAPTIONS["memory"]
        + ". fp: the model as loaded (fp32 tensors); quantized: the codequant checkpoint "
        "on disk. Evaluation runs the dequantized export, so peak RSS is that of an fp32 model.",
    ),
    Section(
        "## Perplexity",
        _table("perplexity"),
        plots=(
            "![perplexity vs bits](plots/perplexity_vs_bits.png)",
            "![perplexity vs bits per weight](plots/perplexity_pareto.png)",
        ),
    ),
    Section(
        "## Quantization error",
        _table("quant_errors"),
        intro=CAPTIONS["quant_errors"]
        + ". Decide on the held-out columns: in-sample errors flatter a fit that "
        "overfits the calibration rows.",
    ),
    Section(
        "## Inference",
        _table("inference"),
        intro=CAPTIONS["inference"]
        + ". `dequantized`: the fp32 export the evaluations ran; `aqlm-kernels`: the "
        "AQLM codes through the `aqlm` package's kernels (on CPU: numba, one thread). Each backend was measured in "
        "its own process; `bN_x_fp`: decode tokens/s at batch N over fp's. `j_per_token_bN`: energy per decoded "
        "token at batch N, by `energy_method`: `rapl`/`nvml` are counter readings, `estimate:cpu-time` is CPU "
        "seconds times a stated power per busy core (no counters on that machine), an estimate that ranks "
        "versions by CPU work (codequant.metrics.energy).",
    ),
    Section(
        "## Why completions fail",
        _table("failures", FAILURE_COLS),
        plots=("![failures per version](plots/failures.png)",),
        intro=CAPTIONS["failures"] + ". " + FAILURE_NOTE,
    ),
    Section(
        "### Does a class grow from fp?",
        _table("failure_growth", empty="(no fp and quantized runs to compare yet)"),
        intro=GROWTH_NOTE,
        gap=True,
    ),
    Section("## Timings", _table("timings")),
)


def build_report(study: str | Path, out: str | Path | None = None) -> Path:
    """Write STUDY/report (or `out`): report.md, tables/*.csv|tex, plots/*.png; returns the report.md path."""
    study = Path(study)
    db = study / "study.db"
    if not db.is_file():
        raise CodequantError(
            f"{study} holds no study.db; run `codequant study run CONFIG` first (the study folder "
            "is studies/<name>/ next to the YAML, or its --out)"
        )
    out = Path(out) if out is not None else study / "report"
    (out / "tables").mkdir(parents=True, exist_ok=True)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    stats = _stats_settings(study)
    with StudyStore(db) as store:
        scope = tables.Scope(store, _plan_keys(study))
        data = {t.name: t.read(store, scope, stats) for t in TABLES}
        pareto = tables.pareto_points(store, scope)
    for t in TABLES:
        tables.write_csv(data[t.name], out / "tables" / f"{t.name}.csv")
        tables.write_latex(
            data[t.name], out / "tables" / f"{t.name}.tex", t.caption, f"tab:{t.name.replace('_', '-')}"
        )
    for plot in PLOTS:
        plot.draw({**data, "pareto": pareto}, out / "plots" / f"{plot.name}.png")
    config = (
        json.loads((study / "study.json").read_text(encoding="utf-8"))
        if (study / "study.json").is_file()
        else {}
    )
    md = [
        f"# Study report: {config.get('name', study.name)}",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M')} from `{db}`. " + STATS_NOTE,
        "",
        *[line for section in SECTIONS for line in section.lines(data)],
        "Tables as CSV and LaTeX: `tables/`. Plots: `plots/`.",
        "",
    ]
    path = out / "report.md"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text("\n".join(md), encoding="utf-8")
    tmp.replace(path)
    return path
