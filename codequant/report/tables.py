"""The report's tables, read from study.db, and their three renderings (CSV for tools, LaTeX for papers,
Markdown for report.md). Rows are plain dicts; CSV keeps full precision, the others round for reading."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from codequant.failures import CLASSES, counts
from codequant.metrics.text import METRICS
from codequant.stats.growth import growth_tests
from codequant.stats.options import CompareOptions
from codequant.study.store import StudyStore

Row = dict[str, Any]


class Scope:
    """Which rows of study.db belong to the study as configured now: the steps of its current plan.

    study.db keeps every step ever run (so that a grid can shrink and grow again without recomputing), but a report
    must show the current grid only: a comparison from an earlier, larger grid was corrected within a different
    family. `None` (no plan.json) keeps everything.
    """

    def __init__(self, store: StudyStore, step_keys: set[str] | None = None):
        self.steps = step_keys
        self.variants: set[str] | None = None
        if step_keys is not None:
            self.variants = {
                r["variant_key"]
                for r in store.rows("SELECT key, variant_key FROM runs")
                if r["key"] in step_keys
            }
            self.variants |= {
                r["key"] for r in store.rows("SELECT key FROM variants") if r["key"] in step_keys
            }

    def step(self, key: str) -> bool:
        return self.steps is None or key in self.steps

    def variant(self, key: str) -> bool:
        return self.variants is None or key in self.variants


def _cmp_index(store: StudyStore, kind: str, scope: Scope) -> dict[tuple, Row]:
    rows = [
        r
        for r in store.rows("SELECT * FROM comparisons WHERE kind = ?", (kind,))
        if scope.step(r["step_key"])
    ]
    return {
        (r["model"], r["benchmark"], r["decoding"], r["language"], r["baseline"], r["other"]): r for r in rows
    }


def pass_table(store: StudyStore, scope: Scope | None = None) -> list[Row]:
    """pass@1 of every version per benchmark/language with its paired test against fp (OR > 1: worse than fp)."""
    scope = scope or Scope(store)
    vs = _cmp_index(store, "vs_fp", scope)
    out = []
    for r in store.rows(
        "SELECT * FROM runs ORDER BY model, benchmark, decoding, language, method != 'fp', "
        "method, bits DESC, calibration, finetuned"
    ):
        if not scope.step(r["key"]) or r["task"]:  # text tasks have no pass@1: summarize_table
            continue
        c = vs.get((r["model"], r["benchmark"], r["decoding"], r["language"], "fp", r["variant"]), {})
        out.append(
            {
                "model": r["model"],
                "benchmark": r["benchmark"],
                "language": r["language"],
                "decoding": r["decoding"],
                "version": r["variant"],
                "method": r["method"],
                "bits": r["bits"],
                "calibration": r["calibration"],
                "finetuned": bool(r["finetuned"]),
                "problems": r["problems"],
                "completions": r["completions"],
                "pass@1": r["pass_at_1"],
                "b": c.get("b"),
                "c": c.get("c"),
                "odds_ratio": c.get("odds_ratio"),
                "ci_low": c.get("ci_low"),
                "ci_high": c.get("ci_high"),
                **_test_cells(c),
            }
        )
    return out


def _test_cells(c: Row) -> Row:
    """The cells every comparison row shares: the test and its p, the paper's p, the effect and the power."""
    mde = c.get("mde")
    if mde is None and c.get("n_problems"):
        mde = math.inf  # stored as null: no drop up to the whole pass rate is detectable
    return {
        "test": c.get("test") or ("mcnemar" if c else None),
        "p": c.get("p_value"),
        "p_adj": c.get("p_adjusted"),
        "p_mcnemar": c.get("p_mcnemar", c.get("p_value")),
        "diff": c.get("pass_diff"),
        "diff_ci_low": c.get("diff_ci_low"),
        "diff_ci_high": c.get("diff_ci_high"),
        "mde": mde,
        "icc": c.get("icc"),
        "n_problems": c.get("n_problems"),
        "samples": c.get("samples_per_problem"),
    }


