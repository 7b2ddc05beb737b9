"""`codequant quantize` as a function: model spec + method spec + calibration -> an output folder.

OUT/                 HF folder with dequantized weights (any method; `codequant evaluate OUT`)  --format dequantized
OUT/aqlm/            HF folder in the `aqlm` package's format (AQLM only)                      --format aqlm
OUT/codequant/       native checkpoint (codes + scales/codebooks; reload for fine-tuning)      --format codequant
OUT/checkpoint/      per-block checkpoint of the run (rerunning the same command resumes from it)
OUT/quantize.json    config, resolved config, per-layer errors, timings, accounting

The dequantized export sits at OUT itself so that OUT is a model spec every other command accepts.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from codequant.calibration.spec import CalibrationSpec
from codequant.errors import CodequantError
from codequant.quant.activations import ActivationPolicy
from codequant.quant.base import QuantConfig, Quantizer
from codequant.quant.options import parse_options
from codequant.quant.registry import make_quantizer, method_names

FORMATS = ("dequantized", "aqlm", "codequant")


def parse_formats(spec: str | None, method: str) -> list[str]:
    """'both' = aqlm + dequantized; or a comma list. Default: every format the method has (aqlm for AQLM, then
    dequantized and the native codequant checkpoint), so that `finetune` and `evaluate` both work on the folder."""
    if spec is None:
        return ["aqlm", "dequantized", "codequant"] if method == "aqlm" else ["dequantized", "codequant"]
    names = ["aqlm", "dequantized"] if spec == "both" else [s.strip() for s in spec.split(",") if s.strip()]
    for name in names:
        if name not in FORMATS:
            raise CodequantError(f"unknown --format {name!r}; choose from {', '.join(FORMATS)} or 'both'")
        if name == "aqlm" and method != "aqlm":
            raise CodequantError(
                f"--format aqlm needs --method aqlm (use dequantized or codequant for {method})"
            )
    return names


def build_config(
    method: str,
    *,
    bits: int | None = None,
    preset: str = "fast",
    group_size: int | None = None,
    num_codebooks: int | None = None,
    codebook_bits: int | None = None,
    seed: int = 0,
    options: dict[str, Any] | None = None,
) -> QuantConfig:
    """Check what can be checked without the model and build the QuantConfig."""
    if method not in method_names():
        raise CodequantError(f"unknown --method {method!r}; choose one of {', '.join(method_names())}")
    parse_options(method, options)  # the same checks as a study's `options:` (one line naming a bad key)
    if method == "aqlm":
        if bits is None and (num_codebooks is None or codebook_bits is None or group_size is None):
            raise CodequantError(
                "aqlm needs --bits (8|4|3|2) or all of --codebooks M --codebook-bits B --group-size g"
            )
        from codequant.quant.aqlm.presets import PRESETS, validate_spec

        if bits is not None and bits not in (2, 3, 4, 8):
            raise CodequantError(f"aqlm --bits must be one of 8, 4, 3, 2 (got {bits})")
        validate_spec(num_codebooks, codebook_bits, group_size, [])
        if preset not in PRESETS:
            raise CodequantError(f"--preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    elif num_codebooks is not None or codebook_bits is not None:
        raise CodequantError(
            f"--codebooks/--codebook-bits are AQLM options; {method} takes --bits and --group-size"
        )
    config = QuantConfig(
        method=method,
        bits=bits,
        preset=preset,
        group_size=group_size,
        num_codebooks=num_codebooks,
        codebook_bits=codebook_bits,
        seed=seed,
        options=dict(options or {}),
    )
    if method != "aqlm":
        make_quantizer(config)  # validates bits / group size now, before the model is loaded
    return config


def make_model_quantizer(config: QuantConfig, model: Any) -> Quantizer:
    """The quantizer for `config` on `model`; for AQLM, `--bits` is resolved to (M, B, g) for this model."""
    if config.method == "aqlm":
        try:
            from codequant.quant.aqlm import AqlmQuantizer, resolve_aqlm_config
        except ImportError as exc:
            raise CodequantError(f"the aqlm method is not available in this install: {exc}") from exc
        return AqlmQuantizer(resolve_aqlm_config(config, model))
    return make_quantizer(config)


@dataclasses.dataclass(frozen=True)
class QuantRun:
    """How one quantization runs, besides the model and the method (what `codequant quantize` takes).

    `calibration`: a `CalibrationSpec` (kind code | mixed | random | PATH of a built set, rows, tokens per row,
    held-out rows, seed; a plain string is its kind), or an already built set (tensor or CalibrationSet-like, from
    the benches and tests). The spec's held-out rows never steer a fit, and give every layer and block a
    held-out error (AQLM's block tuning selects on them). `formats`: None = every format of the method (`parse_formats`).
    `device`: where each block is quantized ("cuda": one block at a time on the GPU, the model in CPU memory).
    `dtype`: the weights' dtype (auto | float32 | float16 | bfloat16; auto = the checkpoint's own on a GPU, float32
    on the CPU: codequant.models.dtype); XTX, GPTQ's Cholesky, the AQLM fit and block tuning accumulate in
    fp32/fp64 whatever it is, and the exports keep it.
    `max_host_memory_gb` / `activations`: where the walk's two activation buffers go (auto: host RAM while the
    model and the buffers fit the budget, else the GPU, else memory-mapped files in OUT/checkpoint).
    `embedding_bits` / `head_bits` / `table_group_size`: round-to-nearest grids for the token tables after the
    walk (quant/tables.py; None keeps them fp); the aqlm export cannot hold them (left out, or an error by name).
    """

    calibration: CalibrationSpec | Any = CalibrationSpec()
    formats: tuple[str, ...] | None = None
    batch_size: int = 8
    sequential: bool | None = None  # None: the quantizer's own default (see quantize_model)
    max_blocks: int | None = None
    device: str = "cpu"
    dtype: str = "auto"
    max_host_memory_gb: float | None = None
    activations: str = "auto"
    # the token tables (quant/tables.py), quantized after the decoder walk whatever the method: 8 | 6 | 4 bits,
    # None = fp (the default); a tied model takes equal bits for both
    embedding_bits: int | None = None
    head_bits: int | None = None
    table_group_size: int = 64

    def __post_init__(self) -> None:
        if isinstance(self.calibration, str):
            object.__setattr__(self, "calibration", CalibrationSpec(kind=self.calibration))
        if isinstance(self.formats, str):
            raise CodequantError(
                f"QuantRun.formats is a sequence of format names, not the string {self.formats!r}"
            )
        from codequant.models.dtype import check_dtype

        object.__setattr__(self, "dtype", check_dtype(self.dtype))
        self.activation_policy(None)  # validates placement and budget once, before the model is loaded
        self.table_spec()  # validates the table bits and group size once, before the model is loaded

    def table_spec(self):
        from codequant.quant.tables import TableSpec

        return TableSpec(self.embedding_bits, self.head_bits, self.table_group_size)

    def activation_policy(self, folder: Path | None) -> ActivationPolicy:
        budget = None if self.max_host_memory_gb is None else int(self.max_host_memory_gb * 1e9)
        return ActivationPolicy(self.activations, budget, folder)


def quantize_to_dir(
    model_spec: str,
    config: QuantConfig,
    out_dir: str | Path,
    run: QuantRun = QuantRun(),
    *,
    progress: bool = True,
    on_resolved: Any = None,
) -> dict[str, Any]:
    """Run the whole quantization and write OUT; returns what quantize.json holds. `on_resolved` gets the
    quantizer's resolved configuration before the (long) quantization starts."""
    from codequant.devices import resolve_device
    from codequant.models import load, load_dtype
    from codequant.models.filebits import parameter_count
    from codequant.quant.export import accounting, whole_file_accounting
    from codequant.quant.pipeline import WalkOptions, check_model, quantize_model
    from codequant.quant.tables import check_tables, quantize_tables

    formats = list(run.formats) if run.formats is not None else parse_formats(None, config.method)
    out = Path(out_dir)
    times: dict[str, float] = {}
    t = time.perf_counter()
    device = resolve_device(run.device)
    # resolved against the device the blocks run on; the model itself stays in CPU memory
    loaded = load(model_spec, dtype=load_dtype(model_spec, run.dtype, device))
    model, tokenizer = loaded.model, loaded.tokenizer
    times["load_s"] = time.perf_counter() - t
    quantizer = make_model_quantizer(config, model)
    check_model(model, quantizer)
    tables = run.table_spec()
    check_tables(model, tables)
    fp_params = parameter_count(model)
    formats = _formats_for(model, formats, explicit=run.formats is not None, tables=tables.active)
    out.mkdir(parents=True, exist_ok=True)
    resolved = quantizer.describe()
    if on_resolved is not None:
        on_resolved(resolved)
    t = time.perf_counter()
    calib, spec = _calibration(run, tokenizer)
    times["calibration_s"] = time.perf_counter() - t
    t = time.perf_counter()
    walk = WalkOptions(
        batch_size=run.batch_size,
        sequential=run.sequential,
        max_blocks=run.max_blocks,
        device=None if device == "cpu" else device,
        activations=run.activation_policy(out / "checkpoint"),
    )
    report = quantize_model(
        model, calib, quantizer, walk, checkpoint_dir=out / "checkpoint", progress=progress
    )
    times["quantize_s"] = time.perf_counter() - t
    info = {
        "model": model_spec,
        "config": dataclasses.asdict(config),
        "resolved": resolved,
        "dtype": loaded.dtype,
    }
    table_info = quantize_tables(model, tables) if report.complete else {}
    if table_info:
        info["tables"] = table_info
    t = time.perf_counter()
    written = _write_exports(model, tokenizer, out, info, formats) if report.complete else {}
    times["export_s"] = time.perf_counter() - t
    acc = accounting(model)
    result = {
        **info,
        "calibration": {
            "spec": spec.kind if spec else "given",
            "samples": spec and spec.samples,
            "seq_len": spec and spec.seq_len,
            "val_samples": spec and spec.held_out,
            "sequential": report.calibration["sequential"],
            "targets": report.calibration["targets"],
            "manifest": getattr(calib, "manifest", None),
            "activations": report.calibration.get("activations"),
        },
        "complete": report.complete,
        "accounting": {**acc, "checkpoint_bytes": _checkpoint_bytes(out / "checkpoint")},
        # bits/weight of each written folder: all its tensors' bytes * 8 / the fp model's parameters
        "whole_file": whole_file_accounting(written, fp_params),
        "timings": {**times, "pipeline_s": report.seconds},
        "exports": written,
        "blocks": report.blocks,
        "layers": report.layers,
    }
    _keep_earlier_runs(result, out / "quantize.json")
    tmp = out / "quantize.json.tmp"
    tmp.write_text(json.dumps(result, indent=2, default=str))
    tmp.replace(out / "quantize.json")
    return result


