"""Calibration sets (Random / Mixed / Code) as inspectable artifacts, and held-out code for perplexity."""

from codequant.calibration.artifact import CalibrationSet, load_calibration
from codequant.calibration.build import (
    CALIBRATION_KINDS,
    build_calibration,
    default_val_samples,
    resolve_val_samples,
)
from codequant.calibration.heldout import heldout_rows, heldout_tokens
from codequant.calibration.identity import load_tokenizer, tokenizer_identity
from codequant.calibration.resolve import resolve_calibration

__all__ = [
    "CALIBRATION_KINDS",
    "CalibrationSet",
    "build_calibration",
    "default_val_samples",
    "resolve_val_samples",
    "heldout_rows",
    "heldout_tokens",
    "load_calibration",
    "load_tokenizer",
    "resolve_calibration",
    "tokenizer_identity",
]
