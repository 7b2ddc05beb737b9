"""How hard the AQLM fit and block tuning work: named presets of their options.

- `fast` (the default; the defaults of `FitOptions` and `TuneOptions`): what codequant measured to lose little
  against `reference` on SmolLM2 at a fraction of its CPU time (docs/aqlm.md has the figures): k-means on every
  group (cheap, and a sample cost 10-20% error at 4x8), a ridge on XTX, a few Adam steps per round, and a short
  block tuning with keep-best on held-out rows.
- `reference`: the defaults of the AQLM reference's main.py (Vahe1994/AQLM) as far as they carry over: k-means
  with 100 iterations on all groups, 100 Adam steps before each beam-search round, rounds until the relative
  improvement falls below 1%, beam 1, no damping; block tuning up to 10 epochs, batch 32, betas (0.9, 0.95),
  early stop after 3 epochs, keep-best. Its Adam learning rate is codequant's own (the fit optimises scales
  relative to their start on an XTX normalised to unit mean diagonal, so the reference's 1e-4 does not carry over).

Explicit options (QuantConfig.options, e.g. `beam_size`) override the preset's values.
"""

from __future__ import annotations

from typing import Any

from codequant.errors import CodequantError

# "fast" is the defaults of FitOptions and TuneOptions themselves (one place for them); others override them.
EFFORTS: dict[str, dict[str, Any]] = {
    "fast": {},
    "reference": {
        "kmeans_iters": 100,
        "kmeans_sample": None,
        "adam_steps": 100,
        "max_rounds": 100,
        "tol": 0.01,
        "beam_size": 1,
        "damping": 0.0,
        "tune_epochs": 10,
        "tune_lr": 1e-4,
        "tune_batch": 32,
        "tune_early_stop": 3,
    },
}
DEFAULT_EFFORT = "fast"


def resolve_effort(options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(effort name, options with the preset's values filled in under the explicit ones)."""
    name = str(options.get("effort") or DEFAULT_EFFORT)
    if name not in EFFORTS:
        raise CodequantError(f"unknown AQLM effort {name!r}; choose one of {', '.join(EFFORTS)}")
    return name, {**EFFORTS[name], **{k: v for k, v in options.items() if k != "effort" and v is not None}}
