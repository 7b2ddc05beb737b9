"""Benchmark the quantizers on a real model: method x bits -> time, bits/param, held-out code perplexity.

    .venv/bin/python bench/quantize.py --methods rtn,gptq --bits 4,3,2 --group-size 64
    .venv/bin/python bench/quantize.py --methods aqlm --bits 2 --samples 64

Each cell (and the fp reference) is cached as JSON under --cache keyed by everything that determines it, so
the grid can be filled in pieces and re-printed for free. Prints the cells as JSON, then a markdown table.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import quality_peers  # noqa: E402  (bench/; also puts the peers' own site folder on sys.path)

from codequant.models.filebits import parameter_count, whole_file_bits  # noqa: E402
from codequant.quant.pipeline import WalkOptions, quantize_model  # noqa: E402
from codequant.quant.run import build_config, make_model_quantizer  # noqa: E402
from codequant.quant.tables import TableSpec, quantize_tables  # noqa: E402


def cell_key(args: argparse.Namespace, method: str, bits: int | None, table_bits: int | None = None) -> str:
    fields = {
        "model": args.model,
        "method": method,
        "bits": bits,
        "group_size": args.group_size if method != "fp" else None,
        "act_order": args.act_order if method == "gptq" else None,
        "preset": args.preset if method == "aqlm" else None,
        "calibration": args.calibration,
        "samples": args.samples,
        "seq_len": args.seq_len,
        "seed": args.seed,
        "eval_rows": args.eval_rows,
        "eval_seq_len": args.eval_seq_len,
    }
    if args.clip != "minmax" and method in ("rtn", "gptq"):  # min-max cells keep the keys they had
        fields["clip"] = args.clip
    if args.val_samples:  # cells before held-out rows existed had none; their keys stay as they were
        fields["val_samples"] = args.val_samples
    if method == "aqlm" and (args.effort or args.aqlm_option):
        fields.update(effort=args.effort, aqlm_options=sorted(args.aqlm_option))
    if method == "fp":
        fields = {k: fields[k] for k in ("model", "method", "eval_rows", "eval_seq_len", "seed")}
    if table_bits is not None:  # cells with fp tables keep the keys they had
        fields.update(table_bits=table_bits, table_group_size=args.table_group_size)
    peer_version = _peer_version(method)
    if peer_version is not None:  # peers: their library version, not codequant's calibration
        fields.update(peer_version=peer_version, calibration=None, samples=None, seq_len=None, preset=None)
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]
    return f"{method}-{bits}-{digest}" if table_bits is None else f"{method}-{bits}-t{table_bits}-{digest}"


def _any_peer_cell(cache: Path, method: str, bits: int | None, args: argparse.Namespace) -> Path | None:
    """The newest cached cell of a peer at these bits and evaluation settings, whatever its library version."""
    found = []
    for path in cache.glob(f"{method}-{bits}-*.json"):
        cell = json.loads(path.read_text())
        s = cell.get("settings", {})
        if (s.get("eval_rows"), s.get("eval_seq_len"), s.get("model")) == (
            args.eval_rows,
            args.eval_seq_len,
            args.model,
        ):
            found.append((cell.get("measured", {}).get("date", ""), path))
    return max(found)[1] if found else None


def _peer_version(method: str) -> str | None:
    """The installed version of a peer's library: a new version is a new cell."""
    from importlib.metadata import PackageNotFoundError, version

    dist = {"hqq": "hqq", "quanto": "optimum-quanto", "torchao": "torchao", "kquant": "llama_cpp_python"}.get(
        method
    )
    if dist is None:
        return None
    try:
        return version(dist)
    except PackageNotFoundError:
        return "missing"


def load_model(spec: str):
    from codequant.models import load

    loaded = load(spec)
    return (loaded[0], loaded[1]) if isinstance(loaded, tuple) else (loaded.model, loaded.tokenizer)


def heldout(tokenizer, language: str, args: argparse.Namespace) -> torch.Tensor:
    from codequant.calibration import heldout_tokens

    return heldout_tokens(
        language, tokenizer, samples=args.eval_rows, seq_len=args.eval_seq_len, seed=args.seed
    )


