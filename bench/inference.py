"""Inference cost of every quantized version: prefill and decode tokens/s (batch 1 and 16), peak RSS, file bytes.

    .venv/bin/python bench/inference.py --under runs/quant        # every `codequant quantize` folder in it
    make bench-models && make bench                                   # builds those folders first (resumable)

Variants: the fp reference (`--model`) and, for each `--quantized DIR`, every export it holds (see
`codequant.metrics.inference.backends`: the dequantized fp32 export, codequant's native checkpoint, and the
`aqlm` package's kernels for AQLM folders). `--variant LABEL=SPEC` adds any model spec. Each runs in its own fresh
process (its peak RSS is its own), one after the other in this invocation, so compare ratios against fp32 (in
`vs_fp32`), not absolute numbers across machines. Prints one JSON object, then a markdown table; `--out` also
writes both (bench/results/inference.{json,md}).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from codequant.metrics.inference import InferenceSettings, backends, measure_isolated  # noqa: E402


def variants(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    """(label, backend, spec) in measuring order: fp32 first (the ratios' reference)."""
    found = [("fp32", "fp", args.model)]
    folders = list(args.quantized)
    if args.under:
        folders += sorted(
            str(q.parent) for q in Path(args.under).glob("*/quantize.json") if str(q.parent) not in folders
        )
    for folder in folders:
        base = Path(folder)
        if not (base / "quantize.json").is_file():
            raise SystemExit(f"{base} is not a `codequant quantize` output folder (no quantize.json)")
        found += [(f"{base.name}/{name}", name, path) for name, path in backends(base)]
    for item in args.variant:
        label, _, spec = item.partition("=")
        found.append((label, "given", spec or label))
    return found


def markdown(rows: list[dict], batches: list[int]) -> str:
    head = (
        "| variant | bits/param | whole-file bits/weight | file MB | peak RSS MB | prefill tok/s | "
        + " | ".join(f"decode b{b} tok/s" for b in batches)
        + " | decode b1 vs fp32 | "
        + " | ".join(f"J/token b{b}" for b in batches)
        + " | energy method |"
    )
    lines = [head, "|" + "---|" * (8 + 2 * len(batches))]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['label']} | error: {r['error']} |")
            continue
        bits = "-" if r.get("formula_bits_per_param") is None else f"{r['formula_bits_per_param']:.3f}"
        mb = "-" if r.get("file_bytes") is None else f"{r['file_bytes'] / 1e6:.1f}"
        whole = r.get("whole_file_bits_per_weight")
        bits += f" | {'-' if whole is None else f'{whole:.3f}'}"
        rel = r.get("vs_fp32", {}).get(f"decode_b{batches[0]}")
        lines.append(
            f"| {r['label']} | {bits} | {mb} | {r['peak_rss_mb']} | {r['prefill_tok_s']} | "
            + " | ".join(str(r["decode_tok_s"].get(str(b))) for b in batches)
            + f" | {'1.000' if r['label'] == 'fp32' else ('-' if rel is None else f'{rel:.3f}')} | "
            + " | ".join(str((r.get("decode_j_per_token") or {}).get(str(b), "-")) for b in batches)
            + f" | {r.get('energy_method') or '-'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m", help="the fp reference")
    p.add_argument("--quantized", nargs="*", default=[], help="output folders of `codequant quantize`")
    p.add_argument(
        "--under", help="also every `codequant quantize` folder directly under this one (runs/quant)"
    )
    p.add_argument("--variant", action="append", default=[], help="LABEL=SPEC, any model spec")
    p.add_argument("--prompt-tokens", type=int, default=256)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--batches", default="1,16")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--dtype",
        default="auto",
        help="weights dtype of every variant: auto (float32 on the CPU, the "
        "checkpoint's own on a GPU) | float32 | float16 | bfloat16",
    )
    p.add_argument("--timeout", type=float, default=1800, help="seconds per variant")
    p.add_argument("--out", help="write OUT.json and OUT.md too")
    args = p.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",") if b]
    from codequant.models import check_dtype

    settings = InferenceSettings(
        args.prompt_tokens, args.new_tokens, tuple(batches), args.seed, args.device, check_dtype(args.dtype)
    )
    rows = []
    for label, backend, spec in variants(args):
        rows.append({"label": label, **measure_isolated(spec, settings, backend, timeout=args.timeout)})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    import torch

    fp = rows[0] if rows and "error" not in rows[0] else None
    for r in rows:  # ratios against fp32, measured in this one invocation
        if fp and "error" not in r and r is not fp:
            rel = {"prefill": r["prefill_tok_s"] / fp["prefill_tok_s"]}
            rel.update(
                {f"decode_b{b}": r["decode_tok_s"][str(b)] / fp["decode_tok_s"][str(b)] for b in batches}
            )
            r["vs_fp32"] = {k: round(v, 3) for k, v in rel.items()}
    machine = {
        "cpus": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "platform": platform.platform(),
        "processor": platform.processor(),
        "torch": torch.__version__,
    }
    report = {"machine": machine, "settings": {**vars(settings), "batches": batches}, "variants": rows}
    table = markdown(rows, batches)
    print(json.dumps(report, indent=2))
    print(table)
    if args.out:
        Path(f"{args.out}.json").write_text(json.dumps(report, indent=2) + "\n")
        Path(f"{args.out}.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
