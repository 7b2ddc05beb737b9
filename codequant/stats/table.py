"""How comparison rows look in a terminal: one rich table, numbers rounded for reading (JSON keeps them whole)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.table import Table

from codequant.stats.compare import Comparison


def _num(x: float, digits: int = 3) -> str:
    if math.isnan(x):
        return "-"
    if math.isinf(x):
        return "inf"
    return f"{x:.{digits}g}" if abs(x) < 1e-3 and x != 0 else f"{x:.{digits}f}"


def _p(x: float) -> str:
    return f"{x:.2e}" if x < 1e-3 else f"{x:.4f}"


def comparison_table(rows: Sequence[Comparison], alpha: float = 0.05) -> Table:
    """Rows as a table; significant adjusted p-values are marked with *."""
    correction = rows[0].correction if rows else "none"
    table = Table(title=f"McNemar ({rows[0].method if rows else 'exact'}), paired by "
                        f"{rows[0].pairing if rows else 'completion'}, correction: {correction}; "
                        "OR = b/c > 1: other is worse")
    for col in ("model", "language", "baseline", "other", "pass base", "pass other", "b", "c", "pairs",
                "OR", f"{int(round((1 - alpha) * 100))}% CI", "p", "p adj"):
        table.add_column(col, justify="left" if col in ("model", "language", "baseline", "other") else "right")
    for r in rows:
        table.add_row(r.model, r.language, r.baseline, r.other, f"{100 * r.baseline_pass_rate:.1f}%",
                      f"{100 * r.other_pass_rate:.1f}%", str(r.b), str(r.c), str(r.n_pairs), _num(r.odds_ratio),
                      f"[{_num(r.ci_low)}, {_num(r.ci_high)}]", _p(r.p_value),
                      _p(r.p_adjusted) + (" *" if r.p_adjusted < alpha else ""))
    return table
