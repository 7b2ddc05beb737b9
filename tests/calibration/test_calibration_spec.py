"""CalibrationSpec: one checked description of a calibration set, the same from the CLI and a study YAML."""

from __future__ import annotations

import pytest

from codequant.calibration.spec import CalibrationSpec
from codequant.errors import CodequantError
from codequant.quant.run import QuantRun
from codequant.study import parse_config


def test_defaults_resolve_the_held_out_rows_and_keep_sources_as_a_tuple():
    spec = CalibrationSpec()
    assert (spec.kind, spec.samples, spec.seq_len, spec.held_out, spec.seed) == ("code", 128, 512, 16, 0)
    assert CalibrationSpec(samples=4, val_samples=0).held_out == 0
    assert CalibrationSpec(kind="local", sources=["a", "b"]).sources == ("a", "b")
    assert CalibrationSpec.of(
        {"kind": "random", "samples": 8, "seq_len": 16, "val_samples": 2, "seed": 3, "set": "ignored"}
    ) == CalibrationSpec("random", 8, 16, 2, 3)


@pytest.mark.parametrize(
    "kwargs", [{"samples": 0}, {"seq_len": 1}, {"samples": 4, "val_samples": 4}, {"val_samples": -1}]
)
def test_bad_sizes_are_one_line(kwargs):
    with pytest.raises(CodequantError, match="bad sizes") as e:
        CalibrationSpec(**kwargs)
    assert "\n" not in str(e.value)


def test_a_string_is_a_kind_wherever_a_spec_is_taken():
    assert QuantRun(calibration="random").calibration == CalibrationSpec(kind="random")
    with pytest.raises(CodequantError, match="not the string"):
        CalibrationSpec(sources="folder")


def test_a_study_yaml_gets_the_same_size_checks():
    data = {
        "name": "t",
        "models": ["m"],
        "benchmarks": [{"name": "humaneval"}],
        "calibration": {"samples": 4, "val_samples": 4},
    }
    with pytest.raises(CodequantError, match="calibration: bad sizes samples=4 seq_len=512 val_samples=4"):
        parse_config(data)
