"""The vLLM side of codequant's `vllm` backend, run as a script by the Python that has vLLM installed.

Standalone on purpose (standard library + vllm only, never `import codequant`): vLLM pins its own transformers and
torch, so it often lives in another environment than codequant (`make setup-vllm` makes `.venv-vllm`; on a GPU node
`pip install codequant[vllm]` puts both in one). The parent (`codequant.generation.vllm`) tokenizes the prompts
itself and writes a job file; this script answers on stdout, one JSON object per line after the mark `@@codequant `:

    {"ready": true, "load_s": ..., "vllm": "0.x"}             once the engine is up
    {"index": i, "token_ids": [...], "finish_reason": ..., "seconds": ...}   per request, chunk by chunk
    {"done": true}

Requests go to vLLM in chunks so that results stream back (the parent executes and stores them while the next
chunk decodes, and a killed run keeps what it had). `seconds` is the chunk's wall time shared equally by its
requests: vLLM batches them, so per-request latency is not what a throughput run measures.
"""

from __future__ import annotations

import json
import os
import sys
import time

MARK = "@@codequant "  # vLLM and its libraries print to stdout too: only lines with this mark are answers

# Run by path, this script's folder would come first on sys.path, and its neighbour `vllm.py` (codequant's backend)
# would shadow the vllm package; spawned engine processes inherit the cleaned path.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]


def say(msg: dict) -> None:
    print(MARK + json.dumps(msg), file=sys.stdout, flush=True)


def _sampling(vllm, job: dict, seed: int):
    s = job["sampling"]
    greedy = s["temperature"] <= 0
    return vllm.SamplingParams(
        max_tokens=s["max_tokens"],
        temperature=0.0 if greedy else s["temperature"],
        top_p=1.0 if greedy else s["top_p"],
        seed=None if greedy else seed,
        stop=s["stop"] or None,
        include_stop_str_in_output=True,
        stop_token_ids=s["stop_token_ids"],
        skip_special_tokens=True,
    )


def unsupported_quantization(model: str) -> str | None:
    """Why this vLLM cannot load `model`'s quantization (its config's quant_method), or None. vLLM has dropped
    formats over time (AQLM among them), and its own error comes late and from deep inside the engine."""
    config = os.path.join(model, "config.json")
    if not os.path.isfile(config):
        return None
    with open(config) as f:
        method = (json.load(f).get("quantization_config") or {}).get("quant_method")
    if method is None:
        return None
    import vllm
    from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS

    if method in QUANTIZATION_METHODS:
        return None
    return (
        f"vLLM {vllm.__version__} cannot load {method!r} checkpoints ({model}); it reads "
        f"{', '.join(sorted(QUANTIZATION_METHODS)[:8])}, ... Give vLLM the dequantized export (the quantize "
        "folder itself), or use --backend engine, which runs the codes through codequant's own layers"
    )


def main(job_path: str) -> None:
    with open(job_path) as f:
        job = json.load(f)
    t0 = time.perf_counter()
    import vllm

    why = unsupported_quantization(job["model"])
    if why:
        say({"error": why})
        sys.exit(2)
    llm = vllm.LLM(model=job["model"], tokenizer=job.get("tokenizer") or job["model"], **job["engine"])
    say({"ready": True, "load_s": round(time.perf_counter() - t0, 2), "vllm": vllm.__version__})
    requests = job["requests"]
    chunk = max(1, int(job.get("chunk", 256)))
    for start in range(0, len(requests), chunk):
        part = requests[start : start + chunk]
        prompts = [{"prompt_token_ids": r["prompt_token_ids"]} for r in part]
        params = [_sampling(vllm, job, r["seed"]) for r in part]
        t = time.perf_counter()
        results = llm.generate(prompts, params, use_tqdm=False)
        each = (time.perf_counter() - t) / len(part)
        for r, res in zip(part, results, strict=True):
            o = res.outputs[0]
            say(
                {
                    "index": r["index"],
                    "token_ids": list(o.token_ids),
                    "finish_reason": o.finish_reason,
                    "seconds": round(each, 4),
                }
            )
    say({"done": True})


if __name__ == "__main__":  # vLLM starts its engine in spawned processes: the guard is required
    main(sys.argv[1])
