"""What one `codequant finetune` step costs, part by part, on one thread (SmolLM2-135M shapes, 2x8 g8 AQLM).

    PYTHONPATH=. .venv/bin/python bench/finetune_parts.py --out bench/results/finetune_parts.json

Times, for one batch of the CLI's default shape (4 x 512 tokens), forward + backward of: one AqlmLinear of each
SmolLM2 shape (q/k/v/o, gate/up, down) in fp32 and under bf16 autocast (its sparse decode kept fp32), the decode
alone, a dense linear of the same shape (the matmul floor), the tied head with the full-vocabulary log-softmax,
and one PV V-step (`codequant.finetune.pv.v_step`, tau 0.01). One thread, because on a machine shared by many
jobs two OpenMP threads measure the contention (10x swings), not the work; the per-step estimate scales the
per-shape figures by SmolLM2's 30 layers. Prints (and writes) JSON with the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import provenance  # noqa: E402  (bench/)

from codequant.finetune.pv import v_step  # noqa: E402
from codequant.quant.aqlm import AqlmLinear  # noqa: E402

# SmolLM2-135M: hidden 576, intermediate 1536, 9 heads x 64 (q, o: 576x576), 3 KV heads (k, v: 192x576)
SHAPES = {"q_o": (576, 576, 2), "k_v": (192, 576, 2), "gate_up": (1536, 576, 2), "down": (576, 1536, 1)}
LAYERS, VOCAB, HIDDEN = 30, 49152, 576


def best_of(fn, n: int = 3) -> float:
    fn()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def measure_shape(out: int, inp: int, tokens: int) -> dict[str, float]:
    """Seconds of forward + backward for one AqlmLinear [out, inp] and its parts, and one V-step on it."""
    layer = AqlmLinear(
        torch.randint(0, 256, (out, inp // 8, 2)), torch.randn(2, 256, 1, 8) * 0.01, torch.rand(out) + 0.5
    )
    layer.codebooks.requires_grad_(True)
    layer.scales.requires_grad_(True)
    x = torch.randn(tokens, inp, requires_grad=True)
    dense_w = layer.dequantize().detach().clone()
    update = 0.01 * torch.randn(out, inp)
    codes = layer.codes.clone()

    def aqlm() -> None:
        torch.nn.functional.linear(x, layer.dequantize()).sum().backward()

    def aqlm_bf16() -> None:
        w = layer.dequantize()  # the sparse decode has no bf16 kernel: decode in fp32, matmul in bf16
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = torch.nn.functional.linear(x, w)
        y.float().sum().backward()

    def decode() -> None:
        layer.dequantize().sum().backward()

    def dense() -> None:
        torch.nn.functional.linear(x, dense_w.clone().requires_grad_(True)).sum().backward()

    def vstep() -> None:
        layer.codes.copy_(codes)
        v_step(layer, update, tau=0.01)

    return {
        "aqlm_fp32": best_of(aqlm),
        "aqlm_bf16": best_of(aqlm_bf16),
        "decode": best_of(decode),
        "dense": best_of(dense),
        "v_step": best_of(vstep),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=2048)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rows, total = {}, {"aqlm_fp32": 0.0, "aqlm_bf16": 0.0, "decode": 0.0, "dense": 0.0, "v_step": 0.0}
    for name, (out, inp, per_layer) in SHAPES.items():
        row = {"shape": [out, inp], "per_layer": per_layer, **measure_shape(out, inp, args.tokens)}
        rows[name] = row
        for key in total:
            total[key] += row[key] * per_layer * LAYERS
        print(name, json.dumps(row))
    head = torch.randn(VOCAB, HIDDEN) * 0.02
    h = torch.randn(args.tokens, HIDDEN, requires_grad=True)

    def head_loss(bf16: bool = False) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = torch.nn.functional.linear(h, head)
        torch.log_softmax(logits.float(), -1)[:, :64].sum().backward()

    head_fp32, head_bf16 = best_of(head_loss, 2), best_of(lambda: head_loss(True), 2)
    estimate = {
        "linears_fp32_s": total["aqlm_fp32"],
        "linears_bf16_s": total["aqlm_bf16"],
        "of_which_decode_s": total["decode"],
        "dense_matmul_floor_s": total["dense"],
        "head_and_log_softmax_fp32_s": head_fp32,
        "head_and_log_softmax_bf16_s": head_bf16,
        "v_step_all_layers_s": total["v_step"],
    }
    result = {
        "bench": "finetune_parts",
        "tokens_per_step": args.tokens,
        "threads": 1,
        "shapes": rows,
        "per_step_estimate_one_thread": estimate,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "load_avg": os.getloadavg(),
            "cpu_flags_bf16": "avx512_bf16" in Path("/proc/cpuinfo").read_text(),
        },
        "commit": provenance.commit(),
    }
    print(json.dumps(estimate, indent=2))
    provenance.write_result(result, args.out)


if __name__ == "__main__":
    main()
