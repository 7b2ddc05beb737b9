"""AQLM block tuning settings on the first blocks of a real model, judged on held-out rows.

    .venv/bin/python bench/aqlm_tune.py --bits 2 --blocks 3 --grid tune_epochs=0,2,4 --grid tune_lr=1e-4,1e-3
    .venv/bin/python bench/aqlm_tune.py --bits 2 --blocks 3 --grid init=kmeans,oa-em

Quantizes the first `--blocks` decoder blocks (the pipeline's own walk, so each block sees the quantized blocks
before it) once per setting and prints, per block, the output error on the calibration rows and on the held-out
rows, the tuning's selection error before/after and its seconds; then a markdown table of the geometric means.
Used to choose the block-tuning defaults (docs/aqlm.md).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from aqlm_fit import commit, settings_of  # noqa: E402

from codequant.quant.pipeline import WalkOptions, quantize_model  # noqa: E402
from codequant.quant.run import build_config, make_model_quantizer  # noqa: E402


def geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(max(v, 1e-30)) for v in values) / len(values)) if values else float("nan")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--bits", type=int, default=2)
    p.add_argument("--blocks", type=int, default=3)
    p.add_argument("--samples", type=int, default=144, help="calibration rows, held-out ones included")
    p.add_argument("--val-samples", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--grid", action="append", default=[], help="KEY=V1,V2 over AQLM options (repeatable)")
    p.add_argument("--setting", action="append", default=[], help="one setting KEY=V;KEY=V (repeatable)")
    p.add_argument("--out", help="also append the JSON lines here")
    args = p.parse_args(argv)

    from codequant.calibration import resolve_calibration
    from codequant.models import load

    loaded = load(args.model)
    fp, tokenizer = (loaded[0], loaded[1]) if isinstance(loaded, tuple) else (loaded.model, loaded.tokenizer)
    calib = resolve_calibration(
        "code", tokenizer, samples=args.samples, seq_len=args.seq_len, val_samples=args.val_samples
    )
    revision = commit()  # the code that runs, as it was at the start
    rows = []
    for setting in settings_of(args.grid, args.setting):
        model = copy.deepcopy(fp).eval()
        quantizer = make_model_quantizer(build_config("aqlm", bits=args.bits, options=setting), model)
        t = time.perf_counter()
        report = quantize_model(model, calib, quantizer, WalkOptions(max_blocks=args.blocks), progress=False)
        blocks = [
            {k: b.get(k) for k in ("index", "rel_output_mse", "rel_output_mse_heldout")}
            | {"tune": {k: v for k, v in (b.get("tune") or {}).items() if k != "history"}}
            for b in report.blocks
        ]
        row = {
            "bits": args.bits,
            "setting": setting,
            "seconds": round(time.perf_counter() - t, 1),
            "geomean_in_sample": geomean([b["rel_output_mse"] for b in blocks]),
            "geomean_heldout": geomean([b["rel_output_mse_heldout"] for b in blocks]),
            "blocks": blocks,
            "commit": revision,
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "load_average": os.getloadavg()[0],
            "calibration": [args.samples, args.val_samples, args.seq_len],
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps(row) + "\n")
    print(
        json.dumps(
            {
                "machine": {
                    "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                    "torch_threads": torch.get_num_threads(),
                },
                "calibration": {"train": list(calib.train.shape), "val": list(calib.val.shape)},
            }
        )
    )
    print("| setting | block mse in-sample | held-out | s |\n|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['setting']} | {r['geomean_in_sample']:.5f} | {r['geomean_heldout']:.5f} | {r['seconds']} |"
        )


if __name__ == "__main__":
    main()