def perplexities(model, evals: dict[str, torch.Tensor]) -> dict[str, float]:
    from codequant.metrics.perplexity import perplexity

    return {f"ppl_{lang}": float(perplexity(model, tokens)) for lang, tokens in evals.items()}


def peer_cell(args, method, bits, fp_model, tokenizer, evals) -> dict:
    """A quality peer (bench/quality_peers.py); a peer that cannot run here gives a cell with the reason."""
    import quality_peers as qp

    try:
        if method == "kquant":
            return {"method": method, "bits": bits, **qp.kquant_cell(fp_model, tokenizer, bits, evals)}
        out = qp.quantize_peer(method, fp_model, bits, group=args.group_size if args.group_size > 0 else 64)
    except qp.PeerUnavailable as exc:
        return {"method": method, "bits": bits, "unavailable": str(exc)}
    return {
        "method": method,
        "bits": bits,
        "quantize_s": out["quantize_s"],
        "formula_bits_per_param": out["bits_per_param"],
        "stored_bits_per_param": out["bits_per_param"],
        **perplexities(out["model"], evals),
    }


def saved_whole_file(model, fp_params: int) -> dict:
    """Bits/weight of the model as `codequant quantize` saves it (the native checkpoint; an fp model as
    safetensors), measured on the written file in a temporary folder (codequant.models.filebits)."""
    import tempfile

    from safetensors.torch import save_model

    from codequant.quant.checkpoint import quantized_modules
    from codequant.quant.export import save_codequant_checkpoint

    with tempfile.TemporaryDirectory(prefix="bench-whole-file-") as tmp:
        if quantized_modules(model):
            save_codequant_checkpoint(model, tmp)
        else:
            save_model(model, f"{tmp}/model.safetensors")
        whole = whole_file_bits(tmp, fp_params)
    return {
        **whole,
        "saved_as": "codequant" if quantized_modules(model) else "safetensors",
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
    }


def table_cell(base: dict, model, table_bits: int, group_size: int, fp_params: int, evals) -> dict:
    """`base`'s model with its token embedding and head (one tensor when tied) on `table_bits`-bit RTN grids
    (codequant.quant.tables), from the same quantized decoder: its whole-file bits and perplexities."""
    model = copy.deepcopy(model)
    t = time.perf_counter()
    tables = quantize_tables(model, TableSpec(table_bits, table_bits, group_size))
    seconds = time.perf_counter() - t
    keep = (
        "method",
        "bits",
        "clip",
        "resolved",
        "quantize_s",
        "formula_bits_per_param",
        "stored_bits_per_param",
        "mean_rel_weight_error",
        "last_block_rel_output_mse",
        "last_block_rel_output_mse_heldout",
        "mean_rel_output_error",
        "mean_rel_output_error_heldout",
    )
    return {
        **{k: base[k] for k in keep if k in base},
        "tables": tables,
        "tables_s": round(seconds, 2),
        "whole_file": saved_whole_file(model, fp_params),
        **perplexities(model, evals),
    }


