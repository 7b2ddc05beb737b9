"""Tokens/s of codequant's decoding engine vs. plain `model.generate` (batch 1 loop, as a user would write it).

Same 16 HumanEval prompts, chat style, greedy, same stop rule (first fenced block closed) for both, one run each.
Prints one JSON object; `identical_greedy` says whether both produced the very same tokens.

    .venv/bin/python bench/generation.py [--model smollm2-135m] [--n 16] [--max-new-tokens 256] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

from codequant.benchmarks.registry import load_benchmark
from codequant.evaluation.runner import _load_model
from codequant.generation.engine import Request, SamplingParams, generate, use_all_cores
from codequant.generation.extract import fenced_block_complete
from codequant.generation.hf import hf_generate
from codequant.generation.prompts import build_prompt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()

    cores = use_all_cores()
    t0 = time.perf_counter()
    model, tok = _load_model(args.model)
    load_s = time.perf_counter() - t0
    problems = load_benchmark("humaneval")[: args.n]
    reqs = []
    for p in problems:
        pt = build_prompt(p, tok, "chat")
        reqs.append(Request(pt.text, key=p.task_id, add_special_tokens=pt.add_special_tokens))
    params = SamplingParams(max_new_tokens=args.max_new_tokens, stop_rule=fenced_block_complete)

    t0 = time.perf_counter()
    ours = generate(model, tok, reqs, params, batch_size=args.batch_size, progress=True)
    ours_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = hf_generate(model, tok, reqs, params, progress=True)
    ref_s = time.perf_counter() - t0

    ours_tok = sum(c.new_tokens for c in ours)
    ref_tok = sum(c.new_tokens for c in ref)
    same = [a.token_ids == b.token_ids for a, b in zip(ours, ref, strict=True)]
    print(json.dumps({
        "model": args.model, "prompts": len(reqs), "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size, "load_s": round(load_s, 1),
        "codequant_tokens": ours_tok, "codequant_s": round(ours_s, 2), "codequant_tok_s": round(ours_tok / ours_s, 2),
        "hf_generate_tokens": ref_tok, "hf_generate_s": round(ref_s, 2), "hf_generate_tok_s": round(ref_tok / ref_s, 2),
        "ratio": round((ours_tok / ours_s) / (ref_tok / ref_s), 2),
        "identical_greedy": all(same), "identical_rows": sum(same),
        "machine": {"cpu_count": os.cpu_count(), "usable_cores": cores, "torch_threads": torch.get_num_threads(),
                    "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "torch": torch.__version__},
    }, indent=2))


if __name__ == "__main__":
    main()
