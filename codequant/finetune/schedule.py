"""The fine-tuning learning-rate schedule: constant (the default), or cosine decay to zero over the planned steps.

Why a decay: distillation on a short calibration set overfits in its last epoch while the constant step is still
large (SmolLM2 2x8 at lr 1e-3: train KL 0.28 against validation KL 0.39 after 3 epochs). Cosine annealing ends
the run with small steps near the minimum the larger early steps found, as the field's fine-tuning recipes do
(HF Trainer and torchtune use a cosine schedule by default). It multiplies every Adam group's lr (codebooks,
scales, norms, shadows); PV-tuning's V-step keeps its own `pv_lr`.
"""

from __future__ import annotations

import math

from codequant.errors import CodequantError

LR_SCHEDULES = ("constant", "cosine")


def check_schedule(name: str) -> str:
    """`name` if it is a known schedule, else an error naming the choices (the CLI, FinetuneConfig and a study's
    `finetune:` all reach this one check: the CLI through FinetuneConfig)."""
    if name not in LR_SCHEDULES:
        raise CodequantError(f"lr schedule must be one of {', '.join(LR_SCHEDULES)}, got {name!r}")
    return name


def lr_factor(name: str, step: int, total_steps: int) -> float:
    """The multiplier of the base lr for optimiser step `step` (0-based) of `total_steps`."""
    if name == "constant" or total_steps <= 0:
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
