"""A 7B-shaped proxy measured on this machine: what `codequant study plan` uses for its CPU figures.

A random Llama with CodeLlama-7B's layer shapes (hidden 4096, intermediate 11008, 32 heads, vocab 32016) and 2
decoder blocks, built from a config (never downloaded). It measures:

1. memory: GPTQ-4 over both blocks in a child process (its own peak RSS), with a calibration whose activations
   the old walk (three fp32 buffers, 5.4 copies measured) would need beyond a budget the new walk (two buffers)
   meets; the peak RSS against the plan's estimate (codequant.quant.budget.quant_needs), and seconds per block;
2. AQLM 2x8: one 4096x11008 linear (gate_proj) fitted on the calibration's XTX, extrapolated to a block by its
   weights (a whole AQLM block on 2 shared cores would take most of an hour; the JSON says so);
3. dtypes: block 0 quantized with GPTQ-4 from fp32, bf16 and fp16 weights (a smaller calibration: half-precision
   matmuls are slow on this CPU), held-out block errors side by side;
4. the rates the plan reads (`plan_rates`): block-walk flop/s, AQLM scan flop/s and weight bytes read per second.

The CPU is shared with other work: `os.getloadavg()` before and after is in the JSON. Run:
`python bench/scale_proxy.py [--rows 8 --seq-len 2048]`; writes bench/results/scale_proxy.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHAPE = {
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "vocab_size": 32016,
    "num_hidden_layers": 2,
    "max_position_embeddings": 4096,
}


def build(dtype: torch.dtype = torch.float32, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(**SHAPE, torch_dtype=str(dtype).removeprefix("torch."))
    model = LlamaForCausalLM(config).to(dtype)
    return model.eval()


def calibration(rows: int, val_rows: int, seq_len: int, seed: int = 0):
    from types import SimpleNamespace

    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(3, SHAPE["vocab_size"], (rows + val_rows, seq_len), generator=g)
    return SimpleNamespace(train=tokens[:rows], val=tokens[rows:] if val_rows else None)


def machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "processor": platform.processor(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child_walk(args) -> dict:
    """GPTQ-4 over the 2 blocks; run in its own process so that its peak RSS is its own."""
    from codequant.quant.activations import ActivationPolicy
    from codequant.quant.base import QuantConfig
    from codequant.quant.pipeline import WalkOptions, quantize_model
    from codequant.quant.registry import make_quantizer

    model = build()
    calib = calibration(args.rows, args.val_rows, args.seq_len)
    budget = None if args.budget_gb is None else int(args.budget_gb * 1e9)
    t0 = time.perf_counter()
    walk = WalkOptions(
        batch_size=args.batch_size,
        max_blocks=args.blocks,
        activations=ActivationPolicy(args.placement, budget, Path(args.folder)),
    )
    report = quantize_model(
        model, calib, make_quantizer(QuantConfig("gptq", bits=4, group_size=128)), walk, progress=False
    )
    seconds = time.perf_counter() - t0
    fit = sum(layer["seconds"] for layer in report.layers)
    return {
        "peak_rss_bytes": peak_rss_bytes(),
        "seconds": seconds,
        "fit_seconds": fit,
        "seconds_per_block": [b["seconds"] for b in report.blocks],
        "heldout_block_error": [b.get("rel_output_mse_heldout") for b in report.blocks],
        "activations": report.calibration["activations"],
    }


def run_child(args, placement: str, budget_gb: float | None) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        "--rows",
        str(args.rows),
        "--val-rows",
        str(args.val_rows),
        "--seq-len",
        str(args.seq_len),
        "--batch-size",
        str(args.batch_size),
        "--placement",
        placement,
        "--folder",
        str(args.folder),
        "--blocks",
        str(args.blocks),
    ]
    if budget_gb is not None:
        cmd += ["--budget-gb", str(budget_gb)]
    out = subprocess.run(
        cmd, capture_output=True, text=True, check=True, env={**os.environ, "CODEQUANT_PROGRESS": "off"}
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def aqlm_one_linear(model, rows: int, seq_len: int) -> dict:
    """AQLM 2x8 g8 (the fast preset's 2-bit) of block 0's gate_proj (4096 -> 11008) on XTX of its real inputs."""
    from codequant.quant.aqlm import AqlmQuantizer
    from codequant.quant.base import QuantConfig
    from codequant.quant.blocks import run_block
    from codequant.quant.capture import XtxCollector, capture_first_inputs, capture_layer_kwargs

    layers = model.model.layers
    calib = calibration(rows, 0, seq_len)
    x = capture_first_inputs(model, layers[0], calib.train, 2)
    kwargs = capture_layer_kwargs(model, layers, calib.train[:1])[0]
    collector = XtxCollector(layers[0], [["mlp.gate_proj"]], stop=True)
    run_block(layers[0], x, kwargs, 2, keep=False)
    collector.remove()
    linear = layers[0].mlp.gate_proj
    quantizer = AqlmQuantizer(QuantConfig("aqlm", num_codebooks=2, codebook_bits=8, group_size=8))
    t0 = time.perf_counter()
    q = quantizer.quantize_linear("model.layers.0.mlp.gate_proj", linear, collector.xtx[0])
    seconds = time.perf_counter() - t0
    weights = linear.weight.numel()
    return {
        "linear": "model.layers.0.mlp.gate_proj",
        "shape": list(linear.weight.shape),
        "seconds": seconds,
        "fit": q.fit_info,
        "weights": weights,
        "calibration": f"{rows}x{seq_len}",
    }


def dtype_errors(fp32_model, rows: int, val_rows: int, seq_len: int, method: str = "gptq") -> dict:
    """4-bit `method` of block 0 from fp32, bf16 and fp16 weights of the same random model: held-out block
    errors (RTN: the grid's rounding alone; GPTQ adds its fit, ~12 min per block on 2 shared cores)."""
    from codequant.quant.base import QuantConfig
    from codequant.quant.pipeline import WalkOptions, quantize_model
    from codequant.quant.registry import make_quantizer

    calib = calibration(rows, val_rows, seq_len, seed=1)
    out = {}
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16), ("float16", torch.float16)):
        model = copy.deepcopy(fp32_model).to(dtype)  # the same random weights, rounded to the dtype
        t0 = time.perf_counter()
        report = quantize_model(
            model,
            calib,
            make_quantizer(QuantConfig(method, bits=4, group_size=128)),
            WalkOptions(batch_size=2, max_blocks=1),
            progress=False,
        )
        out[name] = {
            "heldout_block_error": report.blocks[0]["rel_output_mse_heldout"],
            "seconds": time.perf_counter() - t0,
            "activations": report.calibration["activations"]["dtype"],
        }
        del model
    ref = out["float32"]["heldout_block_error"]
    for name in ("bfloat16", "float16"):
        out[name]["relative_to_fp32"] = out[name]["heldout_block_error"] / ref
    return {
        "method": f"{method}-4 g128",
        "calibration": f"{rows}x{seq_len} + {val_rows} held out",
        "by_dtype": out,
    }


