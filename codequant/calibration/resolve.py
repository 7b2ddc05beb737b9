"""`resolve_calibration`: what `quantize --calibration` and the study accept — a kind, a saved set, or a folder.

A kind is built once per (kind, tokenizer vocabulary, sizes, seed) and cached under `cache_dir("calibration", key)`;
a saved set is loaded (its sha256 checked); any other path is a local source drawn with the 'local' recipe (cached
likewise, keyed by the path).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from codequant.cache import cache_dir
from codequant.calibration.artifact import FORMAT, CalibrationSet, is_calibration_dir, load_calibration
from codequant.calibration.build import CALIBRATION_KINDS, build_calibration, resolve_val_samples
from codequant.calibration.identity import tokenizer_identity
from codequant.errors import CodequantError


def cache_key(
    kind: str,
    tokenizer: Any,
    *,
    samples: int,
    seq_len: int,
    seed: int,
    val_samples: int,
    sources: Sequence[str] | None = None,
) -> str:
    payload = {
        "format": FORMAT,
        "kind": kind,
        "tokenizer": tokenizer_identity(tokenizer)["sha256"],
        "samples": samples,
        "seq_len": seq_len,
        "seed": seed,
        "val_samples": val_samples,
        "sources": list(map(str, sources or [])),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def resolve_calibration(
    kind_or_dir: str | Path,
    tokenizer: Any,
    *,
    samples: int = 128,
    seq_len: int = 512,
    seed: int = 0,
    val_samples: int | None = None,
    sources: Sequence[str] | None = None,
) -> CalibrationSet:
    """The set for `kind_or_dir`; `val_samples` None is `default_val_samples(samples)`."""
    spec = str(kind_or_dir)
    val_samples = resolve_val_samples(samples, val_samples)
    if spec in CALIBRATION_KINDS:
        kind, srcs = spec, sources
    elif is_calibration_dir(spec):
        return load_calibration(spec)
    elif Path(spec).expanduser().exists():
        kind, srcs = "local", [str(Path(spec).expanduser().resolve())]
    else:
        raise CodequantError(
            f"calibration {spec!r} is neither a kind ({', '.join(CALIBRATION_KINDS)}) nor an existing "
            "calibration set or source folder"
        )
    key = cache_key(
        kind, tokenizer, samples=samples, seq_len=seq_len, seed=seed, val_samples=val_samples, sources=srcs
    )
    target = cache_dir("calibration") / f"{kind}-{key}"
    if is_calibration_dir(target):
        try:
            return load_calibration(target)
        except CodequantError:
            pass  # a corrupt cache entry is rebuilt below
    calib = build_calibration(
        kind, tokenizer, samples=samples, seq_len=seq_len, val_samples=val_samples, seed=seed, sources=srcs
    )
    calib.save(target)
    return calib