def power_lines(rows: Sequence[Row]) -> list[str]:
    """One sentence per comparison design: what drop it could not have shown (codequant.stats.power)."""
    seen: dict[tuple, str] = {}
    for r in rows:
        if r.get("mde") is None or not r.get("n_problems") or r.get("p") is None:
            continue
        design = f"{r['n_problems']} problems x {r['samples']:g} sample{'s' if r['samples'] != 1 else ''}"
        where = f"{r['model']} {r['benchmark']} {r['language']} ({r.get('decoding', '')})".replace(" ()", "")
        # with one completion per problem the correlation within a problem plays no part in the design
        icc = "" if r.get("icc") is None or r["samples"] == 1 else f", ICC {r['icc']:.2f}"
        if math.isinf(r["mde"]):
            text = (
                f"{where}: {design} cannot show any drop at 80% power (even losing every pass would not be "
                f"significant){icc}"
            )
        else:
            text = f"{where}: {design} cannot show a pass@1 drop below {100 * r['mde']:.1f} points at 80% power{icc}"
        seen.setdefault((where, design), text)
    return list(seen.values())


def _failure_runs(store: StudyStore, scope: Scope) -> list[tuple[Row, dict[str, dict[int, str | None]]]]:
    """Every run in scope with its completions' failure classes (None: passed; "unclassified": a failed completion
    ingested before the taxonomy, until the next `study run` fills it)."""
    runs = [
        r
        for r in store.rows(
            "SELECT * FROM runs ORDER BY model, benchmark, decoding, language, "
            "method != 'fp', method, bits DESC, calibration, finetuned"
        )
        if scope.step(r["key"]) and not r["task"]
    ]  # text tasks are not executed: no failures
    out = []
    for r in runs:
        table: dict[str, dict[int, str | None]] = {}
        for o in store.rows(
            "SELECT task_id, sample_index, passed, failure FROM outcomes WHERE run_key = ?", (r["key"],)
        ):
            table.setdefault(o["task_id"], {})[int(o["sample_index"])] = (
                None if o["passed"] else (o["failure"] or "unclassified")
            )
        out.append((r, table))
    return out


def failure_table(store: StudyStore, scope: Scope | None = None) -> list[Row]:
    """Failed completions per class and version (codequant.failures), as counts over all completions."""
    scope = scope or Scope(store)
    out = []
    for r, table in _failure_runs(store, scope):
        n = counts(table)
        row = {
            "model": r["model"],
            "benchmark": r["benchmark"],
            "language": r["language"],
            "decoding": r["decoding"],
            "version": r["variant"],
            "method": r["method"],
            "bits": r["bits"],
            "calibration": r["calibration"],
            "finetuned": bool(r["finetuned"]),
            "completions": n["completions"],
            "passed": n["passed"],
            **{c: n[c] for c in CLASSES},
        }
        unclassified = sum(v == "unclassified" for s in table.values() for v in s.values())
        if unclassified:
            row["unclassified"] = unclassified
        out.append(row)
    return out


def failure_growth_table(
    store: StudyStore, scope: Scope | None = None, *, test: str = "auto", alpha: float = 0.05
) -> list[Row]:
    """Does a failure class grow from fp to a version? One paired test per (version, class), BH-corrected within
    each model x benchmark x language x decoding (codequant.stats.growth)."""
    scope = scope or Scope(store)
    families: dict[tuple, list[tuple[Row, dict]]] = {}
    for r, table in _failure_runs(store, scope):
        families.setdefault((r["model"], r["benchmark"], r["language"], r["decoding"]), []).append((r, table))
    out = []
    for (model, benchmark, language, decoding), runs in families.items():
        fp = [t for r, t in runs if r["method"] == "fp"]
        shared = {(t, i) for t, s in fp[0].items() for i in s} if fp else set()
        others = {
            r["variant"]: t
            for r, t in runs
            if r["method"] != "fp" and any((task, i) in shared for task, s in t.items() for i in s)
        }
        if not fp or not others:
            continue
        for g in growth_tests(fp[0], others, CompareOptions(test=test, alpha=alpha), common_only=True):
            out.append(
                {
                    "model": model,
                    "benchmark": benchmark,
                    "language": language,
                    "decoding": decoding,
                    "version": g.other,
                    "class": g.failure,
                    "fp": g.base_count,
                    "count": g.other_count,
                    "new": g.new,
                    "gone": g.gone,
                    "test": g.test,
                    "p": g.p_value,
                    "p_adj": g.p_adjusted,
                    "grows": g.grows,
                }
            )
    return out