def run_cell(args, method, bits, fp_model, tokenizer, evals, calib_cache) -> dict:
    calib_cache["model"] = fp_model if method == "fp" else None
    if method == "fp":
        return {
            "method": "fp",
            "bits": None,
            "whole_file": saved_whole_file(fp_model, parameter_count(fp_model)),
            **perplexities(fp_model, evals),
        }
    if method in quality_peers.PEERS:
        return peer_cell(args, method, bits, fp_model, tokenizer, evals)
    options = {"act_order": args.act_order} if method == "gptq" else {}
    if method in ("rtn", "gptq") and args.clip != "minmax":
        options["clip"] = args.clip
    if method == "aqlm":
        options.update({"effort": args.effort} if args.effort else {})
        options.update(dict(_parse_option(o) for o in args.aqlm_option))
    gs = args.group_size if method != "aqlm" else None
    config = build_config(
        method, bits=bits, preset=args.preset, group_size=gs, seed=args.seed, options=options
    )
    model = copy.deepcopy(fp_model)
    quantizer = make_model_quantizer(config, model)
    if "calib" not in calib_cache:
        from codequant.calibration import resolve_calibration

        calib_cache["calib"] = resolve_calibration(
            args.calibration,
            tokenizer,
            samples=args.samples,
            seq_len=args.seq_len,
            seed=args.seed,
            val_samples=args.val_samples,
        )
    t = time.perf_counter()
    report = quantize_model(
        model, calib_cache["calib"], quantizer, WalkOptions(batch_size=args.batch_size), progress=True
    )
    seconds = time.perf_counter() - t
    calib_cache["model"] = model  # the table variants of this cell start from it (no second walk)
    totals = report.totals()
    errs = [layer["rel_weight_error"] for layer in report.layers]
    held = [
        layer["rel_output_error_heldout"] for layer in report.layers if "rel_output_error_heldout" in layer
    ]
    ins = [layer["rel_output_error"] for layer in report.layers if "rel_output_error" in layer]
    return {
        "method": method,
        "bits": bits,
        **({"clip": options["clip"]} if "clip" in options else {}),
        "resolved": quantizer.describe(),
        "quantize_s": round(seconds, 1),
        "formula_bits_per_param": totals["formula_bits_per_param"],
        "stored_bits_per_param": totals["stored_bits_per_param"],
        "whole_file": saved_whole_file(model, fp_params=parameter_count(fp_model)),
        "mean_rel_weight_error": sum(errs) / len(errs),
        "last_block_rel_output_mse": report.blocks[-1].get("rel_output_mse"),
        "last_block_rel_output_mse_heldout": report.blocks[-1].get("rel_output_mse_heldout"),
        "mean_rel_output_error": sum(ins) / len(ins) if ins else None,
        "mean_rel_output_error_heldout": sum(held) / len(held) if held else None,
        "blocks": [
            {k: b.get(k) for k in ("index", "rel_output_mse", "rel_output_mse_heldout", "seconds")}
            | {"tune": {k: v for k, v in (b.get("tune") or {}).items() if k != "history"}}
            for b in report.blocks
        ],
        **perplexities(model, evals),
    }


def _parse_option(text: str) -> tuple[str, object]:
    key, _, value = text.partition("=")
    for cast in (int, float):
        try:
            return key, cast(value)
        except ValueError:
            pass
    return key, None if value.lower() == "none" else value


def _commit() -> str | None:
    """The code a cell was measured with (cells outlive code changes; `--fresh` remeasures)."""
    import subprocess

    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def _whole(cell: dict) -> float | None:
    """Whole-file bits/weight of a cell; cells measured before it was recorded have none (never derived)."""
    return (cell.get("whole_file") or {}).get("bits_per_weight")