def _formats_for(model: Any, formats: list[str], *, explicit: bool, tables: bool = False) -> list[str]:
    """The formats to write for this model: a format the architecture (or quantized token tables) cannot be
    written in is an error, before any work, when asked for by name, and left out of the method's defaults."""
    if "aqlm" not in formats:
        return formats
    from codequant.quant.aqlm.export import aqlm_format_problem

    problem = aqlm_format_problem(model)
    if tables and not problem:
        problem = (
            "the aqlm format cannot hold quantized token tables (embedding_bits/head_bits): transformers' "
            "aqlm loader keeps the embedding and the head in fp; write --format dequantized,codequant"
        )
    if problem and explicit:
        raise CodequantError(problem)
    return [f for f in formats if f != "aqlm"] if problem else formats


def _calibration(run: QuantRun, tokenizer) -> tuple[Any, CalibrationSpec | None]:
    """(calibration set, its spec): a spec's set is built or read here; a given set is used as is (no spec)."""
    spec = run.calibration if isinstance(run.calibration, CalibrationSpec) else None
    return (spec.resolve(tokenizer) if spec else run.calibration), spec


def _write_exports(model, tokenizer, out: Path, info: dict[str, Any], formats: list[str]) -> dict[str, str]:
    from codequant.quant.export import export_dequantized, save_codequant_checkpoint

    written: dict[str, str] = {}
    if "dequantized" in formats:
        written["dequantized"] = str(export_dequantized(model, tokenizer, out, info=info))
    if "codequant" in formats:
        written["codequant"] = str(
            save_codequant_checkpoint(model, out / "codequant", tokenizer=tokenizer, info=info)
        )
    if "aqlm" in formats:
        from codequant.quant.aqlm import export_aqlm

        written["aqlm"] = str(export_aqlm(model, tokenizer, out / "aqlm"))
    return written


