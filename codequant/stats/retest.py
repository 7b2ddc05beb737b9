"""The study's published significance claims, re-tested with problems as clusters.

The study (arXiv 2503.07103) ran an exact McNemar over all problems x 20 completions as if every pair were
independent. For every comparison whose per-completion data it published (rq1_cg.csv against 16 bit: 16 rows,
BH within each (model, language) as the study did; rq1ft_cg.csv, fine-tuned against not: 8 rows, uncorrected as
the study did) this puts side by side: the published p and OR, our exact per-completion McNemar (which
reproduces the published p), the clustered McNemar (Durkalski) and the sign-flip permutation test over
problems, each corrected the study's way, and whether the published conclusion at alpha = 0.05 still holds.

Regenerate the table of docs/statistics.md with

    python -m codequant.stats.retest ../shared/reference/lowbit-quantization
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass
from pathlib import Path

from codequant.errors import CodequantError
from codequant.stats.compare import Comparison, compare_csv
from codequant.stats.options import CompareOptions

FT_PAIRS = [("3bit-finetuned", "3bit"), ("2bit-finetuned", "2bit")]


@dataclass(frozen=True)
class RetestRow:
    """One published comparison re-tested; every p after the study's correction unless named raw."""

    family: str  # "rq1" (vs 16bit, BH per model/language) or "rq1-finetuned" (uncorrected)
    model: str
    language: str
    baseline: str
    other: str
    b: int
    c: int
    published_p: float
    published_or: float
    p_mcnemar_raw: float
    p_mcnemar: float
    p_clustered_raw: float
    p_clustered: float
    p_permutation: float
    alpha: float = 0.05

    @property
    def published_significant(self) -> bool:
        return self.published_p < self.alpha

    @property
    def holds(self) -> bool:
        """Does the clustered test reach the published conclusion (significant or not) at alpha?"""
        return (self.p_clustered < self.alpha) == self.published_significant


def _published(path: Path) -> dict[tuple[str, str, str, str], dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return {
            (r["model"], r["lng"], r["base_precision"], r["quant_precision"]): r for r in csv.DictReader(fh)
        }


def _family(ref: Path, family: str, resamples: int, seed: int, alpha: float) -> list[RetestRow]:
    if family == "rq1":
        data, stats_file = ref / "rq1_cg.csv", ref / "rq1_stats.csv"
        baseline, pairs, correction = "16bit", None, "bh"
    else:
        data, stats_file = ref / "rq1ft_cg.csv", ref / "rq1-finetuned_stats.csv"
        baseline, pairs, correction = None, FT_PAIRS, "none"
    for f in (data, stats_file):
        if not f.is_file():
            raise CodequantError(
                f"{f} is missing; point at the study's reference folder (lowbit-quantization)"
            )
    published = _published(stats_file)
    runs: dict[str, list[Comparison]] = {
        test: compare_csv(
            data,
            baseline,
            CompareOptions(test=test, resamples=resamples, seed=seed, alpha=alpha, correction=correction),
            pairs=pairs,
        )
        for test in ("mcnemar", "clustered", "permutation")
    }
    out = []
    for m, cl, pe in zip(runs["mcnemar"], runs["clustered"], runs["permutation"], strict=True):
        # the fine-tuned table lists the non-fine-tuned model as base_precision (see docs/statistics.md)
        key = (
            (m.model, m.language, m.baseline, m.other)
            if family == "rq1"
            else (m.model, m.language, m.other, m.baseline)
        )
        pub = published[key]
        out.append(
            RetestRow(
                family=family,
                model=m.model,
                language=m.language,
                baseline=m.baseline,
                other=m.other,
                b=m.b,
                c=m.c,
                published_p=float(pub["p.value"]),
                published_or=float(pub["OR"]),
                p_mcnemar_raw=m.p_value,
                p_mcnemar=m.p_adjusted,
                p_clustered_raw=cl.p_value,
                p_clustered=cl.p_adjusted,
                p_permutation=pe.p_adjusted,
                alpha=alpha,
            )
        )
    return out


def retest(
    ref: str | Path, *, resamples: int = 10_000, seed: int = 0, alpha: float = 0.05
) -> list[RetestRow]:
    """All 24 published comparisons re-tested (rq1 then rq1-finetuned), in a stable order."""
    ref = Path(ref)
    rows = _family(ref, "rq1", resamples, seed, alpha) + _family(ref, "rq1-finetuned", resamples, seed, alpha)
    bits = {"16bit": 16, "8bit": 8, "4bit": 4, "3bit": 3, "2bit": 2}
    return sorted(
        rows, key=lambda r: (r.family, r.model, r.language, -bits.get(r.other.split("-")[0], 0), r.other)
    )


def _p(x: float) -> str:
    return f"{x:.2g}" if x < 1e-3 else f"{x:.3f}"


def markdown(rows: list[RetestRow]) -> str:
    """The re-test as a markdown table (the one in docs/statistics.md)."""
    head = (
        "| family | model | lang | baseline | other | b | c | published p | published OR | exact p | "
        "exact p (corr.) | clustered p | clustered p (corr.) | permutation p (corr.) | conclusion |"
    )
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in rows:
        verdict = (
            "significant, holds"
            if r.published_significant and r.holds
            else "significant, **lost**"
            if r.published_significant
            else "n.s., holds"
            if r.holds
            else "n.s., **now significant**"
        )
        lines.append(
            f"| {r.family} | {r.model} | {r.language} | {r.baseline} | {r.other} | {r.b} | {r.c} | "
            f"{_p(r.published_p)} | {r.published_or:.3f} | {_p(r.p_mcnemar_raw)} | {_p(r.p_mcnemar)} | "
            f"{_p(r.p_clustered_raw)} | {_p(r.p_clustered)} | {_p(r.p_permutation)} | {verdict} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "ref",
        nargs="?",
        default="../shared/reference/lowbit-quantization",
        help="folder with rq1_cg.csv, rq1ft_cg.csv, rq1_stats.csv, rq1-finetuned_stats.csv",
    )
    parser.add_argument("--resamples", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(markdown(retest(args.ref, resamples=args.resamples, seed=args.seed)))


if __name__ == "__main__":
    main()
