"""finetune: end-to-end distillation of a quantized version from its fp teacher; a new version in study.db."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from codequant.study.kinds.common import dir_bytes, json_safe, read_result
from codequant.study.kinds.quantize import ingest_version
from codequant.study.plan import Planning, Step


def plan(planning: Planning) -> None:
    """One distillation per fine-tuned point, from its quantization, on its fine-tuning calibration set."""
    for point in planning.grid:
        if not point.finetuned:
            continue
        kind = planning.finetune_calibration(point)
        variant = point.variant(planning.model)
        cfg = planning.config.finetune.step_config()
        cfg.update({"calibration": kind, **planning.dtype})
        planning.sources[point] = planning.add(
            "finetune",
            f"{planning.name}-{variant.label}",
            cfg,
            [planning.sources[point.quantized].key, planning.calibrations[(kind, None)].key],
            {"variant": variant.to_dict(), "teacher": planning.model},
        )


def run(
    step: Step,
    workdir: Path,
    inputs: dict[str, Path],
    settings: dict[str, Any],
    metas: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """End-to-end distillation of a quantized model from its fp teacher (codequant.finetune.run)."""
    from codequant.calibration.spec import CalibrationSpec
    from codequant.finetune.run import FinetuneRun, finetune
    from codequant.finetune.trainer import FinetuneConfig

    qdir, cdir = (inputs[k] for k in step.deps)
    qres, cal = read_result(qdir), read_result(cdir)
    cfg = step.config
    ftc = FinetuneConfig(
        epochs=cfg["epochs"],
        lr=cfg["lr"],
        lr_schedule=cfg.get("lr_schedule", "constant"),
        batch_size=cfg["batch_size"],
        patience=cfg["patience"],
        seed=cal["seed"],
        pv_tuning=cfg.get("pv_tuning", False),
        pv_lr=cfg.get("pv_lr", 0.03),
        pv_tau=cfg.get("pv_tau", 0.01),
        pv_every=cfg.get("pv_every", 1),
        pv_state_dtype=cfg.get("pv_state_dtype", "float32"),
        pv_offload=cfg.get("pv_offload", False),
    )
    spec = CalibrationSpec.of({**cal, "kind": str(cdir / cal["set"])})  # the set the calibrate step drew
    run = FinetuneRun(
        calibration=spec, device=settings.get("device", "cpu"), dtype=settings.get("dtype", "auto")
    )
    out = finetune(qdir, step.meta["teacher"], workdir / "model", run, ftc, progress=True)
    return {
        "model_path": "model",
        "codequant_path": "model/codequant",
        "file_bytes": dir_bytes(workdir / "model" / "codequant") or qres.get("file_bytes"),
        "accounting": qres.get("accounting"),
        "finetune": json_safe(out),
    }


def ingest(store, step: Step, res: dict[str, Any], artifact: Path, conn) -> None:
    ingest_version(store, step, res, artifact, conn)
