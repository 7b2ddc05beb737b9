"""Multiple-testing correction of a family of p-values: Benjamini-Hochberg, Holm, Bonferroni, or none.

The study controls the false discovery rate with Benjamini-Hochberg within each family (e.g. the four precisions
compared with 16 bit for one model and language). Holm controls the family-wise error rate instead and is the
conservative alternative. Written out here (a few lines each) so the arithmetic is visible and testable against
statsmodels' `multipletests`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from codequant.errors import CodequantError

ALIASES = {
    "bh": "bh",
    "fdr_bh": "bh",
    "benjamini-hochberg": "bh",
    "fdr": "bh",
    "holm": "holm",
    "bonferroni": "bonferroni",
    "none": "none",
}
CORRECTIONS = ("bh", "holm", "bonferroni", "none")


def normalize(method: str) -> str:
    """The canonical name of a correction method ('bh', 'holm', 'bonferroni', 'none')."""
    key = (method or "").strip().lower()
    if key not in ALIASES:
        raise CodequantError(f"unknown correction {method!r}; use one of {', '.join(CORRECTIONS)}")
    return ALIASES[key]


def adjust(pvalues: Sequence[float], method: str = "bh") -> list[float]:
    """Adjusted p-values, in the input order, for one family of tests."""
    method = normalize(method)
    p = np.asarray(pvalues, dtype=float)
    if p.ndim != 1:
        raise CodequantError("p-values must be a flat sequence")
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise CodequantError("p-values must lie in [0, 1]")
    m = p.size
    if m == 0 or method == "none":
        return p.tolist()
    if method == "bonferroni":
        return np.minimum(p * m, 1.0).tolist()
    order = np.argsort(p, kind="mergesort")
    ranked = p[order]
    ranks = np.arange(1, m + 1)
    if method == "bh":
        # p_(i) * m / i, made monotone from the largest p down.
        adj = np.minimum.accumulate((ranked * m / ranks)[::-1])[::-1]
    else:  # holm: (m - i + 1) * p_(i), made monotone from the smallest p up.
        adj = np.maximum.accumulate(ranked * (m - ranks + 1))
    out = np.empty(m)
    out[order] = np.minimum(adj, 1.0)
    return out.tolist()