def _label(cell: dict) -> str:
    tables = cell.get("tables") or {}
    emb = (tables.get("embedding") or {}).get("bits")
    return (
        f"{cell['method']}{' clip ' + cell['clip'] if cell.get('clip') else ''}{f' emb{emb}' if emb else ''}"
    )


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def markdown(cells: list[dict]) -> str:
    fp = next((c for c in cells if c["method"] == "fp"), {})
    rows = [
        "| method | bits | bits/param (formula) | stored | whole file bits/weight | quantize s | "
        "layer out err in-sample / held-out | ppl Python | ppl Java |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        ppls = []
        for lang in ("python", "java"):
            v, ref = c.get(f"ppl_{lang}"), fp.get(f"ppl_{lang}")
            delta = f" ({v / ref - 1:+.1%})" if v is not None and ref and c is not fp else ""
            ppls.append(_fmt(v, ".3f") + delta)
        rows.append(
            f"| {_label(c)} | {c['bits'] or '-'} | {_fmt(c.get('formula_bits_per_param'), '.3f')} | "
            f"{_fmt(c.get('stored_bits_per_param'), '.3f')} | {_fmt(_whole(c), '.3f')} | {_fmt(c.get('quantize_s'), '')} | "
            f"{_fmt(c.get('mean_rel_output_error'), '.4f')} / {_fmt(c.get('mean_rel_output_error_heldout'), '.4f')} | "
            f"{ppls[0]} | {ppls[1]} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument(
        "--methods",
        default="rtn,gptq",
        help="comma list of rtn,gptq,aqlm and the peers hqq,quanto,torchao,kquant",
    )
    p.add_argument("--bits", default="8,4,3,2")
    p.add_argument("--group-size", type=int, default=64, help="rtn/gptq group size (-1 per row)")
    p.add_argument("--act-order", action="store_true")
    p.add_argument(
        "--clip",
        default="minmax",
        choices=["minmax", "mse"],
        help="rtn/gptq grid: min-max or the MSE-searched range (GPTQ's reference `mse` option)",
    )
    p.add_argument("--preset", default="fast", help="aqlm preset")
    p.add_argument(
        "--effort", default=None, help="aqlm effort: fast | reference (default: codequant's default)"
    )
    p.add_argument("--aqlm-option", action="append", default=[], help="aqlm option KEY=VALUE (repeatable)")
    p.add_argument("--calibration", default="code")
    p.add_argument("--samples", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--val-samples", type=int, default=0)
    p.add_argument("--eval-rows", type=int, default=16)
    p.add_argument("--eval-seq-len", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--table-bits",
        default="",
        help="comma list of 8,6,4: each cell also with its token embedding "
        "and head (tied on SmolLM2) on RTN grids of these bits, from the same quantized decoder",
    )
    p.add_argument(
        "--table-group-size", type=int, default=64, help="values per scale/offset of the table grids"
    )
    p.add_argument("--no-fp", action="store_true", help="skip the fp reference row")
    p.add_argument("--cache", default=str(ROOT / "bench" / "results" / "quantize"))
    p.add_argument("--fresh", action="store_true", help="recompute cached cells")
    p.add_argument(
        "--cached-only", action="store_true", help="print the cached cells of the grid, compute nothing"
    )
    p.add_argument(
        "--plot", help="also draw held-out perplexity vs bits/weight of the grid's cells to this PNG"
    )
    p.add_argument(
        "--folders",
        default="",
        help="comma list of `codequant quantize`/`finetune` output folders: "
        "their held-out perplexity on the same rows, as extra cells (e.g. a fine-tuned model)",
    )
    args = p.parse_args(argv)

    torch.manual_seed(args.seed)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    grid = [] if args.no_fp else [("fp", None)]
    grid += [(m, int(b)) for m in args.methods.split(",") if m for b in args.bits.split(",") if b]
    loaded: dict = {}
    calib_cache: dict = {}
    cells = []
    table_bits = [int(b) for b in args.table_bits.split(",") if b]
    for method, bits in grid:
        path = cache / f"{cell_key(args, method, bits)}.json"
        if args.cached_only and not path.exists() and _peer_version(method) == "missing":
            path = _any_peer_cell(cache, method, bits, args) or path  # peer not installed here: its last cell
        variants = [
            (t, cache / f"{cell_key(args, method, bits, t)}.json")
            for t in table_bits
            if method not in quality_peers.PEERS
        ]
        todo = [(t, p) for t, p in variants if args.fresh or not p.exists()]
        if path.exists() and not args.fresh and (not todo or args.cached_only):
            cells.append(json.loads(path.read_text()))
            cells += [json.loads(p.read_text()) for _, p in variants if p.exists()]
            continue
        if args.cached_only:
            print(f"not cached: {method} {bits}", file=sys.stderr)
            continue
        if not loaded:
            model, tokenizer = load_model(args.model)
            loaded.update(
                model=model.eval(),
                tokenizer=tokenizer,
                evals={lang: heldout(tokenizer, lang, args) for lang in ("python", "java")},
            )
        if path.exists() and not args.fresh and method != "fp":  # a table variant is missing: quantize again
            print(
                f"{method} {bits}: quantizing again for the table variants (the base cell stays as cached)",
                file=sys.stderr,
            )
        if method == "fp" and path.exists() and not args.fresh:  # the fp model needs no quantizing
            cell = json.loads(path.read_text())
            calib_cache["model"] = loaded["model"]
        else:
            cell = run_cell(
                args, method, bits, loaded["model"], loaded["tokenizer"], loaded["evals"], calib_cache
            )
        base_model = calib_cache.pop("model", None)
        if args.fresh or not path.exists():
            _emit(cell, path, args, cells)
        else:
            cells.append(json.loads(path.read_text()))
        if base_model is not None:
            fp_params = parameter_count(loaded["model"])
            for t, p in todo:  # each written as soon as it is measured
                _emit(
                    table_cell(cell, base_model, t, args.table_group_size, fp_params, loaded["evals"]),
                    p,
                    args,
                    cells,
                )
        cells += [json.loads(p.read_text()) for t, p in variants if (t, p) not in todo and p.exists()]
        del base_model
    for folder in filter(None, args.folders.split(",")):
        cells.append(folder_cell(folder, args, loaded))
        print(json.dumps(cells[-1], default=str), flush=True)
    machine = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps({"machine": machine, "cells": cells}, indent=2, default=str))
    print(markdown(cells))
    if args.plot:
        print(f"wrote {plot(cells, Path(args.plot))}", file=sys.stderr)


def _emit(cell: dict, path: Path, args: argparse.Namespace, cells: list[dict]) -> None:
    """Stamp a measured cell with its settings, machine and commit, cache it and print it."""
    cell["settings"] = {k: v for k, v in vars(args).items() if k not in ("cache", "fresh", "cached_only")}
    cell["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform()}
    cell["measured"] = {"date": time.strftime("%Y-%m-%d"), "commit": _commit()}
    if "unavailable" in cell:  # not cached: installing the peer later fills the cell
        print(f"{cell['method']} {cell['bits']}: {cell['unavailable']}", file=sys.stderr)
    else:
        path.write_text(json.dumps(cell, indent=2, default=str))
    cells.append(cell)
    print(json.dumps(cell, default=str), flush=True)


def folder_cell(folder: str, args: argparse.Namespace, loaded: dict) -> dict:
    """A quantized (or fine-tuned) output folder as a cell: what its JSON says of it, and its perplexities on the
    bench's held-out rows (the fp model's tokenizer, so the rows are the grid's)."""
    path = Path(folder)
    info = json.loads((path / "quantize.json").read_text()) if (path / "quantize.json").is_file() else {}
    if (path / "finetune.json").is_file():  # a fine-tuned model: method, bits and accounting are its source's
        tuned = json.loads((path / "finetune.json").read_text())
        source = Path(tuned.get("quant_dir", "")) / "quantize.json"
        if source.is_file():
            info = json.loads(source.read_text())
    if not loaded:
        model, tokenizer = load_model(args.model)
        loaded.update(
            model=model.eval(),
            tokenizer=tokenizer,
            evals={lang: heldout(tokenizer, lang, args) for lang in ("python", "java")},
        )
    model, _ = load_model(str(path))
    # the native checkpoint's file: the one the folder's own accounting describes (fine-tuned or not)
    native_json = path / "codequant" / "codequant.json"
    native = json.loads(native_json.read_text()) if native_json.is_file() else {}
    acc = info.get("accounting") or {}
    config = info.get("config") or {}
    return {
        "method": f"{config.get('method', 'model')}{'+ft' if (path / 'finetune.json').is_file() else ''}",
        "bits": config.get("bits"),
        "folder": str(path),
        "formula_bits_per_param": acc.get("formula_bits_per_param"),
        "stored_bits_per_param": acc.get("stored_bits_per_param"),
        "whole_file": native.get("whole_file"),
        **perplexities(model.eval(), loaded["evals"]),
        "measured": {"date": time.strftime("%Y-%m-%d"), "commit": _commit()},
    }


def plot(cells: list[dict], path: Path) -> Path:
    """Perplexity vs measured bits/weight, one series per method, on the linears' bits and (for cells that
    recorded it) on the whole saved file's bits (codequant.report.plots.perplexity_pareto)."""
    from codequant.report.plots import perplexity_pareto

    rows = []
    for c in cells:
        if "unavailable" in c:
            continue
        name = f"{c['method']} (peer)" if c["method"] in quality_peers.PEERS else c["method"]
        if c.get("clip"):
            name += f" clip {c['clip']}"
        emb = ((c.get("tables") or {}).get("embedding") or {}).get("bits")
        name += f" emb{emb}" if emb else ""
        for lang in ("python", "java"):
            rows.append(
                {
                    "series": name,
                    "language": lang,
                    "perplexity": c.get(f"ppl_{lang}"),
                    "bits_per_weight": None if c["method"] == "fp" else c.get("formula_bits_per_param"),
                    "whole_file_bits": _whole(c),
                }
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    return perplexity_pareto(rows, path, title="SmolLM2-135M: held-out perplexity vs bits per weight")


if __name__ == "__main__":
    main()
