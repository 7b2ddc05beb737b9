"""calibrate: draw a calibration set once per (model, kind), so a bad corpus fails before any quantization."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from codequant.study.kinds.common import json_safe, load_model
from codequant.study.plan import Planning, Step


def plan(planning: Planning) -> None:
    """One set per (kind, size) the model's quantizations read, and per kind its fine-tunings are distilled on."""
    for point in planning.grid:
        _calibrate(planning, point.calibration, point.size)
        if point.finetuned:
            _calibrate(planning, planning.finetune_calibration(point))


def _calibrate(planning: Planning, kind: str, size: str | None = None) -> None:
    from codequant.calibration.build import resolve_val_samples

    if (kind, size) in planning.calibrations:
        return
    cal = planning.config.calibration
    samples, seq_len = (cal.samples, cal.seq_len) if size is None else map(int, size.split("x"))
    label = f"{planning.name}-{Path(kind).name}" + (f"-{size}" if size else "")
    planning.calibrations[(kind, size)] = planning.add(
        "calibrate",
        label,
        {
            "model": planning.model,
            "kind": kind,
            "samples": samples,
            "seq_len": seq_len,
            "val_samples": resolve_val_samples(samples, cal.val_samples),
            "seed": cal.seed,
        },
        [],
        {"model": planning.model, "calibration": kind},
    )


def run(
    step: Step,
    workdir: Path,
    inputs: dict[str, Path],
    settings: dict[str, Any],
    metas: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Draw the calibration set once, so that a bad corpus fails before any quantization, and record it."""
    from codequant.calibration.spec import CalibrationSpec

    cfg = step.config
    _, tokenizer = load_model(cfg["model"])  # the model too: codequant.models.load owns spec resolution
    calib = CalibrationSpec.of(cfg).resolve(tokenizer)
    calib.save(workdir / "set")
    tokens = getattr(calib, "tokens", None)
    return {
        **{k: cfg[k] for k in ("kind", "samples", "seq_len", "val_samples", "seed")},
        "set": "set",
        "shape": list(tokens.shape) if tokens is not None else None,
        "manifest": json_safe(getattr(calib, "manifest", None)),
    }


def ingest(store, step: Step, res: dict[str, Any], artifact: Path, conn) -> None:
    """A calibration set is an input of other steps, not a result: nothing goes into study.db."""
