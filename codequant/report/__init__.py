"""The study report: tables (CSV, LaTeX, Markdown) and plots from a study's study.db."""

from codequant.report.build import build_report, power_summary

__all__ = ["build_report", "power_summary"]