def summarize_table(store: StudyStore, scope: Scope | None = None) -> list[Row]:
    """Code summarization: mean sentence BLEU-4, corpus BLEU-4 and mean ROUGE-L per version, with the Wilcoxon
    signed-rank test of per-problem scores against fp (p_adj: BH within the metric's family)."""
    scope = scope or Scope(store)
    tests = {
        (r["model"], r["benchmark"], r["decoding"], r["other"], r["metric"]): r
        for r in store.rows("SELECT * FROM score_comparisons WHERE kind = 'vs_fp'")
        if scope.step(r["step_key"])
    }
    out = []
    for r in store.rows(
        "SELECT * FROM runs WHERE task IS NOT NULL ORDER BY model, benchmark, decoding, "
        "method != 'fp', method, bits DESC, calibration, finetuned"
    ):
        if not scope.step(r["key"]):
            continue
        row = {
            "model": r["model"],
            "benchmark": r["benchmark"],
            "decoding": r["decoding"],
            "version": r["variant"],
            "method": r["method"],
            "bits": r["bits"],
            "problems": r["problems"],
            "completions": r["completions"],
            "bleu": r["bleu"],
            "corpus_bleu": r["corpus_bleu"],
            "rouge_l": r["rouge_l"],
        }
        for metric in METRICS:
            t = tests.get((r["model"], r["benchmark"], r["decoding"], r["variant"], metric), {})
            row.update(
                {
                    f"{metric}_diff": t.get("mean_diff"),
                    f"p_{metric}": t.get("p_value"),
                    f"p_adj_{metric}": t.get("p_adjusted"),
                }
            )
        out.append(row)
    return out


def pair_table(store: StudyStore, kind: str, scope: Scope | None = None) -> list[Row]:
    """Rows of one comparison kind ('calibration' or 'finetune') as stored by the compare steps."""
    scope = scope or Scope(store)
    out = []
    for r in store.rows(
        "SELECT * FROM comparisons WHERE kind = ? ORDER BY model, benchmark, decoding, language, "
        "baseline, other",
        (kind,),
    ):
        if not scope.step(r["step_key"]):
            continue
        out.append(
            {
                "model": r["model"],
                "benchmark": r["benchmark"],
                "language": r["language"],
                "decoding": r["decoding"],
                "baseline": r["baseline"],
                "other": r["other"],
                "pass@1 baseline": r["baseline_pass_rate"],
                "pass@1 other": r["other_pass_rate"],
                "b": r["b"],
                "c": r["c"],
                "odds_ratio": r["odds_ratio"],
                "ci_low": r["ci_low"],
                "ci_high": r["ci_high"],
                **_test_cells(dict(r)),
                "correction": r["correction"],
            }
        )
    return out


