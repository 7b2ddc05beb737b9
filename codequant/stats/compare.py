"""Compare runs with a baseline: pair their outcomes, test each pair (McNemar), correct per family.

This is what `codequant compare` prints and what a study runner or report builds on. Two sources:

- `compare_runs(baseline_dir, [other_dir, ...])`: evaluate run folders; the family is the whole call (every
  other run against one baseline).
- `compare_csv(csv, baseline="16bit")`: a per-completion CSV in the study's format; within each (model,
  language) every other quantization is compared with the baseline, and those comparisons form a family
  (exactly how the study's rq1_stats.csv was made). Explicit `pairs=[("3bit-finetuned", "3bit"), ...]` compare
  chosen pairs instead.

Each row reads: b = baseline passes and the other fails, c = the reverse, OR = b / c (> 1: the other is worse).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from codequant.errors import CodequantError
from codequant.stats.correction import adjust, normalize
from codequant.stats.mcnemar import mcnemar
from codequant.stats.pairing import Outcomes, Paired, pair_outcomes
from codequant.stats.runs import Run, read_outcome_csv, read_run


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

    def to_dict(self) -> dict:
        """JSON-safe: a non-finite number (OR with c = 0, say) becomes null; b and c tell the story."""
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}


def compare_pair(paired: Paired, *, model: str, language: str, baseline: str, other: str, pairing: str,
              method: str = "exact", ci: str = "exact", alpha: float = 0.05, family: str = "") -> Comparison:
    """McNemar on aligned outcomes -> an uncorrected Comparison (p_adjusted = p_value)."""
    res = mcnemar(paired.base, paired.other, method=method, ci=ci, alpha=alpha)
    n = len(paired)
    return Comparison(model=model, language=language, baseline=baseline, other=other, b=res.b, c=res.c,
                      n_pairs=res.n_pairs, odds_ratio=res.odds_ratio, ci_low=res.ci_low, ci_high=res.ci_high,
                      p_value=res.p_value, p_adjusted=res.p_value,
                      baseline_pass_rate=sum(paired.base) / n, other_pass_rate=sum(paired.other) / n,
                      pairing=pairing, method=method, family=family)


def correct(rows: Sequence[Comparison], correction: str = "bh",
            family: Callable[[Comparison], object] | None = None) -> list[Comparison]:
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


def compare_runs(baseline: str | Path | Run, others: Iterable[str | Path | Run], *, by: str = "completion",
                 rule: str = "majority", method: str = "exact", ci: str = "exact", alpha: float = 0.05,
                 correction: str = "bh", common_only: bool = False) -> list[Comparison]:
    """Each other run against the baseline run; the comparisons of one call form one correction family."""
    items = [baseline, *others]
    if len(items) < 2:
        raise CodequantError("compare needs a baseline run and at least one other run")
    paths = [i.path if isinstance(i, Run) else Path(i) for i in items]
    labels = _labels(paths)
    runs = [i if isinstance(i, Run) else read_run(i, label=lab) for i, lab in zip(items, labels, strict=True)]
    base = runs[0]
    rows = []
    for run in runs[1:]:
        if base.benchmark and run.benchmark and base.benchmark != run.benchmark:
            raise CodequantError(f"{base.label} ran {base.benchmark} but {run.label} ran {run.benchmark}; "
                                 "compare runs of the same benchmark")
        paired = pair_outcomes(base.outcomes, run.outcomes, by=by, rule=rule, common_only=common_only,
                               labels=(base.label, run.label))
        language = ",".join(sorted(set(base.languages) | set(run.languages))) or (base.benchmark or "")
        rows.append(compare_pair(paired, model=base.model or base.label, language=language, baseline=base.label,
                              other=run.label, pairing=by, method=method, ci=ci, alpha=alpha,
                              family=base.label))
    return correct(rows, correction)


def parse_pair(text: str) -> tuple[str, str]:
    """'BASE:OTHER' -> (BASE, OTHER)."""
    parts = text.split(":")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise CodequantError(f"bad pair {text!r}; write BASELINE:OTHER, e.g. 3bit-finetuned:3bit")
    return parts[0].strip(), parts[1].strip()


def compare_outcome_groups(groups: dict[tuple[str, str, str], Outcomes], *, baseline: str | None = None,
                           pairs: Sequence[tuple[str, str]] | None = None, by: str = "completion",
                           rule: str = "majority", method: str = "exact", ci: str = "exact",
                           alpha: float = 0.05, correction: str = "bh") -> list[Comparison]:
    """Comparisons within each (model, language) of `{(model, quantization, language): outcomes}`."""
    if (baseline is None) == (not pairs):
        raise CodequantError("give either a baseline label (--baseline) or explicit pairs (--pair BASE:OTHER)")
    by_ml: dict[tuple[str, str], dict[str, Outcomes]] = {}
    for (model, quant, lang), outcomes in groups.items():
        by_ml.setdefault((model, lang), {})[quant] = outcomes
    labels = {q for qs in by_ml.values() for q in qs}
    wanted = [baseline] if baseline is not None else [x for p in pairs for x in p]
    unknown = sorted({w for w in wanted if w not in labels})
    if unknown:
        raise CodequantError(f"no quantization {', '.join(map(repr, unknown))} in the data; "
                             f"it has {', '.join(sorted(labels))}")
    rows = []
    for (model, lang), quants in by_ml.items():
        if baseline is not None:
            todo = [(baseline, q) for q in quants if q != baseline] if baseline in quants else []
        else:
            todo = [(a, b) for a, b in pairs if a in quants and b in quants]
        for a, b in todo:
            paired = pair_outcomes(quants[a], quants[b], by=by, rule=rule,
                                   labels=(f"{model}/{lang}/{a}", f"{model}/{lang}/{b}"))
            rows.append(compare_pair(paired, model=model, language=lang, baseline=a, other=b, pairing=by,
                                  method=method, ci=ci, alpha=alpha, family=f"{model}/{lang}"))
    if not rows:
        raise CodequantError("nothing to compare: no (model, language) holds both sides of a comparison")
    return correct(rows, correction)


def compare_csv(path: str | Path, baseline: str | None = None, *, pairs: Sequence[tuple[str, str]] | None = None,
                **kwargs) -> list[Comparison]:
    """`compare_outcome_groups` over a per-completion CSV in the study's format (see runs.read_outcome_csv)."""
    return compare_outcome_groups(read_outcome_csv(path), baseline=baseline, pairs=pairs, **kwargs)
