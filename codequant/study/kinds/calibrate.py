"""calibrate: draw a calibration set once per (model, kind), so a bad corpus fails before any quantization."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from codequant.study.kinds.common import json_safe, load_model
from codequant.study.plan import Step


def run(step: Step, workdir: Path, inputs: dict[str, Path], settings: dict[str, Any],
        metas: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Draw the calibration set once, so that a bad corpus fails before any quantization, and record it."""
    from codequant.calibration.spec import CalibrationSpec

    cfg = step.config
    _, tokenizer = load_model(cfg["model"])  # the model too: codequant.models.load owns spec resolution
    calib = CalibrationSpec.of(cfg).resolve(tokenizer)
    calib.save(workdir / "set")
    tokens = getattr(calib, "tokens", None)
    return {**{k: cfg[k] for k in ("kind", "samples", "seq_len", "val_samples", "seed")}, "set": "set",
            "shape": list(tokens.shape) if tokens is not None else None,
            "manifest": json_safe(getattr(calib, "manifest", None))}


def ingest(store, step: Step, res: dict[str, Any], artifact: Path, conn) -> None:
    """A calibration set is an input of other steps, not a result: nothing goes into study.db."""
