"""Inference cost of quantized models: decode tokens/s at batch 1 and 16, prefill tokens/s, peak RSS, file bytes.

    .venv/bin/python bench/inference.py --quantized runs/aqlm2 runs/gptq4 ...   # folders from `codequant quantize`

Variants: the fp reference (`--model`), and for each `--quantized DIR` every export it holds: `DIR` (dequantized
fp weights, any backend), `DIR/codequant` (codequant's own layers, decoded once), `DIR/aqlm` (the `aqlm` package's
kernels through plain transformers; numba with one thread on CPU, the only exact setting). `--variant LABEL=SPEC`
adds any model spec. Each variant runs in its own fresh process, so its peak RSS is its own. Prompts are held-out
Python code (never calibration data); decoding is greedy for exactly `--new-tokens` tokens (no early stop), with
codequant's preallocated KV cache. One run per variant, on the same machine, in one invocation: compare the
ratios, not the absolute numbers across machines. Prints one JSON object, then a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _weight_bytes(spec: str) -> int | None:
    folder = Path(spec)
    if not folder.is_dir():
        return None
    return sum(p.stat().st_size for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".gguf"))


def _formula_bits(spec: str) -> float | None:
    """bits/param of the quantized linears, from the quantize.json of the run that wrote the folder."""
    for folder in (Path(spec), Path(spec).parent):
        info = folder / "quantize.json"
        if info.is_file():
            return json.loads(info.read_text()).get("accounting", {}).get("formula_bits_per_param")
    return None


def measure(spec: str, prompt_tokens: int, new_tokens: int, batches: list[int], seed: int) -> dict:
    """Runs in the worker process: load, prefill, then greedy decoding at each batch size."""
    import torch
    from transformers import DynamicCache

    from codequant.calibration import heldout_tokens
    from codequant.generation.engine import cache_kwarg, use_all_cores
    from codequant.generation.kvcache import preallocate
    from codequant.models import load

    use_all_cores()
    t = time.perf_counter()
    loaded = load(spec)
    model, tok = loaded.model, loaded.tokenizer
    load_s = time.perf_counter() - t
    rows = max(batches)
    prompts = heldout_tokens("python", tok, samples=rows, seq_len=prompt_tokens, seed=seed)
    kw = cache_kwarg(model)
    out: dict = {"spec": spec, "load_s": round(load_s, 2)}
    with torch.inference_mode():
        model(input_ids=prompts[:1, :16])  # warm-up (kernels, numba JIT for aqlm)
        t = time.perf_counter()
        model(input_ids=prompts[:1], logits_to_keep=1)
        out["prefill_tok_s"] = round(prompt_tokens / (time.perf_counter() - t), 1)
        for b in batches:
            cache = DynamicCache(config=model.config)
            preallocate(cache)
            logits = model(input_ids=prompts[:b], use_cache=True, logits_to_keep=1, **{kw: cache}).logits
            token = logits[:, -1].argmax(-1, keepdim=True)
            t = time.perf_counter()
            for _ in range(new_tokens):
                logits = model(input_ids=token, use_cache=True, **{kw: cache}).logits
                token = logits[:, -1].argmax(-1, keepdim=True)
            out[f"decode_b{b}_tok_s"] = round(b * new_tokens / (time.perf_counter() - t), 1)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out["file_bytes"] = _weight_bytes(spec)
    out["formula_bits_per_param"] = _formula_bits(spec)
    return out


def variants(args: argparse.Namespace) -> list[tuple[str, str]]:
    found = [("fp32", args.model)]
    for folder in args.quantized:
        base = Path(folder)
        if not (base / "quantize.json").is_file():
            raise SystemExit(f"{base} is not a `codequant quantize` output folder (no quantize.json)")
        for label, path in (("dequantized", base), ("codequant", base / "codequant"), ("aqlm-kernels", base / "aqlm")):
            if (path / "config.json").is_file() or (path / "codequant.json").is_file():
                found.append((f"{base.name}/{label}", str(path)))
    for item in args.variant:
        label, _, spec = item.partition("=")
        found.append((label, spec or label))
    return found


def markdown(rows: list[dict], batches: list[int]) -> str:
    head = "| variant | bits/param | file MB | peak RSS MB | prefill tok/s | " + " | ".join(
        f"decode b{b} tok/s" for b in batches) + " |"
    lines = [head, "|" + "---|" * (5 + len(batches))]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['label']} | error: {r['error']} |")
            continue
        bits = "-" if r.get("formula_bits_per_param") is None else f"{r['formula_bits_per_param']:.3f}"
        mb = "-" if r.get("file_bytes") is None else f"{r['file_bytes'] / 1e6:.1f}"
        lines.append(f"| {r['label']} | {bits} | {mb} | {r['peak_rss_mb']} | {r['prefill_tok_s']} | "
                     + " | ".join(str(r[f"decode_b{b}_tok_s"]) for b in batches) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m", help="the fp reference")
    p.add_argument("--quantized", nargs="*", default=[], help="output folders of `codequant quantize`")
    p.add_argument("--variant", action="append", default=[], help="LABEL=SPEC, any model spec")
    p.add_argument("--prompt-tokens", type=int, default=256)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--batches", default="1,16")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",") if b]
    if args.worker:
        print(json.dumps(measure(args.worker, args.prompt_tokens, args.new_tokens, batches, args.seed)))
        return
    rows = []
    for label, spec in variants(args):
        cmd = [sys.executable, __file__, "--worker", spec, "--prompt-tokens", str(args.prompt_tokens),
               "--new-tokens", str(args.new_tokens), "--batches", args.batches, "--seed", str(args.seed)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
            rows.append({"label": label, "spec": spec, "error": tail})
        else:
            rows.append({"label": label, **json.loads(done.stdout.strip().splitlines()[-1])})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    import torch

    machine = {"cpus": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)), "platform": platform.platform(),
               "processor": platform.processor(), "torch": torch.__version__}
    fp = rows[0] if rows and "error" not in rows[0] else None
    for r in rows:  # ratios against fp32, measured in this one invocation
        if fp and "error" not in r and r is not fp:
            r["vs_fp32"] = {k: round(r[k] / fp[k], 3) for k in fp if k.endswith("tok_s") and fp[k]}
    print(json.dumps({"machine": machine, "prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens,
                      "variants": rows}, indent=2))
    print(markdown(rows, batches))


if __name__ == "__main__":
    main()
