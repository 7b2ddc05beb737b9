"""Compare runs with a baseline: pair their outcomes, test each pair (McNemar), correct per family.

This is what `codequant compare` prints and what a study runner or report builds on. Two sources:

- `compare_runs(baseline_dir, [other_dir, ...])`: evaluate run folders; the family is the whole call (every
  other run against one baseline).
- `compare_csv(csv, baseline="16bit")`: a per-completion CSV in the study's format; within each (model,
  language) every other quantization is compared with the baseline, and those comparisons form a family
  (exactly how the study's rq1_stats.csv was made). Explicit `pairs=[("3bit-finetuned", "3bit"), ...]` compare
  chosen pairs instead.

Each row reads: b = baseline passes and the other fails, c = the reverse, OR = b / c (> 1: the other is worse).

Which test gives `p_value` (the p that BH/Holm correct) is `test`:

- "mcnemar": McNemar per completion, every pair independent (the study's; `method` exact or asymptotic);
- "clustered": Durkalski's clustered McNemar, problems as clusters (codequant.stats.clustered);
- "permutation": the sign-flip permutation test over problems (`resamples`, `seed`);
- "auto" (default): "mcnemar" when every problem has exactly one pair, else "clustered".

Whatever the test, `p_mcnemar` keeps the exact per-completion McNemar p (uncorrected) so a report can show both,
`pass_diff` is pass@1(other) - pass@1(base) with a problem-level bootstrap interval (`diff_ci_low/high`) and a
clustered standard error (`diff_se`), and `mde` is the smallest drop the design detects at 80% power
(codequant.stats.power; `icc` is the intra-problem correlation it assumed). The OR interval stays the
per-completion one: for a clustered interval use the pass@1 difference.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from codequant.errors import CodequantError
from codequant.stats.clustered import cluster_counts, clustered_mcnemar, permutation_test
from codequant.stats.correction import adjust, normalize
from codequant.stats.effect import pass_diff
from codequant.stats.mcnemar import mcnemar, mcnemar_counts
from codequant.stats.options import TESTS, CompareOptions, PairLabels
from codequant.stats.pairing import Outcomes, Paired, pair_outcomes
from codequant.stats.power import comparison_mde
from codequant.stats.runs import Run, read_outcome_table, read_run


@dataclass(frozen=True)
class Comparison:
    """One baseline-vs-other test; `p_adjusted` is corrected within `family`."""

    model: str
    language: str
    baseline: str
    other: str
    b: int
    c: int
    n_pairs: int
    odds_ratio: float
    ci_low: float
    ci_high: float
    p_value: float
    p_adjusted: float
    baseline_pass_rate: float  # over the paired items
    other_pass_rate: float
    pairing: str
    method: str
    correction: str = "none"
    family: str = ""
    test: str = "mcnemar"  # which test gave p_value: mcnemar | clustered | permutation
    p_mcnemar: float = math.nan  # exact McNemar per completion, uncorrected (the study's test)
    n_problems: int = 0
    samples_per_problem: float = math.nan  # n_pairs / n_problems (a whole number when balanced)
    pass_diff: float = math.nan  # pass@1(other) - pass@1(base); negative: a drop
    diff_ci_low: float = math.nan  # problem-level bootstrap percentile interval, level 1 - alpha
    diff_ci_high: float = math.nan
    diff_se: float = math.nan  # clustered (sandwich) standard error of pass_diff
    mde: float = math.nan  # smallest drop detectable at 80% power; inf (null in JSON): none up to base rate
    icc: float = math.nan  # intra-problem correlation the MDE assumed
    pairing_key: str = ""  # how completions were matched: sample_index | sample | order

    def to_dict(self) -> dict:
        """JSON-safe: a non-finite number (OR with c = 0, say) becomes null; b and c tell the story."""
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()
        }


def choose_test(test: str, paired: Paired) -> str:
    """The test to run: `test` itself, or for "auto" McNemar when each problem has one pair, else clustered."""
    if test not in TESTS:
        raise CodequantError(f"unknown test {test!r}; use one of {', '.join(TESTS)}")
    if test != "auto":
        return test
    tasks = [t for t, _ in paired.keys]
    return "mcnemar" if len(set(tasks)) == len(tasks) else "clustered"


def compare_pair(
    paired: Paired, labels: PairLabels, options: CompareOptions, *, pairing_key: str = ""
) -> Comparison:
    """One test on aligned outcomes -> an uncorrected Comparison (p_adjusted = p_value).

    Problems (the task ids of `paired.keys`) are the clusters; `options.resamples` and `options.seed` drive the
    permutation test and the bootstrap interval of the pass@1 difference; the row's `pairing` is `options.by`.
    """
    method, ci, alpha, resamples, seed = (
        options.method,
        options.ci,
        options.alpha,
        options.resamples,
        options.seed,
    )
    chosen = choose_test(options.test, paired)
    res = mcnemar(paired.base, paired.other, method=method, ci=ci, alpha=alpha)
    p_exact = res.p_value if method == "exact" else mcnemar_counts(res.b, res.c).p_value
    clusters = [t for t, _ in paired.keys]
    if chosen == "mcnemar":
        p, used = res.p_value, method
    elif chosen == "clustered":
        p, used = clustered_mcnemar(paired.base, paired.other, clusters).p_value, "durkalski"
    else:
        perm = permutation_test(paired.base, paired.other, clusters, n_resamples=resamples, seed=seed)
        p, used = perm.p_value, ("exact" if perm.n_resamples == 0 else f"{perm.n_resamples} resamples")
    effect = pass_diff(
        paired.base, paired.other, clusters, n_resamples=resamples, seed=seed, confidence=1 - alpha
    )
    counts = cluster_counts(paired.base, paired.other, clusters)
    mde, icc = comparison_mde(counts.base_pass, counts.n, alpha=alpha)
    n = len(paired)
    return Comparison(
        model=labels.model,
        language=labels.language,
        baseline=labels.baseline,
        other=labels.other,
        b=res.b,
        c=res.c,
        n_pairs=res.n_pairs,
        odds_ratio=res.odds_ratio,
        ci_low=res.ci_low,
        ci_high=res.ci_high,
        p_value=p,
        p_adjusted=p,
        baseline_pass_rate=sum(paired.base) / n,
        other_pass_rate=sum(paired.other) / n,
        pairing=options.by,
        method=used,
        family=labels.family,
        test=chosen,
        p_mcnemar=p_exact,
        n_problems=effect.n_problems,
        samples_per_problem=n / effect.n_problems,
        pass_diff=effect.diff,
        diff_ci_low=effect.ci_low,
        diff_ci_high=effect.ci_high,
        diff_se=effect.se,
        mde=mde,
        icc=icc,
        pairing_key=pairing_key,
    )


def correct(
    rows: Sequence[Comparison], correction: str = "bh", family: Callable[[Comparison], object] | None = None
) -> list[Comparison]:
    """Rows with `p_adjusted` corrected within each family (default: the rows' `family` field)."""
    correction = normalize(correction)
    key = family or (lambda r: r.family)
    groups: dict[object, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(key(r), []).append(i)
    out = list(rows)
    for idx in groups.values():
        for i, p in zip(idx, adjust([rows[i].p_value for i in idx], correction), strict=True):
            out[i] = replace(rows[i], p_adjusted=p, correction=correction)
    return out


def _labels(paths: Sequence[Path]) -> list[str]:
    names = [p.name or str(p) for p in paths]
    return [n if names.count(n) == 1 else str(p) for n, p in zip(names, paths, strict=True)]


def compare_runs(
    baseline: str | Path | Run,
    others: Iterable[str | Path | Run],
    options: CompareOptions | None = None,
    *,
    common_only: bool = False,
) -> list[Comparison]:
    """Each other run against the baseline run; the comparisons of one call form one correction family.

    Completions are matched by (task_id, sample_index); `options.test` picks the test (see the module docstring).
    """
    options = options or CompareOptions()
    items = [baseline, *others]
    if len(items) < 2:
        raise CodequantError("compare needs a baseline run and at least one other run")
    paths = [i.path if isinstance(i, Run) else Path(i) for i in items]
    labels = _labels(paths)
    runs = [i if isinstance(i, Run) else read_run(i, label=lab) for i, lab in zip(items, labels, strict=True)]
    base = runs[0]
    if any(r.scored for r in runs):
        raise CodequantError(
            "text-scored runs (code summarization) have no pass/fail outcomes; compare them with "
            "codequant.stats.compare_score_runs (the Wilcoxon test per metric)"
        )
    rows = []
    for run in runs[1:]:
        if base.benchmark and run.benchmark and base.benchmark != run.benchmark:
            raise CodequantError(
                f"{base.label} ran {base.benchmark} but {run.label} ran {run.benchmark}; "
                "compare runs of the same benchmark"
            )
        paired = pair_outcomes(
            base.outcomes,
            run.outcomes,
            by=options.by,
            rule=options.rule,
            common_only=common_only,
            labels=(base.label, run.label),
        )
        language = ",".join(sorted(set(base.languages) | set(run.languages))) or (base.benchmark or "")
        labels = PairLabels(
            model=base.model or base.label,
            language=language,
            baseline=base.label,
            other=run.label,
            family=base.label,
        )
        rows.append(compare_pair(paired, labels, options, pairing_key="sample_index"))
    return correct(rows, options.correction)


def parse_pair(text: str) -> tuple[str, str]:
    """'BASE:OTHER' -> (BASE, OTHER)."""
    parts = text.split(":")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise CodequantError(f"bad pair {text!r}; write BASELINE:OTHER, e.g. 3bit-finetuned:3bit")
    return parts[0].strip(), parts[1].strip()


def compare_outcome_groups(
    groups: dict[tuple[str, str, str], Outcomes],
    options: CompareOptions | None = None,
    *,
    baseline: str | None = None,
    pairs: Sequence[tuple[str, str]] | None = None,
    pairing_key: str = "sample_index",
) -> list[Comparison]:
    """Comparisons within each (model, language) of `{(model, quantization, language): outcomes}`.

    Outcomes are `{problem: {i: passed}}`; completion i of a problem pairs with completion i of the same
    problem (`pairing_key` records what i means). `options.test` picks the test (see the module docstring).
    """
    options = options or CompareOptions()
    if (baseline is None) == (not pairs):
        raise CodequantError(
            "give either a baseline label (--baseline) or explicit pairs (--pair BASE:OTHER)"
        )
    by_ml: dict[tuple[str, str], dict[str, Outcomes]] = {}
    for (model, quant, lang), outcomes in groups.items():
        by_ml.setdefault((model, lang), {})[quant] = outcomes
    labels = {q for qs in by_ml.values() for q in qs}
    wanted = [baseline] if baseline is not None else [x for p in pairs for x in p]
    unknown = sorted({w for w in wanted if w not in labels})
    if unknown:
        raise CodequantError(
            f"no quantization {', '.join(map(repr, unknown))} in the data; it has {', '.join(sorted(labels))}"
        )
    rows = []
    for (model, lang), quants in by_ml.items():
        if baseline is not None:
            todo = [(baseline, q) for q in quants if q != baseline] if baseline in quants else []
        else:
            todo = [(a, b) for a, b in pairs if a in quants and b in quants]
        for a, b in todo:
            paired = pair_outcomes(
                quants[a],
                quants[b],
                by=options.by,
                rule=options.rule,
                labels=(f"{model}/{lang}/{a}", f"{model}/{lang}/{b}"),
            )
            labels = PairLabels(model=model, language=lang, baseline=a, other=b, family=f"{model}/{lang}")
            rows.append(compare_pair(paired, labels, options, pairing_key=pairing_key))
    if not rows:
        raise CodequantError("nothing to compare: no (model, language) holds both sides of a comparison")
    return correct(rows, options.correction)


def compare_csv(
    path: str | Path,
    baseline: str | None = None,
    options: CompareOptions | None = None,
    *,
    pairs: Sequence[tuple[str, str]] | None = None,
) -> list[Comparison]:
    """`compare_outcome_groups` over a per-completion CSV in the study's format (see runs.read_outcome_table).

    Pairs by the CSV's `sample` column when it has one, else by the order of rows within each problem; each
    row's `pairing_key` says which. The study's own test is `test="mcnemar"`.
    """
    table = read_outcome_table(path)
    return compare_outcome_groups(
        table.groups, options, baseline=baseline, pairs=pairs, pairing_key=table.pairing_key
    )
