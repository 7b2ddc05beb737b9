"""Energy spent by a block of work, measured where the machine has counters and otherwise estimated.

The study's first open question is energy: does a 2-bit model cost less energy per generated token, or only less
memory? Counters answer it directly:
- `rapl`: the CPU packages' energy counters of Linux powercap (`/sys/class/powercap/intel-rapl:N/energy_uj`,
  also on AMD since Zen), wrap-around handled. They count the whole package, other processes included: measure on an
  idle machine.
- `nvml`: each visible NVIDIA GPU's total-energy counter (`nvmlDeviceGetTotalEnergyConsumption`, Volta and later,
  through `pynvml` when installed).
Where neither exists (virtual machines such as this project's CI), the number is an **estimate**, and its
method says so: `estimate:cpu-time`, this process's CPU seconds (user + system, its children included) times a
stated power per busy core (`CODEQUANT_WATTS_PER_CORE`, default `DEFAULT_WATTS_PER_CORE`). It ranks versions by
the CPU work they do, not by what a wall socket would read; reports never put measured and estimated figures in
one column without the method beside them.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

POWERCAP = Path("/sys/class/powercap")
DEFAULT_WATTS_PER_CORE = (
    5.0  # a server core under load: an EPYC/Xeon package's TDP over its cores (~200-360 W / 64)
)


@dataclass(frozen=True)
class Energy:
    joules: float
    method: str  # rapl | nvml | rapl+nvml | estimate:cpu-time
    seconds: float
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"energy_j": round(self.joules, 4), "energy_method": self.method, "energy_note": self.note}


def rapl_zones(root: Path = POWERCAP) -> list[Path]:
    """The top-level package zones (intel-rapl:N, not their sub-zones) whose counter this process can read."""
    zones = []
    for zone in sorted(root.glob("intel-rapl:*")):
        if zone.name.count(":") == 1 and os.access(zone / "energy_uj", os.R_OK):
            zones.append(zone)
    return zones


def _read_uj(zone: Path) -> tuple[int, int]:
    energy = int((zone / "energy_uj").read_text())
    limit = zone / "max_energy_range_uj"
    return energy, int(limit.read_text()) if limit.is_file() else 0


def _nvml_handles() -> list[Any]:
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
        return [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
    except Exception:  # no driver, no GPU: pynvml raises its own NVMLError subclasses
        return []


def _nvml_mj(handles: list[Any]) -> list[int]:
    import pynvml

    return [pynvml.nvmlDeviceGetTotalEnergyConsumption(h) for h in handles]


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def watts_per_core() -> float:
    return float(os.environ.get("CODEQUANT_WATTS_PER_CORE", DEFAULT_WATTS_PER_CORE))


class EnergyMeter:
    """`with EnergyMeter() as meter: ...` then `meter.energy`: joules over the block and how they were obtained
    (counters when the machine has them, else the CPU-time estimate)."""

    def __init__(self, powercap: Path = POWERCAP, use_gpu: bool = True):
        self.zones = rapl_zones(powercap)
        self.gpus = _nvml_handles() if use_gpu else []
        self.energy: Energy | None = None

    def __enter__(self) -> EnergyMeter:
        self._rapl = [_read_uj(z) for z in self.zones]
        self._nvml = _nvml_mj(self.gpus) if self.gpus else []
        self._cpu = _cpu_seconds()
        self._t = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        seconds = time.perf_counter() - self._t
        parts, joules = [], 0.0
        if self.zones:
            for zone, (start, limit) in zip(self.zones, self._rapl, strict=True):
                end = _read_uj(zone)[0]
                joules += ((end - start) % limit if limit and end < start else end - start) / 1e6
            parts.append("rapl")
        if self.gpus:
            joules += sum(e - s for s, e in zip(self._nvml, _nvml_mj(self.gpus), strict=True)) / 1e3
            parts.append("nvml")
        if parts:
            self.energy = Energy(
                joules,
                "+".join(parts),
                seconds,
                "package counters: other processes' work counts too" if self.zones else "",
            )
            return
        cpu = _cpu_seconds() - self._cpu
        w = watts_per_core()
        self.energy = Energy(
            cpu * w,
            "estimate:cpu-time",
            seconds,
            f"estimate, not a measurement: {cpu:.2f} CPU s x {w:g} W per busy core "
            "(no RAPL or NVML counters on this machine; CODEQUANT_WATTS_PER_CORE sets the power)",
        )
