"""How large a V-step (`--pv-lr`) must be to move SmolLM2's 2x8 codes: one real linear, fitted, then V-steps
towards its fp weight for a range of step sizes.

    PYTHONPATH=. .venv/bin/python bench/pv_step_scale.py --out bench/results/pv_step_scale.json

A proxy for the loss gradient, which needs a quantized model: a direction U of +-1 per weight (as Adam's is at
its first step), either `to_fp` = sign(W_q - W), back towards the fp weight the codes were fitted to (so they
are already near-optimal for it), or `random` signs (an arbitrary direction: where codes start to move). For each
lr the
V-step (`codequant.finetune.pv.v_step`) with tau = 1 (no trust region) and tau = 0.01 reports the share of
(row, group) pairs that change and the relative error ||W_q - W|| / ||W|| after it. A V-step smaller than the
spacing between codewords changes nothing; this finds that spacing. Identity XTX, 2 rounds, one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import provenance  # noqa: E402  (bench/)

from codequant.finetune.pv import v_step  # noqa: E402
from codequant.quant.aqlm import AqlmLinear  # noqa: E402
from codequant.quant.aqlm.fit import FitOptions, fit_weight  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--linear", default="model.layers.10.self_attn.q_proj")
    p.add_argument("--lrs", default="0.001,0.003,0.01,0.03,0.1")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    from codequant.models import load

    torch.set_num_threads(1)
    weight = (
        dict(load(args.model, dtype="float32").model.named_modules())[args.linear].weight.detach().float()
    )
    fit = fit_weight(
        weight,
        torch.eye(weight.shape[1]),
        2,
        8,
        8,
        FitOptions(max_rounds=2, threads=1),
        torch.Generator().manual_seed(0),
    )
    books = fit.codebooks.reshape(2, 256, 1, 8)
    base = AqlmLinear(fit.codes, books, fit.scales)
    wq = base.dequantize().detach().clone()
    norm = float(weight.norm())
    rows = []
    signs = torch.randint(0, 2, weight.shape, generator=torch.Generator().manual_seed(1)).float() * 2 - 1
    directions = {"to_fp": torch.sign(wq - weight), "random": signs}
    for (direction, unit), lr, tau in (
        (d, lr, tau)
        for d in directions.items()
        for lr in (float(x) for x in args.lrs.split(","))
        for tau in (1.0, 0.01)
    ):
        layer = AqlmLinear(fit.codes.clone(), books, fit.scales)
        before = layer.codes.clone()
        target = wq - lr * unit
        v_step(layer, lr * unit, tau=tau, candidates=1.0 / tau)
        rows.append(
            {
                "direction": direction,
                "lr": lr,
                "tau": tau,
                "target_error_before": float((wq - target).norm()) / norm,
                "target_error_after": float((layer.dequantize() - target).norm()) / norm,
                "pairs_changed": float((layer.codes != before).any(-1).float().mean()),
                "rel_error_after": float((layer.dequantize() - weight).norm()) / norm,
            }
        )
        print(json.dumps(rows[-1]))
    result = {
        "bench": "pv_step_scale",
        "model": args.model,
        "linear": args.linear,
        "shape": list(weight.shape),
        "weight_rms": float(weight.pow(2).mean().sqrt()),
        "quant_error_rms": float((wq - weight).pow(2).mean().sqrt()),
        "rel_error_before": float((wq - weight).norm()) / norm,
        "rows": rows,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_avg": os.getloadavg()},
        "commit": provenance.commit(),
    }
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}))
    provenance.write_result(result, args.out)


if __name__ == "__main__":
    main()
