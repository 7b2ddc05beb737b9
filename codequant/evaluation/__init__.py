"""Evaluation runs: generate, execute, record per-sample outcomes, summarize pass@k."""

from codequant.evaluation.runner import CANONICAL, EvalSettings, Loaded, evaluate, summarize

__all__ = ["CANONICAL", "EvalSettings", "Loaded", "evaluate", "summarize"]