def memory_table(store: StudyStore, scope: Scope | None = None) -> list[Row]:
    """Per model version: bits of the quantized linears (formula and stored), bits/weight of the whole saved file
    (embeddings, head, norms, codebooks, scales, codes), bytes on disk, peak RSS of its evaluation, mean pass@1."""
    scope = scope or Scope(store)
    peaks: dict[str, float] = {}
    for r in store.rows(
        "SELECT r.key, r.variant_key, s.peak_rss_mb FROM runs r JOIN steps s ON s.key = r.key"
    ):
        if r["peak_rss_mb"] is not None and scope.step(r["key"]):
            peaks[r["variant_key"]] = max(peaks.get(r["variant_key"], 0.0), r["peak_rss_mb"])
    passes: dict[str, list[float]] = {}
    for r in store.rows("SELECT key, variant_key, pass_at_1 FROM runs"):
        if r["pass_at_1"] is not None and scope.step(r["key"]):
            passes.setdefault(r["variant_key"], []).append(r["pass_at_1"])
    out = []
    for v in store.rows(
        "SELECT v.*, f.formula_bits, f.stored_bits, f.whole_file_bits, f.file_bytes, "
        "f.quantized_params FROM variants v "
        "LEFT JOIN footprints f ON f.variant_key = v.key ORDER BY v.model, v.method != 'fp', "
        "v.method, v.bits DESC, v.calibration, v.finetuned"
    ):
        if not scope.variant(v["key"]):
            continue
        p = passes.get(v["key"], [])
        out.append(
            {
                "model": v["model"],
                "version": v["label"],
                "method": v["method"],
                "bits": v["bits"],
                "formula_bits": v["formula_bits"],
                "stored_bits": v["stored_bits"],
                "whole_file_bits": v["whole_file_bits"],
                "file_mb": v["file_bytes"] / 2**20 if v["file_bytes"] is not None else None,
                "peak_rss_mb": peaks.get(v["key"]),
                "mean_pass@1": sum(p) / len(p) if p else None,
            }
        )
    return out


def perplexity_table(store: StudyStore, scope: Scope | None = None) -> list[Row]:
    scope = scope or Scope(store)
    return [
        {
            "model": r["model"],
            "version": r["variant"],
            "method": r["method"],
            "bits": r["bits"],
            "calibration": r["calibration"],
            "finetuned": bool(r["finetuned"]),
            "language": r["language"],
            "perplexity": r["perplexity"],
            "tokens": r["tokens"],
        }
        for r in store.rows(
            "SELECT * FROM perplexities ORDER BY model, language, method != 'fp', method, "
            "bits DESC, calibration, finetuned"
        )
        if scope.variant(r["variant_key"])
    ]


def inference_table(store: StudyStore, scope: Scope | None = None) -> list[Row]:
    """Inference cost per version and backend; `x fp` columns are decode tokens/s over fp's, same batch."""
    scope = scope or Scope(store)
    rows = [
        r
        for r in store.rows(
            "SELECT * FROM inference ORDER BY model, method != 'fp', method, bits DESC, "
            "calibration, finetuned, backend"
        )
        if scope.variant(r["variant_key"])
    ]
    decode = {(r["variant_key"], r["backend"]): json.loads(r["decode_tok_s"] or "{}") for r in rows}
    energy = {(r["variant_key"], r["backend"]): json.loads(r["decode_j_per_token"] or "{}") for r in rows}
    batches = sorted({int(b) for d in decode.values() for b in d})
    fp = {r["model"]: decode[(r["variant_key"], r["backend"])] for r in rows if r["method"] == "fp"}
    out = []
    for r in rows:
        d = decode[(r["variant_key"], r["backend"])]
        row = {
            "model": r["model"],
            "version": r["variant"],
            "method": r["method"],
            "bits": r["bits"],
            "backend": r["backend"],
            "formula_bits": r["formula_bits"],
            "file_mb": r["file_bytes"] / 2**20 if r["file_bytes"] is not None else None,
            "peak_rss_mb": r["peak_rss_mb"],
            "prefill_tok_s": r["prefill_tok_s"],
        }
        for b in batches:
            row[f"decode_b{b}_tok_s"] = d.get(str(b))
            ref = fp.get(r["model"], {}).get(str(b))
            row[f"b{b}_x_fp"] = d[str(b)] / ref if ref and d.get(str(b)) is not None else None
        for b in batches:
            row[f"j_per_token_b{b}"] = energy[(r["variant_key"], r["backend"])].get(str(b))
        row["energy_method"] = r["energy_method"]
        out.append(row)
    return out


