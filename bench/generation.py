"""Tokens/s of codequant's decoding engine vs. plain `model.generate` (batch 1 loop, as a user would write it).

codequant runs a whole HumanEval pass (164 chat prompts, greedy, first fenced block closed or 512 new tokens, as
`codequant evaluate` does); plain `generate` runs the first `--hf-n` of the same prompts (a batch-1 loop's rate
does not depend on how many prompts follow, and the whole pass would take it ~25 min). Both in one process, one
after the other. `identical_greedy` compares the tokens of those shared prompts. With `--vllm`, vLLM (the `vllm`
backend, in its own Python: $CODEQUANT_VLLM_PYTHON, `make setup-vllm`) runs the same `--n` prompts on the same fp32
weights: `vllm_tok_s` over its decode time (engine start excluded, `vllm_wall_s` includes it) and
`vllm_identical_rows` against codequant's tokens. Prints one JSON object.

    .venv/bin/python bench/generation.py [--model smollm2-135m] [--n 164] [--hf-n 16] [--max-new-tokens 512] [--vllm]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

from codequant.benchmarks.registry import load_benchmark
from codequant.evaluation.runner import load_model
from codequant.generation.engine import Request, SamplingParams, generate, use_all_cores
from codequant.generation.extract import fenced_block_complete
from codequant.generation.hf import hf_generate
from codequant.generation.prompts import build_prompt


def llama_cpp_run(model, tok, reqs: list[Request], params: SamplingParams) -> dict:
    """llama.cpp on the same weights (fp32 exported to GGUF f32 by llama.cpp's converter), same prompts, greedy,
    one prompt at a time; null figures with the reason when llama-cpp-python is not installed."""
    import llama_cpp_peer as peer

    try:
        llm = peer.load(peer.cached_f32_gguf(model, tok), n_ctx=4096)
        t0 = time.perf_counter()
        runs = peer.generate(
            llm, [(r.prompt, r.add_special_tokens) for r in reqs], params.max_new_tokens, params.stop_rule
        )
        seconds = time.perf_counter() - t0
    except peer.PeerUnavailable as exc:
        return {"llama_cpp_tok_s": None, "llama_cpp_note": str(exc)}
    tokens = sum(len(ids) for ids, _ in runs)
    return {
        "llama_cpp_version": peer.version(),
        "llama_cpp_gguf": "f32",
        "llama_cpp_prompts": len(runs),
        "llama_cpp_tokens": tokens,
        "llama_cpp_s": round(seconds, 2),
        "llama_cpp_tok_s": round(tokens / seconds, 2),
        "token_ids": [ids for ids, _ in runs],
    }


def vllm_run(spec: str, tok, reqs: list[Request], params: SamplingParams, ours) -> dict:
    """vLLM on the same fp32 weights and prompts (all of them, batched by vLLM); null figures with the reason when
    no Python with vLLM is configured."""
    from codequant.errors import CodequantError
    from codequant.generation.vllm import VllmSettings, vllm_generate, vllm_model_path

    settings = VllmSettings(dtype="float32", memory_fraction=0.3)
    t0 = time.perf_counter()
    try:
        runs = vllm_generate(vllm_model_path(spec), tok, reqs, params, settings=settings, progress=True)
    except CodequantError as exc:
        return {"vllm_tok_s": None, "vllm_note": str(exc)}
    wall = time.perf_counter() - t0
    tokens, seconds = sum(c.new_tokens for c in runs), sum(c.seconds for c in runs)
    same = sum(a.token_ids == b.token_ids for a, b in zip(ours, runs, strict=True))
    return {
        "vllm_dtype": settings.dtype,
        "vllm_prompts": len(runs),
        "vllm_tokens": tokens,
        "vllm_decode_s": round(seconds, 2),
        "vllm_wall_s": round(wall, 2),
        "vllm_tok_s": round(tokens / seconds, 2),
        "vllm_identical_rows": same,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--n", type=int, default=164, help="prompts for codequant (164 = a HumanEval pass)")
    ap.add_argument("--hf-n", type=int, default=16, help="first prompts also run through plain generate")
    ap.add_argument("--max-new-tokens", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--vllm", action="store_true", help="also run the same prompts through the vllm backend")
    args = ap.parse_args()

    cores = use_all_cores()
    t0 = time.perf_counter()
    model, tok = load_model(args.model)
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
    ref = hf_generate(model, tok, reqs[: args.hf_n], params, progress=True)
    ref_s = time.perf_counter() - t0

    llama = llama_cpp_run(model, tok, reqs[: args.hf_n], params)
    vllm = vllm_run(args.model, tok, reqs, params, ours) if args.vllm else {}

    llama_ids = llama.pop("token_ids", None)
    if llama_ids is not None:  # same vocabulary: the converter keeps the tokenizer's ids
        llama["llama_cpp_same_as_hf_rows"] = sum(
            a == b.token_ids for a, b in zip(llama_ids, ref, strict=True)
        )
    ours_tok = sum(c.new_tokens for c in ours)
    ref_tok = sum(c.new_tokens for c in ref)
    same = [a.token_ids == b.token_ids for a, b in zip(ours, ref, strict=False)]  # ref: first hf_n
    print(
        json.dumps(
            {
                "model": args.model,
                "prompts": len(reqs),
                "hf_prompts": len(ref),
                "max_new_tokens": args.max_new_tokens,
                "batch_size": args.batch_size,
                "load_s": round(load_s, 1),
                "codequant_tokens": ours_tok,
                "codequant_s": round(ours_s, 2),
                "codequant_tok_s": round(ours_tok / ours_s, 2),
                "codequant_drafted_tokens": sum(c.drafted_tokens for c in ours),
                "hf_generate_tokens": ref_tok,
                "hf_generate_s": round(ref_s, 2),
                "hf_generate_tok_s": round(ref_tok / ref_s, 2),
                "ratio": round((ours_tok / ours_s) / (ref_tok / ref_s), 2),
                "identical_greedy": all(same),
                "identical_rows": sum(same),
                **llama,
                "codequant_vs_llama_cpp": (
                    round((ours_tok / ours_s) / llama["llama_cpp_tok_s"], 2)
                    if llama.get("llama_cpp_tok_s")
                    else None
                ),
                **vllm,
                **(
                    {"codequant_vs_vllm": round((ours_tok / ours_s) / vllm["vllm_tok_s"], 2)}
                    if vllm.get("vllm_tok_s")
                    else {}
                ),
                "machine": {
                    "cpu_count": os.cpu_count(),
                    "usable_cores": cores,
                    "torch_threads": torch.get_num_threads(),
                    "platform": platform.platform(),
                    "processor": platform.processor() or platform.machine(),
                    "torch": torch.__version__,
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
