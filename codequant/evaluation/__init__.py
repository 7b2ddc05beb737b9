"""Evaluation runs: generate, execute, record per-sample outcomes, summarize pass@k."""

from codequant.evaluation.runner import CANONICAL, evaluate, summarize

__all__ = ["CANONICAL", "evaluate", "summarize"]
