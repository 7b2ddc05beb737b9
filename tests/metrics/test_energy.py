"""Energy: powercap counters (with wrap-around) read as measurements, and the CPU-time estimate, named as one."""

from __future__ import annotations

import time

import pytest

from codequant.metrics.energy import EnergyMeter, rapl_zones


def _zone(root, name: str, uj: int, limit: int):
    zone = root / name
    zone.mkdir(parents=True)
    (zone / "energy_uj").write_text(str(uj))
    (zone / "max_energy_range_uj").write_text(str(limit))
    return zone


def test_rapl_counters_are_summed_over_packages_and_unwrapped(tmp_path):
    a = _zone(tmp_path, "intel-rapl:0", 1_000_000, 10_000_000)
    b = _zone(tmp_path, "intel-rapl:1", 9_500_000, 10_000_000)
    _zone(tmp_path, "intel-rapl:0:0", 0, 10_000_000)  # a sub-zone (core) is inside its package's count
    assert rapl_zones(tmp_path) == [a, b]
    with EnergyMeter(powercap=tmp_path, use_gpu=False) as meter:
        (a / "energy_uj").write_text("3500000")  # +2.5 J
        (b / "energy_uj").write_text("500000")  # wrapped: +1.0 J
    assert meter.energy.method == "rapl" and meter.energy.joules == pytest.approx(3.5)


def test_without_counters_the_figure_is_a_stated_cpu_time_estimate(tmp_path, monkeypatch):
    monkeypatch.setenv("CODEQUANT_WATTS_PER_CORE", "4")
    with EnergyMeter(powercap=tmp_path / "none", use_gpu=False) as meter:
        end = time.process_time() + 0.3
        while time.process_time() < end:
            pass
    e = meter.energy
    assert e.method == "estimate:cpu-time" and "estimate" in e.note and "4 W" in e.note
    assert 4 * 0.25 < e.joules < 4 * 1.0  # ~0.3 CPU s at 4 W
    with EnergyMeter(powercap=tmp_path / "none", use_gpu=False) as idle:
        time.sleep(0.2)
    assert idle.energy.joules < e.joules / 5  # sleeping costs no CPU time
