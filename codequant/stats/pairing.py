"""Align two runs' per-completion outcomes so that McNemar compares like with like.

Outcomes are `{task_id: {sample_index: passed}}`. Two pairings:

- by completion (the study's): completion i of problem p in one run against completion i of problem p in the
  other. With seeded sampling, completion i is drawn with the same seed in both runs, so the pairs share their
  randomness as far as the models allow.
- by problem: one outcome per problem per run, from its completions by a rule: `majority` (passes when strictly
  more than half of its completions pass: a tie, e.g. 10 of 20, is a fail, because a problem solved no more
  often than not has not been shown to be solved), `any` (pass@k-like) or `all`. With one greedy completion per
  problem both pairings coincide.

Runs that do not cover the same completions are refused with what differs, unless `common_only` asks to keep the
shared ones (an interrupted run compared with a finished one, say).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from codequant.errors import CodequantError

Outcomes = Mapping[str, Mapping[int, bool]]
PAIRINGS = ("completion", "problem")
PROBLEM_RULES = ("majority", "any", "all")


@dataclass(frozen=True)
class Paired:
    """Aligned outcomes: `keys[i]` is (task_id, sample_index), or (task_id, -1) when paired by problem."""

    keys: list[tuple[str, int]]
    base: list[bool]
    other: list[bool]

    def __len__(self) -> int:
        return len(self.keys)


def problem_outcome(samples: Mapping[int, bool], rule: str = "majority") -> bool:
    """One pass/fail per problem from its completions."""
    values = [bool(v) for v in samples.values()]
    if not values:
        raise CodequantError("a problem without completions has no outcome")
    if rule == "majority":
        return 2 * sum(values) > len(values)  # strictly more than half; a tie fails
    if rule == "any":
        return any(values)
    if rule == "all":
        return all(values)
    raise CodequantError(f"unknown problem rule {rule!r}; use one of {', '.join(PROBLEM_RULES)}")


def _example(keys: list) -> str:
    head = ", ".join(str(k) for k in keys[:3])
    return head + (f" (and {len(keys) - 3} more)" if len(keys) > 3 else "")


def _check_same(
    kind: str, base_keys: set, other_keys: set, labels: tuple[str, str], common_only: bool
) -> list:
    only_base, only_other = sorted(base_keys - other_keys), sorted(other_keys - base_keys)
    if (only_base or only_other) and not common_only:
        parts = []
        if only_base:
            parts.append(f"{len(only_base)} only in {labels[0]}: {_example(only_base)}")
        if only_other:
            parts.append(f"{len(only_other)} only in {labels[1]}: {_example(only_other)}")
        raise CodequantError(
            f"cannot pair {labels[0]} with {labels[1]} by {kind}: they cover different {kind}s "
            f"({'; '.join(parts)}); finish the runs, or compare only the shared ones (--common-only)"
        )
    common = sorted(base_keys & other_keys)
    if not common:
        raise CodequantError(
            f"{labels[0]} and {labels[1]} share no {kind}; are they runs of the same benchmark?"
        )
    return common


def pair_outcomes(
    base: Outcomes,
    other: Outcomes,
    *,
    by: str = "completion",
    rule: str = "majority",
    common_only: bool = False,
    labels: tuple[str, str] = ("baseline", "other"),
) -> Paired:
    """Aligned (base, other) outcomes, by completion or by problem; clear error when the runs don't match."""
    if by == "completion":
        bk = {(t, int(i)) for t, s in base.items() for i in s}
        ok = {(t, int(i)) for t, s in other.items() for i in s}
        keys = _check_same("completion", bk, ok, labels, common_only)
        return Paired(
            keys=keys, base=[bool(base[t][i]) for t, i in keys], other=[bool(other[t][i]) for t, i in keys]
        )
    if by == "problem":
        if rule not in PROBLEM_RULES:
            raise CodequantError(f"unknown problem rule {rule!r}; use one of {', '.join(PROBLEM_RULES)}")
        tasks = _check_same(
            "problem",
            {t for t, s in base.items() if s},
            {t for t, s in other.items() if s},
            labels,
            common_only,
        )
        return Paired(
            keys=[(t, -1) for t in tasks],
            base=[problem_outcome(base[t], rule) for t in tasks],
            other=[problem_outcome(other[t], rule) for t in tasks],
        )
    raise CodequantError(f"unknown pairing {by!r}; use one of {', '.join(PAIRINGS)}")


def pass_rates(outcomes: Outcomes) -> dict[str, float]:
    """Per-problem pass rate (a continuous per-problem metric, e.g. for the Wilcoxon test)."""
    return {t: sum(map(bool, s.values())) / len(s) for t, s in outcomes.items() if s}
