"""What one study step asks of a worker: CPUs, GPUs, memory and time.

Each step kind carries its defaults (`codequant.study.kinds.STEP_KINDS`); a study's `runner.resources` overrides
them field by field. Kept apart from the executors so that the kind registry, which the YAML's validation reads,
imports no executor.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Resources:
    """What one step asks of a worker. GPUs are asked for where the cluster has them (Ray caps every request at
    the cluster's totals; on Slurm they go to --gpus-per-node)."""

    cpus: int = 1
    gpus: float = 0
    memory_gb: float = 4
    time_min: int = 60

    def overridden(self, overrides: dict[str, Any] | None) -> Resources:
        """These resources with the fields `overrides` sets (None values keep the default)."""
        return replace(self, **{k: v for k, v in (overrides or {}).items() if v is not None})
