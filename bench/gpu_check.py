"""The GPU check: codequant's CUDA paths against its CPU paths on the embedded model, in one short run.

    .venv/bin/python bench/gpu_check.py [--device cuda] [--model smollm2-135m] [--out FILE]
    .venv/bin/python bench/gpu_check.py --dry --model TINY_FOLDER      # the same checks, small, on the CPU (tests)

Three checks, each a JSON entry with `ok` and its figures; the last line printed is one JSON object:
- `aqlm_block`: AQLM 2x8 of the first decoder block (fit, beam search and block tuning, the pipeline's own walk)
  on the CPU and on the device, same seed and calibration rows. The two runs take different floating-point paths,
  so codes may differ; the check is that the device's in-sample and held-out block errors are within 15% of the
  CPU's.
- `engine`: codequant's engine on the device gives the same greedy tokens as `model.generate` on the device, on
  the first HumanEval chat prompts (the CPU test suite checks the same on the CPU).
- `aqlm_2x8`: the time of AQLM 2x8 over every block on the device (one block on the GPU at a time, as for a model
  larger than the GPU), with its mean block errors: the figure docs/scale.md projects the study grid from.
- `proxy`: the 7B-shaped proxy of bench/scale_proxy.py (CodeLlama-7B's layer shapes, 2 blocks, random weights)
  in fp32, fp16 and bf16, GPTQ-4 over both blocks and AQLM 2x8 of block 0 on the device: held-out block errors
  (fp16 and bf16 within 5% of fp32's), seconds, and the peak GPU memory against the plan's estimate
  (codequant.quant.budget.quant_needs; ok within +20%).
Made to finish within 10 minutes on one GPU (SmolLM2-135M: 30 blocks). Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from codequant.devices import resolve_device  # noqa: E402
from codequant.quant.pipeline import WalkOptions, quantize_model  # noqa: E402
from codequant.quant.run import build_config, make_model_quantizer  # noqa: E402

TOLERANCE = 0.15  # relative gap allowed between the device's and the CPU's block errors


def _calibration(tokenizer, args) -> Any:
    """Code calibration rows (held-out ones included); random token ids in --dry mode, which must not need the
    calibration corpora."""
    if args.dry:
        from types import SimpleNamespace

        g = torch.Generator().manual_seed(0)
        rows = torch.randint(1, len(tokenizer), (args.samples, args.seq_len), generator=g)
        return SimpleNamespace(train=rows[: -args.val_samples], val=rows[-args.val_samples :])
    from codequant.calibration import resolve_calibration

    return resolve_calibration(
        "code", tokenizer, samples=args.samples, seq_len=args.seq_len, val_samples=args.val_samples
    )


def _quantize(fp, calib, device: str | None, blocks: int | None, options: dict[str, Any]) -> dict[str, Any]:
    model = copy.deepcopy(fp)
    spec = options or {
        "bits": 2
    }  # --dry: an explicit small spec (a tiny model's codebooks would cost > 2 bits)
    quantizer = make_model_quantizer(build_config("aqlm", **spec), model)
    _sync(device)
    t0 = time.perf_counter()
    report = quantize_model(
        model, calib, quantizer, WalkOptions(max_blocks=blocks, device=device), progress=False
    )
    _sync(device)
    seconds = time.perf_counter() - t0
    errs = [b.get("rel_output_mse") for b in report.blocks]
    held = [b.get("rel_output_mse_heldout") for b in report.blocks]
    return {
        "blocks": len(report.blocks),
        "seconds": round(seconds, 2),
        "block_mse": _mean(errs),
        "block_mse_heldout": _mean(held),
    }


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def _sync(device: str | None) -> None:
    if device is not None and device.startswith("cuda"):
        torch.cuda.synchronize()


def _close(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and abs(a - b) <= TOLERANCE * max(abs(b), 1e-12)


def check_aqlm_block(fp, calib, device: str, options: dict[str, Any]) -> dict[str, Any]:
    cpu = _quantize(fp, calib, None, 1, options)
    dev = _quantize(fp, calib, device, 1, options)
    ok = _close(dev["block_mse"], cpu["block_mse"]) and _close(
        dev["block_mse_heldout"], cpu["block_mse_heldout"]
    )
    return {"ok": ok, "cpu": cpu, "device": dev, "tolerance": TOLERANCE}


def check_engine(fp, tokenizer, device: str, prompts: int, max_new_tokens: int) -> dict[str, Any]:
    from codequant.benchmarks.registry import load_benchmark
    from codequant.generation.engine import Request, SamplingParams, generate
    from codequant.generation.extract import fenced_block_complete
    from codequant.generation.hf import hf_generate
    from codequant.generation.prompts import build_prompt

    model = copy.deepcopy(fp).to(device)
    reqs = []
    for p in load_benchmark("humaneval")[:prompts]:
        pt = build_prompt(p, tokenizer, "auto")
        reqs.append(Request(pt.text, key=p.task_id, add_special_tokens=pt.add_special_tokens))
    params = SamplingParams(max_new_tokens=max_new_tokens, stop_rule=fenced_block_complete)
    t0 = time.perf_counter()
    ours = generate(model, tokenizer, reqs, params, batch_size=len(reqs), progress=False)
    ours_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = hf_generate(model, tokenizer, reqs, params, progress=False)
    ref_s = time.perf_counter() - t0
    same = sum(a.token_ids == b.token_ids for a, b in zip(ours, ref, strict=True))
    tokens = sum(c.new_tokens for c in ours)
    return {
        "ok": same == len(reqs),
        "prompts": len(reqs),
        "identical_rows": same,
        "tokens": tokens,
        "engine_tok_s": round(tokens / ours_s, 2),
        "generate_tok_s": round(sum(c.new_tokens for c in ref) / ref_s, 2),
    }


PROXY_SHAPE = {
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "vocab_size": 32016,
    "num_hidden_layers": 2,
    "max_position_embeddings": 4096,
}
DRY_SHAPE = {
    **PROXY_SHAPE,
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "vocab_size": 384,
}


def check_proxy(device: str, dry: bool, rows: int, val_rows: int, seq_len: int) -> dict[str, Any]:
    """The proxy in fp16 and bf16 on the device: errors, time, peak GPU memory against the plan."""
    from types import SimpleNamespace

    from transformers import LlamaConfig, LlamaForCausalLM

    from codequant.models.shapes import shape_from_config
    from codequant.quant.budget import QuantJob, quant_needs

    shape_cfg = DRY_SHAPE if dry else PROXY_SHAPE
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(3, shape_cfg["vocab_size"], (rows + val_rows, seq_len), generator=g)
    calib = SimpleNamespace(train=tokens[:rows], val=tokens[rows:])
    gpu = device.startswith("cuda")
    out: dict[str, Any] = {"shape": shape_cfg, "calibration": f"{rows}x{seq_len} + {val_rows} held out"}
    for dtype in ("float32", "float16", "bfloat16"):
        for method, spec, blocks in (
            ("gptq", {"bits": 4, "group_size": 128}, 2),
            ("aqlm", {"num_codebooks": 2, "codebook_bits": 8, "group_size": 8}, 1),
        ):
            torch.manual_seed(0)
            model = LlamaForCausalLM(LlamaConfig(**shape_cfg)).to(getattr(torch, dtype)).eval()
            quantizer = make_model_quantizer(build_config(method, **spec), model)
            if gpu:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(torch.device(device))
            _sync(device if gpu else None)
            t0 = time.perf_counter()
            walk = WalkOptions(max_blocks=blocks, batch_size=2, device=device if gpu else None)
            report = quantize_model(model, calib, quantizer, walk, progress=False)
            _sync(device if gpu else None)
            job = QuantJob(
                method=method,
                bits=spec.get("bits", 2),
                rows=rows,
                val_rows=val_rows,
                seq_len=seq_len,
                dtype=dtype,
                batch_size=2,
                gpu=gpu,
                codebooks=spec.get("num_codebooks", 0),
                codebook_bits=spec.get("codebook_bits", 0),
            )
            plan_gpu = quant_needs(shape_from_config({**shape_cfg, "torch_dtype": dtype}), job).gpu_bytes
            peak = torch.cuda.max_memory_allocated(torch.device(device)) if gpu else None
            out[f"{method}_{dtype}"] = {
                "seconds": round(time.perf_counter() - t0, 2),
                "blocks": blocks,
                "heldout_block_error": _mean([b.get("rel_output_mse_heldout") for b in report.blocks]),
                "peak_gpu_bytes": peak,
                "plan_gpu_bytes": plan_gpu if gpu else None,
                "peak_over_plan": None if peak is None else round(peak / max(plan_gpu, 1), 3),
            }
            del model
    errors_ok = all(
        _within(out[f"{m}_{half}"]["heldout_block_error"], out[f"{m}_float32"]["heldout_block_error"])
        for m in ("gptq", "aqlm")
        for half in ("float16", "bfloat16")
    )
    out["errors_ok"] = errors_ok
    memory_ok = all(
        v["peak_over_plan"] is None or v["peak_over_plan"] <= 1.2
        for k, v in out.items()
        if isinstance(v, dict) and "peak_over_plan" in v
    )
    finite = all(
        v["heldout_block_error"] is not None and v["heldout_block_error"] > 0
        for k, v in out.items()
        if isinstance(v, dict) and "heldout_block_error" in v
    )
    # --dry: 4 x 32 tokens on a 128-wide model make the dtype comparison noise (8-13% seen); it checks the script
    out["ok"] = bool(finite and memory_ok and (errors_ok or dry))
    return out


def _within(a: float | None, b: float | None, rel: float = 0.05) -> bool:
    return a is not None and b is not None and abs(a - b) <= rel * max(abs(b), 1e-12)


def machine(device: str) -> dict[str, Any]:
    info: dict[str, Any] = {
        "device": device,
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
    }
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        info.update(
            gpu=props.name, gpu_memory_gb=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda
        )
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda | cuda:N (--dry: cpu)")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--dry", action="store_true", help="small and on the CPU: checks the script itself")
    ap.add_argument("--samples", type=int, default=72, help="calibration rows, held-out ones included")
    ap.add_argument("--val-samples", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--prompts", type=int, default=8, help="HumanEval prompts for the engine check")
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--blocks", type=int, default=None, help="blocks timed in aqlm_2x8 (default: all)")
    ap.add_argument("--out", help="also write the JSON here")
    ap.add_argument("--no-proxy", action="store_true", help="skip the 7B-shaped proxy check")
    args = ap.parse_args(argv)
    options: dict[str, Any] = {}
    if args.dry:
        args.device = "cpu"
        args.samples, args.val_samples, args.seq_len = (
            min(args.samples, 12),
            min(args.val_samples, 4),
            min(args.seq_len, 32),
        )
        args.prompts, args.max_new_tokens = min(args.prompts, 3), min(args.max_new_tokens, 16)
        options = {"num_codebooks": 1, "codebook_bits": 4, "group_size": 8}
    device = resolve_device(args.device)

    from codequant.models import load

    t0 = time.perf_counter()
    loaded = load(args.model)
    fp, tokenizer = loaded.model, loaded.tokenizer
    result: dict[str, Any] = {
        "model": args.model,
        "dry": args.dry,
        "load_s": round(time.perf_counter() - t0, 2),
        "calibration": {"rows": args.samples, "held_out": args.val_samples, "seq_len": args.seq_len},
    }
    calib = _calibration(tokenizer, args)
    checks = {
        "aqlm_block": check_aqlm_block(fp, calib, device, options),
        "engine": check_engine(fp, tokenizer, device, args.prompts, args.max_new_tokens),
    }
    timed = _quantize(fp, calib, device, args.blocks, options)
    checks["aqlm_2x8"] = {"ok": timed["block_mse"] is not None, **timed}
    if not args.no_proxy:
        checks["proxy"] = check_proxy(device, args.dry, *((4, 2, 32) if args.dry else (32, 8, 2048)))
    result.update(checks=checks, ok=all(c["ok"] for c in checks.values()), machine=machine(device))
    text = json.dumps(result, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