def decode_bandwidth(model) -> float:
    """Weight bytes read per second by one-token forwards at batch 1 (decoding is bound by them)."""
    ids = torch.randint(3, 1000, (1, 1))
    with torch.no_grad():
        model(input_ids=ids)
        t0 = time.perf_counter()
        for _ in range(3):
            model(input_ids=ids)
    per = (time.perf_counter() - t0) / 3
    return sum(p.numel() * p.element_size() for p in model.parameters()) / per


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--val-rows", type=int, default=1)
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--placement", default="auto")
    ap.add_argument(
        "--blocks", type=int, default=2, help="blocks the GPTQ-4 walk quantizes (1: half the time)"
    )
    ap.add_argument("--budget-gb", type=float, default=None)
    ap.add_argument("--folder", default=str(ROOT / "runs" / "scale_proxy"))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--skip-aqlm", action="store_true")
    ap.add_argument("--dtype-method", default="gptq", help="gptq | rtn: the method of the dtype comparison")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "scale_proxy.json"))
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child_walk(args)))
        return
    from codequant.models.shapes import shape_from_config
    from codequant.quant.activations import buffer_bytes
    from codequant.quant.budget import QuantJob, quant_needs

    Path(args.folder).mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    shape = shape_from_config({**SHAPE, "torch_dtype": "float32"})
    job = QuantJob(
        method="gptq",
        bits=4,
        rows=args.rows,
        val_rows=args.val_rows,
        seq_len=args.seq_len,
        dtype="float32",
        batch_size=args.batch_size,
        gpu=False,
    )
    plan = quant_needs(shape, job)
    walk_flops = plan.flops_walk * args.blocks / SHAPE["num_hidden_layers"]
    one = buffer_bytes(args.rows + args.val_rows, args.seq_len, SHAPE["hidden_size"], torch.float32)
    old_walk = plan.host_bytes + int(3.4 * one)  # the old walk: 5.4 fp32 copies where the new one has 2
    budget_gb = round((plan.host_bytes + 0.5 * (old_walk - plan.host_bytes)) / 1e9, 2)  # between the two
    walk = run_child(args, "auto", budget_gb)
    result: dict = {
        "machine": machine(),
        "loadavg_before": load_before,
        "model": {
            **SHAPE,
            "params": shape.params,
            "dtype": "float32",
            "built_from": "LlamaConfig, random weights",
        },
        "calibration": {
            "rows": args.rows,
            "val_rows": args.val_rows,
            "seq_len": args.seq_len,
            "buffer_bytes_fp32": one,
            "batch_size": args.batch_size,
        },
        "gptq4_walk": {
            **walk,
            "budget_gb": budget_gb,
            "plan_host_bytes": plan.host_bytes,
            "old_walk_estimate_bytes": old_walk,
            "rss_over_plan": walk["peak_rss_bytes"] / plan.host_bytes,
        },
    }
    walk_s = walk["seconds"] - walk["fit_seconds"]
    rates = {"flops_per_s": walk_flops / walk_s}
    model = build()
    rates["bandwidth_bytes_per_s"] = decode_bandwidth(model)
    result["dtypes_block0"] = dtype_errors(model, 2, 1, 256, args.dtype_method)
    if not args.skip_aqlm:
        aq = aqlm_one_linear(model, args.rows, args.seq_len)
        from codequant.quant.budget import aqlm_scan_flops

        ops = aqlm_scan_flops(aq["weights"], 2, 8, "fast")
        rates["codewords_per_s"] = ops / aq["seconds"]
        block_weights = shape.block_params
        aq["extrapolated_block_seconds"] = aq["seconds"] * block_weights / aq["weights"]
        aq["options"] = (
            "fast preset 2x8 g8, fast effort (k-means 8 iterations, 6 rounds, beam 1); one linear "
            "measured, the block extrapolated by weights: a whole block would take "
            f"~{aq['extrapolated_block_seconds'] / 60:.0f} min here"
        )
        result["aqlm_2x8_one_linear"] = aq
    result["plan_rates"] = rates
    result["loadavg_after"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
