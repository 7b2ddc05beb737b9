"""Failure taxonomy: why each failed completion failed (syntax, compile, hallucinated API, timeout, memory, wrong
answer, runtime exception by type, degenerate output) and how often per model version. Whether a class grows
from fp to a quantized version (a paired test per class over the same completions) is `codequant.stats.growth`.

    from codequant.failures import classify, counts
"""

from codequant.failures.assign import classify
from codequant.failures.classes import CLASSES, Classified, Failure
from codequant.failures.tally import Failures, counts, read_failures, run_failures

__all__ = [
    "CLASSES",
    "Classified",
    "Failure",
    "Failures",
    "classify",
    "counts",
    "read_failures",
    "run_failures",
]