def quant_error_table(store: StudyStore, scope: Scope | None = None) -> list[Row]:
    """Per quantized version: output error in-sample (the calibration rows the fit saw) and held-out."""
    scope = scope or Scope(store)
    return [
        {
            "model": r["model"],
            "version": r["variant"],
            "method": r["method"],
            "bits": r["bits"],
            "layer_error": r["layer_error"],
            "layer_error_heldout": r["layer_error_heldout"],
            "block_mse": r["block_mse"],
            "block_mse_heldout": r["block_mse_heldout"],
            "val_rows": r["val_rows"],
            "quantize_s": r["quantize_s"],
        }
        for r in store.rows("SELECT * FROM quant_errors ORDER BY model, method, bits DESC, calibration")
        if scope.variant(r["variant_key"])
    ]


def pareto_points(store: StudyStore, scope: Scope | None = None) -> list[Row]:
    """Held-out perplexity against measured bits per weight (footprints' formula bits of the quantized linears, and
    the whole saved file's bits), per version and language, for `plots.perplexity_pareto`; fp has no linear bits
    (it is the reference line) but has whole-file bits."""
    scope = scope or Scope(store)
    rows = store.rows("SELECT variant_key, formula_bits, whole_file_bits FROM footprints")
    bits = {r["variant_key"]: r["formula_bits"] for r in rows}
    whole = {r["variant_key"]: r["whole_file_bits"] for r in rows}
    out = []
    for r in store.rows("SELECT * FROM perplexities"):
        if not scope.variant(r["variant_key"]):
            continue
        series = r["method"] if r["method"] == "fp" else f"{r['method']} {r['calibration'] or ''}".strip()
        series += " +ft" if r["finetuned"] else ""
        out.append(
            {
                "series": series,
                "language": r["language"],
                "perplexity": r["perplexity"],
                "bits_per_weight": None if r["method"] == "fp" else bits.get(r["variant_key"]),
                "whole_file_bits": whole.get(r["variant_key"]),
            }
        )
    return out


def timing_table(store: StudyStore, scope: Scope | None = None) -> list[Row]:
    scope = scope or Scope(store)
    return [
        {
            "kind": r["kind"],
            "step": r["label"],
            "status": r["status"],
            "seconds": r["seconds"],
            "peak_rss_mb": r["peak_rss_mb"],
            "attempts": r["attempts"],
        }
        for r in store.rows("SELECT * FROM steps ORDER BY started")
        if scope.step(r["key"])
    ]


# ---- renderings ----
def fmt(value: Any, key: str = "") -> str:
    """A cell for people: p-values in 4 decimals or scientific, rates in %, other floats in 3 decimals."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if math.isinf(value):
            return "none" if key == "mde" else "inf"
        if key in ("diff", "diff_ci_low", "diff_ci_high"):  # pass@1 differences, in points
            return f"{100 * value:+.1f}"
        if key == "mde":
            return f"{100 * value:.1f}"
        if key == "p" or key.startswith("p_"):  # p_value, p_adjusted
            return f"{value:.2e}" if value < 1e-3 else f"{value:.4f}"
        if key.startswith("pass@1") or key.startswith("mean_pass"):
            return f"{100 * value:.1f}%"
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def write_csv(rows: Sequence[Row], path: Path) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        if rows:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return path


def _tex(s: str) -> str:
    s = s.replace("\\", "\x00")
    for a in "&%_#${}":
        s = s.replace(a, "\\" + a)
    return s.replace("\x00", r"\textbackslash{}")


def write_latex(rows: Sequence[Row], path: Path, caption: str, label: str) -> Path:
    cols = list(rows[0]) if rows else []
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        rf"\caption{{{_tex(caption)}}}",
        rf"\label{{{label}}}",
        r"\begin{tabular}{" + "l" * len(cols) + "}",
        r"\toprule",
        " & ".join(_tex(c) for c in cols) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(_tex(fmt(r[c], c)) for c in cols) + r" \\" for r in rows]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def markdown(rows: Sequence[Row], columns: Sequence[str] | None = None) -> str:
    if not rows:
        return "_(no rows)_\n"
    cols = list(columns or rows[0])
    out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    out += ["| " + " | ".join(fmt(r.get(c), c).replace("|", "\\|") for c in cols) + " |" for r in rows]
    return "\n".join(out) + "\n"


def dumps(rows: Sequence[Row]) -> str:
    return json.dumps(list(rows), indent=2, default=str)
