"""The report's figures (matplotlib, Agg backend: no display needed): pass@1 vs bits, memory vs pass@1 with its
Pareto front, perplexity vs bits. The fp model is drawn as a dashed horizontal reference, since it has no
quantization bit width; bits are nominal (the preset's), the memory plot uses measured bytes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

Row = dict[str, Any]


def _series_name(r: Row) -> str:
    name = r["method"]
    if r.get("calibration"):
        name += f" {Path(str(r['calibration'])).name}"
    return name + (" +ft" if r.get("finetuned") else "")


def _by_bits(ax, rows: Sequence[Row], value: str) -> None:
    series: dict[str, list[tuple[int, float]]] = {}
    for r in rows:
        if r[value] is None:
            continue
        if r["method"] == "fp":
            ax.axhline(r[value], linestyle="--", color="gray", label="fp")
        else:
            series.setdefault(_series_name(r), []).append((r["bits"], r[value]))
    for name, pts in sorted(series.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    bits = sorted({r["bits"] for r in rows if r["bits"] is not None})
    if bits:
        ax.set_xticks(bits)
    ax.set_xlabel("bits per weight (nominal)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def _panels(groups: dict[str, list[Row]], value: str, ylabel: str, title: str, path: Path) -> Path:
    n = max(1, len(groups))
    fig, axes = plt.subplots(1, n, figsize=(4.5 * n, 3.6), squeeze=False)
    for ax, (name, rows) in zip(axes[0], sorted(groups.items()), strict=False):
        _by_bits(ax, rows, value)
        ax.set_title(name, fontsize=9)
        ax.set_ylabel(ylabel)
    if not groups:
        axes[0][0].text(0.5, 0.5, "no data", ha="center", va="center")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def pass_vs_bits(rows: Sequence[Row], path: Path) -> Path:
    """One panel per (model, benchmark/language, decoding); a line per method (+calibration, +ft)."""
    groups: dict[str, list[Row]] = {}
    for r in rows:
        groups.setdefault(f"{r['model']} {r['benchmark']} ({r['language']}, {r['decoding']})", []).append(r)
    return _panels(groups, "pass@1", "pass@1", "pass@1 vs bits", path)


def perplexity_vs_bits(rows: Sequence[Row], path: Path) -> Path:
    groups: dict[str, list[Row]] = {}
    for r in rows:
        groups.setdefault(f"{r['model']} ({r['language']})", []).append(r)
    return _panels(groups, "perplexity", "held-out perplexity", "perplexity vs bits", path)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of points no other point beats on both axes (less memory and at least as good, or vice versa)."""
    front = []
    for i, (m, p) in enumerate(points):
        dominated = any(
            (m2 <= m and p2 >= p) and (m2 < m or p2 > p) for j, (m2, p2) in enumerate(points) if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def memory_pareto(rows: Sequence[Row], path: Path) -> Path:
    """File size (MiB) vs mean pass@1 of each model version, the Pareto front joined by a line."""
    pts = [r for r in rows if r.get("file_mb") is not None and r.get("mean_pass@1") is not None]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    xy = [(r["file_mb"], r["mean_pass@1"]) for r in pts]
    for r, (x, y) in zip(pts, xy, strict=True):
        ax.scatter(x, y, color="C3" if r["method"] == "fp" else "C0")
        ax.annotate(
            f"{r['model']}:{r['version']}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points"
        )
    front = pareto_front(xy)
    if len(front) > 1:
        ax.plot(
            [xy[i][0] for i in front],
            [xy[i][1] for i in front],
            linestyle=":",
            color="C2",
            label="Pareto front",
        )
        ax.legend(fontsize=7)
    if not pts:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("model file size (MiB; quantized: codequant checkpoint)")
    ax.set_ylabel("mean pass@1 over benchmarks")
    ax.set_title("memory vs pass@1", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


BITS_AXES = {
    "bits_per_weight": "bits per weight of the quantized linears (measured, codebooks and scales included)",
    "whole_file_bits": "bits per weight of the whole saved file (embeddings, head, norms included)",
}


def pareto_axes(rows: Sequence[Row]) -> list[str]:
    """The x axes `perplexity_pareto` draws: linear-only bits always, the whole file's bits when any row has them."""
    return ["bits_per_weight"] + (
        ["whole_file_bits"] if any(r.get("whole_file_bits") is not None for r in rows) else []
    )


def pareto_series(
    rows: Sequence[Row], language: str, axis: str
) -> tuple[dict[str, list[tuple[float, float]]], list[float]]:
    """({series: [(bits, perplexity), ...]}, fp perplexities) of one language on one bits axis. On the linear axis
    fp has no bits (the reference line); on the whole-file axis fp is a point too (its file is 16 or 32 bits)."""
    series: dict[str, list[tuple[float, float]]] = {}
    fp = []
    for r in rows:
        if r["language"] != language or r.get("perplexity") is None:
            continue
        if r.get("bits_per_weight") is None:
            fp.append(r["perplexity"])
        x = r.get(axis)
        if x is not None:
            series.setdefault(r["series"], []).append((x, r["perplexity"]))
    return series, fp


def perplexity_pareto(
    rows: Sequence[Row], path: Path, title: str = "held-out perplexity vs bits per weight"
) -> Path:
    """One panel per language and bits axis: each method's held-out perplexity against its *measured* bits per
    weight, log scale, the fp model as a dashed line and the Pareto front over all methods dotted. The first row
    of panels counts the quantized linears' bits (codebooks and scales included); a second row, when the rows
    have `whole_file_bits`, the whole saved file's (on a small model the fp embedding alone moves a "2-bit"
    model to several bits). Rows: {"series", "bits_per_weight", "whole_file_bits"?, "language", "perplexity"};
    a row with bits_per_weight None is the fp reference."""
    langs = sorted({r["language"] for r in rows})
    axes_keys = pareto_axes(rows)
    ncols = max(1, len(langs))
    fig, axes = plt.subplots(len(axes_keys), ncols, figsize=(5.2 * ncols, 4 * len(axes_keys)), squeeze=False)
    for row_axes, key in zip(axes, axes_keys, strict=True):
        for ax, lang in zip(row_axes, langs, strict=False):
            series, fp = pareto_series(rows, lang, key)
            cap = (
                30 * min(fp) if fp else float("inf")
            )  # beyond 30x fp a model is broken; say so instead of scaling
            if fp:
                ax.axhline(min(fp), linestyle="--", color="gray", label="fp")
            for i, (name, pts) in enumerate(sorted(series.items())):
                pts.sort()
                shown = [min(p[1], cap) for p in pts]
                ax.plot([p[0] for p in pts], shown, marker="o", label=name, color=f"C{i}")
                over = [(p[0], cap) for p in pts if p[1] > cap]
                if over:
                    ax.scatter(*zip(*over, strict=True), marker="^", s=60, color=f"C{i}", zorder=3)
            if any(p[1] > cap for ps in series.values() for p in ps):
                ax.text(
                    0.99,
                    0.98,
                    f"^ off scale (> {cap:.0f})",
                    ha="right",
                    va="top",
                    fontsize=7,
                    transform=ax.transAxes,
                )
            pts = [p for ps in series.values() for p in ps]
            front = pareto_front([(x, -y) for x, y in pts])  # fewer bits and lower perplexity
            if len(front) > 1:
                ax.plot(
                    [pts[i][0] for i in front],
                    [pts[i][1] for i in front],
                    linestyle=":",
                    color="black",
                    linewidth=1,
                    label="Pareto front",
                )
            ax.set_yscale("log")
            ax.set_xlabel(BITS_AXES[key], fontsize=8)
            ax.set_ylabel("held-out perplexity (log)")
            ax.set_title(lang, fontsize=9)
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=7)
    if not langs:
        axes[0][0].text(0.5, 0.5, "no data", ha="center", va="center")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def failure_bars(rows: Sequence[Row], path: Path, classes: Sequence[str]) -> Path:
    """Stacked bars: one panel per (model, benchmark/language, decoding), one bar per version, the share of its
    completions in each failure class (what is left to 100% passed)."""
    import numpy as np

    groups: dict[str, list[Row]] = {}
    for r in rows:
        groups.setdefault(f"{r['model']} {r['benchmark']} ({r['language']}, {r['decoding']})", []).append(r)
    n = max(1, len(groups))
    fig, axes = plt.subplots(
        1,
        n,
        figsize=(max(4.5, 0.9 * max((len(g) for g in groups.values()), default=1) + 2) * n, 4.2),
        squeeze=False,
    )
    colors = plt.get_cmap("tab10")
    for ax, (name, group) in zip(axes[0], sorted(groups.items()), strict=False):
        x = np.arange(len(group))
        bottom = np.zeros(len(group))
        for k, cls in enumerate(classes):
            share = np.array([100.0 * (r.get(cls) or 0) / max(1, r["completions"]) for r in group])
            if share.any():
                ax.bar(x, share, bottom=bottom, label=cls, color=colors(k % 10))
            bottom += share
        ax.set_xticks(x, [r["version"] for r in group], rotation=30, ha="right", fontsize=7)
        ax.set_ylabel("% of completions failing")
        ax.set_title(name, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    if not groups:
        axes[0][0].text(0.5, 0.5, "no data", ha="center", va="center")
    fig.suptitle("why completions fail, per version", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
