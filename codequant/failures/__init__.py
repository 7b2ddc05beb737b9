"""Failure taxonomy: why each failed completion failed (syntax, compile, hallucinated API, timeout, memory, wrong
answer, runtime exception by type, degenerate output), how often per model version, and whether a class grows
from fp to a quantized version (a paired test per class over the same completions).

    from codequant.failures import classify, counts, growth_tests
"""

from codequant.failures.classes import CLASSES, Classified, Failure, classify
from codequant.failures.growth import GrowthTest, counts, growth_tests, run_failures

__all__ = ["CLASSES", "Classified", "Failure", "GrowthTest", "classify", "counts", "growth_tests", "run_failures"]