def _checkpoint_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("block_*.safetensors"))


def error_summary(result: dict[str, Any]) -> list[str]:
    """Lines for the user: mean per-layer output error and the last block's output error, held-out beside
    in-sample (in-sample alone flatters a fit that overfits the calibration rows)."""
    lines = []
    layers, blocks = result.get("layers") or [], result.get("blocks") or []
    pairs = (
        ("layer output error", layers, "rel_output_error"),
        ("block output error", blocks, "rel_output_mse"),
    )
    for what, rows, key in pairs:
        ins = [r[key] for r in rows if r.get(key) is not None]
        held = [r[f"{key}_heldout"] for r in rows if r.get(f"{key}_heldout") is not None]
        if not ins:
            continue
        scope = "mean over layers" if rows is layers else "last block"
        pick = (lambda v: sum(v) / len(v)) if rows is layers else (lambda v: v[-1])
        text = f"{what} ({scope}): in-sample {pick(ins):.4g}"
        text += f", held-out {pick(held):.4g}" if held else " (no held-out rows: --val-samples 0)"
        lines.append(text)
    return lines


def _keep_earlier_runs(result: dict[str, Any], path: Path) -> None:
    """A rerun in the same folder (a resume, or another --format) keeps what the earlier runs recorded: their
    exports still on disk and their timings (`earlier_timings`), so the first run's quantization time survives."""
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    if old.get("config") != result["config"]:
        return
    kept = {k: v for k, v in old.get("exports", {}).items() if Path(v).exists()}
    result["exports"] = {**kept, **result["exports"]}
    result["earlier_timings"] = [*old.get("earlier_timings", []), old.get("timings")]
