"""Build time and recipe shares of the default calibration sets (Random / Mixed / Code) for one model.

Each set is built from nothing, in a fresh process (sources read and tokenized anew; no cache:
`build_calibration`, not `resolve_calibration`) with the CLI defaults (128 x 512 tokens, 16 of them validation,
seed 0); `seconds` counts from loading the tokenizer to the finished set. The issue's budget is
2 minutes per set on 2 cores; `within_budget` says whether each met it. Prints one JSON object.

    .venv/bin/python bench/calibration.py [--model smollm2-135m] [--samples 128] [--seq-len 512]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

from codequant.calibration import CALIBRATION_KINDS, build_calibration, heldout_rows, load_tokenizer
from codequant.calibration.split import check_disjoint

BUDGET_S = 120.0


def build_one(kind: str, model: str, samples: int, seq_len: int, seed: int) -> dict:
    start = time.perf_counter()
    tokenizer = load_tokenizer(model)
    calib = build_calibration(kind, tokenizer, samples=samples, seq_len=seq_len, seed=seed)
    seconds = time.perf_counter() - start
    heldout = [f for lang in ("python", "java") for f in heldout_rows(lang, tokenizer, 8192)[1]]
    check_disjoint(calib.manifest["rows"], heldout)  # raises if a held-out file leaked in
    return {
        "seconds": round(seconds, 2),
        "within_budget": seconds <= BUDGET_S,
        "shares": {k: round(v, 4) for k, v in calib.manifest["shares"].items()},
        "tokens": int(calib.tokens.numel() + calib.val.numel()),
        "sha256": calib.manifest["sha256"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--samples", type=int, default=128)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    # internal: build one kind, print its JSON
    ap.add_argument("--one", choices=CALIBRATION_KINDS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(build_one(args.one, args.model, args.samples, args.seq_len, args.seed)))
        return
    sets = {}
    for kind in CALIBRATION_KINDS:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--one",
                kind,
                "--model",
                args.model,
                "--samples",
                str(args.samples),
                "--seq-len",
                str(args.seq_len),
                "--seed",
                str(args.seed),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        sets[kind] = json.loads(out.stdout.strip().splitlines()[-1])
    print(
        json.dumps(
            {
                "model": args.model,
                "samples": args.samples,
                "seq_len": args.seq_len,
                "seed": args.seed,
                "budget_s": BUDGET_S,
                "sets": sets,
                "machine": {
                    "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                    "python": platform.python_version(),
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
