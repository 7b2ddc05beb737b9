"""quantize: one model version from a calibration set; its footprint and output errors go into study.db."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from codequant.errors import CodequantError
from codequant.study.kinds.common import dir_bytes, json_safe, read_result, variant_row, version_columns
from codequant.study.plan import Planning, Step


def plan(planning: Planning) -> None:
    """One quantization per method, bits, calibration and size; it is the version of the points not fine-tuned."""
    config = planning.config
    for point in planning.grid:
        q, variant = point.quantization, point.quantized.variant(planning.model)
        cfg = {
            "model": planning.model,
            "method": q.method,
            "bits": point.bits,
            "preset": q.preset,
            "group_size": q.group_size,
            "options": q.options,
            "batch_size": config.runner.quantize_batch_size,
            **planning.dtype,
        }
        if q.tables is not None:  # absent otherwise: the keys of studies without token tables stay the same
            cfg["tables"] = q.tables.model_dump()
        step = planning.add(
            "quantize",
            f"{planning.name}-{variant.label}",
            cfg,
            [planning.calibrations[(point.calibration, point.size)].key],
            {"variant": variant.to_dict()},
        )
        planning.sources[point.quantized] = step


def run(
    step: Step,
    workdir: Path,
    inputs: dict[str, Path],
    settings: dict[str, Any],
    metas: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    from codequant.calibration.spec import CalibrationSpec
    from codequant.quant.run import QuantRun, build_config, quantize_to_dir

    cfg = step.config
    (calib_dir,) = [inputs[k] for k in step.deps]
    cal = read_result(calib_dir)
    qc = build_config(
        cfg["method"],
        bits=cfg["bits"],
        preset=cfg["preset"],
        group_size=cfg["group_size"],
        seed=cal["seed"],
        options=cfg["options"],
    )
    # AQLM also in the `aqlm` package's format: the inference step times its kernels (the codes, not fp weights);
    # that format cannot hold quantized token tables, so with them it is left out.
    tables = cfg.get("tables") or {}
    kernels = cfg["method"] == "aqlm" and not any(tables.get(k) for k in ("embedding_bits", "head_bits"))
    formats = ["dequantized", "codequant"] + (["aqlm"] if kernels else [])
    spec = CalibrationSpec.of({**cal, "kind": str(calib_dir / cal["set"])})  # the set the calibrate step drew
    run = QuantRun(
        calibration=spec,
        formats=tuple(formats),
        batch_size=cfg["batch_size"],
        device=settings.get("device", "cpu"),
        dtype=settings.get("dtype", "auto"),
        max_host_memory_gb=settings.get("max_host_memory_gb"),
        activations=settings.get("activations", "auto"),
        embedding_bits=tables.get("embedding_bits"),
        head_bits=tables.get("head_bits"),
        table_group_size=tables.get("group_size", 64),
    )
    result = quantize_to_dir(cfg["model"], qc, workdir, run, progress=True)
    if not result.get("complete", True):
        raise CodequantError(
            f"quantization {step.label} stopped before the last block; rerun the study to resume"
        )
    acc = result.get("accounting", {})
    return {
        "model_path": ".",
        "codequant_path": "codequant",  # quantize_to_dir writes the HF export at OUT
        "file_bytes": dir_bytes(workdir / "codequant"),
        "accounting": json_safe(acc),
        "whole_file": json_safe((result.get("whole_file") or {}).get("codequant")),
        "timings": json_safe(result.get("timings", {})),
        "resolved": json_safe(result.get("resolved")),
        "dtype": result.get("dtype"),
        "errors": quant_errors(result),
    }


def quant_errors(result: dict[str, Any]) -> dict[str, Any]:
    """What a quantization cost in output error, in-sample and on the held-out calibration rows: the mean over
    layers of the relative output error and the last block's relative output MSE (after the errors of every
    block before it have propagated)."""
    layers, blocks = result.get("layers") or [], result.get("blocks") or []

    def mean(key: str) -> float | None:
        values = [r[key] for r in layers if r.get(key) is not None]
        return sum(values) / len(values) if values else None

    last = blocks[-1] if blocks else {}
    return {
        "layer_error": mean("rel_output_error"),
        "layer_error_heldout": mean("rel_output_error_heldout"),
        "block_mse": last.get("rel_output_mse"),
        "block_mse_heldout": last.get("rel_output_mse_heldout"),
        "val_rows": (result.get("calibration") or {}).get("val_samples"),
    }


def ingest_version(store, step: Step, res: dict[str, Any], artifact: Path, conn) -> None:
    """The version a quantize or finetune step made, and its footprint (also used by the finetune kind)."""
    v = step.meta["variant"]
    acc = res.get("accounting") or {}
    store.upsert("variants", variant_row(step.key, v, str(artifact / res["model_path"])), conn)
    cols = version_columns(v)
    store.upsert(
        "footprints",
        {
            "variant_key": step.key,
            **{k: cols[k] for k in ("model", "variant", "method", "bits")},
            "formula_bits": acc.get("formula_bits_per_param"),
            "stored_bits": acc.get("stored_bits_per_param"),
            "file_bytes": res.get("file_bytes"),
            "param_bytes": acc.get("quantized_linears_bytes"),
            "quantized_params": acc.get("quantized_params"),
            "whole_file_bits": (res.get("whole_file") or {}).get("bits_per_weight"),
        },
        conn,
    )


def ingest(store, step: Step, res: dict[str, Any], artifact: Path, conn) -> None:
    ingest_version(store, step, res, artifact, conn)
    if res.get("errors"):
        cols = version_columns(step.meta["variant"])
        store.upsert(
            "quant_errors",
            {
                "variant_key": step.key,
                **{k: cols[k] for k in ("model", "variant", "method", "bits", "calibration")},
                **res["errors"],
                "quantize_s": (res.get("timings") or {}).get("quantize_s"),
            },
            conn,
        )
