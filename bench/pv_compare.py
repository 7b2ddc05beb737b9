"""Code updates compared on a tiny random Llama: plain fine-tuning, `--code-updates` (shadows + re-encoding) and
PV-tuning's V-step, by the KL they reach and the codes they change.

    PYTHONPATH=. .venv/bin/python bench/pv_compare.py --out bench/results/pv_compare_tiny.json
    PYTHONPATH=. .venv/bin/python bench/pv_compare.py --variants pv_lr0.1_tau0.01 pv_lr0.1_tau0.01_bf16 \
        --out bench/results/pv_state_dtype_tiny.json      # fp32 against bfloat16 moments

A stand-in for the real measurement when no quantized SmolLM2 is at hand: the model is the tests' tiny Llama
(built from a config, weights x6 so the teacher is confident), AQLM 1x4 g8, teacher top-16 targets on random
tokens. Rows: `fit` = the KL on the rows it trains on (what both steps optimise), `heldout` = on rows it never
saw (this tiny random set barely generalises: read it as "does it overfit"). Prints and writes JSON.
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

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import provenance  # noqa: E402  (bench/)

sys.path.insert(0, str(ROOT / "tests"))

from conftest import build_tiny_llama  # noqa: E402

from codequant.finetune.teacher import TeacherTargets, compute_teacher_targets  # noqa: E402
from codequant.finetune.trainer import FinetuneConfig, distill, mean_kl  # noqa: E402
from codequant.quant.aqlm import AqlmLinear, AqlmQuantizer  # noqa: E402
from codequant.quant.base import QuantConfig  # noqa: E402
from codequant.quant.pipeline import quantize_model  # noqa: E402

VARIANTS = {
    "plain": {},
    "code_updates_default": {"code_updates": True},  # 1% of pairs, once per epoch (the CLI's defaults)
    "code_updates_every_step": {"code_updates": True, "reencode_every": 1},
    "pv_lr0.1_tau0.01": {"pv_tuning": True, "pv_lr": 0.1, "pv_tau": 0.01},
    "pv_lr0.05_tau0.01": {"pv_tuning": True, "pv_lr": 0.05, "pv_tau": 0.01},
    "pv_lr0.1_tau0.05": {"pv_tuning": True, "pv_lr": 0.1, "pv_tau": 0.05},
    # the V-step's Adam moments in bfloat16 (updated in fp32, rounded back): --variants to compare with the row above
    "pv_lr0.1_tau0.01_bf16": {"pv_tuning": True, "pv_lr": 0.1, "pv_tau": 0.01, "pv_state_dtype": "bfloat16"},
}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--rows", type=int, default=16, help="training rows (as many again are held out)")
    p.add_argument("--out", type=Path)
    p.add_argument(
        "--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS), help="rows to run"
    )
    args = p.parse_args(argv)
    torch.manual_seed(0)
    base = build_tiny_llama(384)
    with torch.no_grad():
        for prm in base.parameters():
            if prm.dim() == 2:
                prm.mul_(6.0)
    tokens = torch.randint(1, 384, (2 * args.rows, 24))
    targets = compute_teacher_targets(base, tokens, top_k=16, batch_size=4, progress=False)
    fit_t, held_t = tokens[: args.rows], tokens[args.rows :]
    fit = TeacherTargets(targets.ids[: args.rows], targets.logprobs[: args.rows])
    held = TeacherTargets(targets.ids[args.rows :], targets.logprobs[args.rows :])
    rows = {}
    for name in args.variants:
        extra = VARIANTS[name]
        model = copy.deepcopy(base)
        quantizer = AqlmQuantizer(
            QuantConfig(
                "aqlm",
                num_codebooks=1,
                codebook_bits=4,
                group_size=8,
                seed=0,
                options={"max_rounds": 1, "tune_epochs": 0},
            )
        )
        quantize_model(model, fit_t, quantizer, progress=False)
        codes = {n: m.codes.clone() for n, m in model.named_modules() if isinstance(m, AqlmLinear)}
        held_before = mean_kl(model, held_t, held, 4)
        config = FinetuneConfig(epochs=args.epochs, lr=3e-3, batch_size=4, patience=args.epochs, **extra)
        started = time.perf_counter()
        result = distill(model, fit_t, fit, fit_t, fit, config, progress=False)  # keep-best on the fit rows
        total = sum(c.numel() for c in codes.values())
        moved = sum(
            int((m.codes != codes[n]).sum()) for n, m in model.named_modules() if isinstance(m, AqlmLinear)
        )
        rows[name] = {
            "settings": extra,
            "fit_kl_before": result.val_kl_before,
            "fit_kl_after": result.val_kl_after,
            "heldout_kl_before": held_before,
            "heldout_kl_after": mean_kl(model, held_t, held, 4),
            "codes_changed_per_epoch": [h.get("codes_changed", 0) for h in result.history],
            "codes_differing_at_end": moved,
            "codes_total": total,
            "seconds": time.perf_counter() - started,
        }
        print(name, json.dumps(rows[name]))
    result = {
        "bench": "pv_compare",
        "model": "tiny random Llama (tests/conftest.py build_tiny_llama, weights x6)",
        "quant": "aqlm 1x4 g8 (max_rounds 1, no block tuning)",
        "epochs": args.epochs,
        "fit_rows": args.rows,
        "heldout_rows": args.rows,
        "seq_len": 24,
        "lr": 3e-3,
        "rows": rows,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_avg": os.getloadavg()},
        "commit": provenance.commit(),
    }
    provenance.write_result(result, args.out)


if __name__ == "__main__":
    main()
