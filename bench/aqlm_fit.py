"""AQLM fit settings on real layers, judged on held-out rows: relative output error in-sample and held-out, time.

    .venv/bin/python bench/aqlm_fit.py --spec 2x8 --grid damping=0,0.01,0.03,0.1,0.3
    .venv/bin/python bench/aqlm_fit.py --spec 4x8 --grid kmeans_sample=64,none --grid adam_steps=10,30,100
    .venv/bin/python bench/aqlm_fit.py --spec 2x8 --grid init=kmeans,oa-em --init-too --out bench/results/x.jsonl

XTX comes from the fp model's activations on the training rows of a Code calibration set (default 128 x 512), the
held-out XTX from its disjoint validation rows; the error of a fit W' is ||(W'-W)X||^2 / ||WX||^2 on each. The
layers are a fixed sample of blocks and projections (default blocks 5 and 20, q/o/gate/down). Prints one JSON
object per setting (per-layer errors, their geometric means and the fit's CPU seconds), then a markdown table.
`--init-too` also measures each setting's start alone (the same fit with max_rounds=0): its errors and seconds
per layer and their geometric means. Used to choose FitOptions defaults (docs/aqlm.md): decide on the held-out
column.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from codequant.quant.aqlm.fit import FitOptions, fit_weight  # noqa: E402


def commit() -> str:
    """The checkout's commit (with "+dirty" when it has uncommitted changes), for the results' provenance."""

    def git(*a: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *a], capture_output=True, text=True).stdout.strip()

    return git("rev-parse", "--short", "HEAD") + (
        "+dirty" if git("status", "--porcelain", "--", "codequant") else ""
    )


def _value(text: str):
    if text.lower() == "none":
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def settings_of(grid: list[str], singles: list[str]) -> list[dict]:
    """The grid's settings (if any, or the one empty setting when nothing is given), then each single one
    ("KEY=V;KEY=V")."""
    settings = parse_grid(grid) if grid or not singles else []
    return settings + [
        {k: _value(v) for k, _, v in (kv.partition("=") for kv in s.split(";") if kv)} for s in singles
    ]


def parse_grid(items: list[str]) -> list[dict]:
    axes = []
    for item in items:
        key, _, values = item.partition("=")
        axes.append([(key, _value(v)) for v in values.split(",")])
    return [dict(combo) for combo in itertools.product(*axes)] if axes else [{}]


class _Enough(Exception):
    """Raised once the last linear that needs an XTX has seen its input: the rest of the forward is not needed."""


@torch.no_grad()
def collect_xtx(model, rows: torch.Tensor, names: list[str], batch: int = 4) -> dict[str, torch.Tensor]:
    """XTX (float64) of each named linear's input over all tokens of `rows`. The forward stops after the last
    block that holds one of them (decoder blocks run in order; the head and later blocks are skipped)."""
    xtx: dict[str, torch.Tensor] = {}
    handles = []
    for name in names:

        def hook(_m, args, name=name):
            x = args[0].reshape(-1, args[0].shape[-1]).float()
            part = (x.T @ x).double()
            xtx[name] = part if name not in xtx else xtx[name] + part

        handles.append(model.get_submodule(name).register_forward_pre_hook(hook))
    last = max(names, key=lambda n: int(n.split(".")[2]))  # model.layers.<i>.<...>
    block = model.get_submodule(".".join(last.split(".")[:3]))

    def stop(*_):
        raise _Enough

    handles.append(block.register_forward_hook(stop))
    try:
        for i in range(0, rows.shape[0], batch):
            try:
                model(input_ids=rows[i : i + batch], use_cache=False)
            except _Enough:
                pass
    finally:
        for h in handles:
            h.remove()
    return xtx


def rel_error(w: torch.Tensor, q: torch.Tensor, h: torch.Tensor) -> float:
    e = (q - w).double()
    return float(((e @ h) * e).sum() / ((w.double() @ h) * w.double()).sum())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--spec", default="2x8", help="MxB (group size 8), or a comma list of them")
    p.add_argument("--blocks", default="5,20")
    p.add_argument("--linears", default="self_attn.q_proj,self_attn.o_proj,mlp.gate_proj,mlp.down_proj")
    p.add_argument("--samples", type=int, default=128)
    p.add_argument("--val-samples", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument(
        "--grid", action="append", default=[], help="KEY=V1,V2 over FitOptions fields (repeatable)"
    )
    p.add_argument(
        "--setting",
        action="append",
        default=[],
        help="one setting as KEY=V;KEY=V (repeatable; run after the grid's, if any)",
    )
    p.add_argument("--init-too", action="store_true", help="also measure the start alone (max_rounds=0)")
    p.add_argument(
        "--xtx-cache",
        help="load both XTX sets from this file if it exists, else save them there (the "
        "file belongs to one model, calibration and layer list)",
    )
    p.add_argument("--out", help="also write the JSON lines here")
    args = p.parse_args(argv)

    from codequant.calibration import resolve_calibration
    from codequant.models import load

    loaded = load(args.model)
    model, tokenizer = (
        (loaded[0], loaded[1]) if isinstance(loaded, tuple) else (loaded.model, loaded.tokenizer)
    )
    model.eval()
    calib = resolve_calibration(
        "code",
        tokenizer,
        samples=args.samples + args.val_samples,
        seq_len=args.seq_len,
        val_samples=args.val_samples,
    )
    names = [f"model.layers.{b}.{n}" for b in args.blocks.split(",") for n in args.linears.split(",")]
    t = time.perf_counter()
    cache = Path(args.xtx_cache) if args.xtx_cache else None
    if cache is not None and cache.exists():
        train_h, val_h = torch.load(cache)
    else:
        train_h, val_h = collect_xtx(model, calib.train, names), collect_xtx(model, calib.val, names)
        if cache is not None:
            torch.save((train_h, val_h), cache)
    print(f"XTX of {len(names)} linears in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    revision = commit()  # the code that runs, as it was at the start
    rows = []
    for spec, setting in itertools.product(args.spec.split(","), settings_of(args.grid, args.setting)):
        m, b = (int(x) for x in spec.lower().split("x"))
        opts = FitOptions(**setting)
        layers = {}
        for name in names:
            w = model.get_submodule(name).weight.detach().float()
            t = time.perf_counter()
            res = fit_weight(w, train_h[name], m, b, 8, opts, torch.Generator().manual_seed(0))
            seconds = time.perf_counter() - t
            q = _decode(res, w.shape)
            layers[name] = {
                "in_sample": rel_error(w, q, train_h[name]),
                "heldout": rel_error(w, q, val_h[name]),
                "seconds": round(seconds, 2),
                "rounds": len(res.history) - 1,
            }
            if args.init_too:
                t = time.perf_counter()
                start = fit_weight(
                    w,
                    train_h[name],
                    m,
                    b,
                    8,
                    dataclasses.replace(opts, max_rounds=0),
                    torch.Generator().manual_seed(0),
                )
                q = _decode(start, w.shape)
                layers[name] |= {
                    "init_in_sample": rel_error(w, q, train_h[name]),
                    "init_heldout": rel_error(w, q, val_h[name]),
                    "init_seconds": round(time.perf_counter() - t, 2),
                }
            print(spec, setting, name, layers[name], file=sys.stderr, flush=True)
        keys = ("in_sample", "heldout") + (("init_in_sample", "init_heldout") if args.init_too else ())
        geo = {k: math.exp(sum(math.log(v[k]) for v in layers.values()) / len(layers)) for k in keys}
        row = {
            "spec": spec,
            "setting": setting,
            "geomean": geo,
            "seconds": round(sum(v["seconds"] for v in layers.values()), 1),
            "layers": layers,
            "commit": revision,
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "load_average": os.getloadavg()[0],
            "calibration": [args.samples, args.val_samples, args.seq_len],
        }
        if args.init_too:
            row["init_seconds"] = round(sum(v["init_seconds"] for v in layers.values()), 1)
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
    print(
        "| setting | init in-sample | init held-out | init s | in-sample | held-out | fit s |\n|---|---|---|---|---|---|---|"
    )
    for r in rows:
        geo = r["geomean"]
        init = (
            f"{geo['init_in_sample']:.5f} | {geo['init_heldout']:.5f} | {r['init_seconds']}"
            if args.init_too
            else "- | - | -"
        )
        print(
            f"| {r['spec']} {r['setting']} | {init} | {geo['in_sample']:.5f} | {geo['heldout']:.5f} | {r['seconds']} |"
        )


def _decode(res, shape) -> torch.Tensor:
    """W' = diag(scales) * sum_m C_m[codes[:, :, m]], [out, in]."""
    books = res.codebooks.float()  # [M, K, g]
    out, groups, m = res.codes.shape
    parts = sum(books[i][res.codes[:, :, i]] for i in range(m))  # [out, G, g]
    return parts.reshape(shape) * res.scales.float()[:, None]


if __name__ == "__main__":
    main()
