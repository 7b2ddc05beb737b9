"""Build time and recipe shares of the default calibration sets (Random / Mixed / Code) for one model.

Each set is built from nothing (no cache: `build_calibration`, not `resolve_calibration`) with the CLI defaults
(128 x 512 tokens, 16 of them validation, seed 0), one after the other in this process. The issue's budget is
2 minutes per set on 2 cores; `within_budget` says whether each met it. Prints one JSON object.

    .venv/bin/python bench/calibration.py [--model smollm2-135m] [--samples 128] [--seq-len 512]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

from codequant.calibration import KINDS, build_calibration, heldout_rows, load_tokenizer
from codequant.calibration.split import check_disjoint

BUDGET_S = 120.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--samples", type=int, default=128)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    tokenizer = load_tokenizer(args.model)
    heldout = [f for lang in ("python", "java") for f in heldout_rows(lang, tokenizer, 8192)[1]]
    sets = {}
    for kind in KINDS:
        start = time.perf_counter()
        calib = build_calibration(kind, tokenizer, samples=args.samples, seq_len=args.seq_len, seed=args.seed)
        seconds = time.perf_counter() - start
        check_disjoint(calib.manifest["rows"], heldout)  # raises if a held-out file leaked in
        sets[kind] = {
            "seconds": round(seconds, 2),
            "within_budget": seconds <= BUDGET_S,
            "shares": {k: round(v, 4) for k, v in calib.manifest["shares"].items()},
            "tokens": int(calib.tokens.numel() + calib.val.numel()),
            "sha256": calib.manifest["sha256"],
        }
    print(json.dumps({
        "model": args.model, "samples": args.samples, "seq_len": args.seq_len, "seed": args.seed,
        "budget_s": BUDGET_S, "sets": sets,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
    }, indent=2))


if __name__ == "__main__":
    main()
