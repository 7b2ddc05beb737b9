"""Inference cost measurement on the tiny Llama: in this process, in a fresh one, and the exports a folder holds."""

import json

import pytest

from codequant.errors import CodequantError
from codequant.metrics.inference import (
    InferenceSettings,
    backends,
    formula_bits,
    measure,
    measure_isolated,
    weight_bytes,
)

SMALL = InferenceSettings(prompt_tokens=8, new_tokens=3, batches=(1, 3))


def test_measure_times_prefill_and_each_batch(tiny_llama_dir):
    r = measure(str(tiny_llama_dir), SMALL, backend="fp")
    assert (
        r.prefill_tok_s > 0 and set(r.decode_tok_s) == {1, 3} and all(v > 0 for v in r.decode_tok_s.values())
    )
    assert r.file_bytes == sum(p.stat().st_size for p in tiny_llama_dir.glob("*.safetensors")) > 0
    assert r.formula_bits_per_param is None and r.peak_rss_mb > 0
    assert json.loads(json.dumps(r.to_dict()))["decode_tok_s"].keys() == {"1", "3"}
    assert set(r.decode_j_per_token) == {1, 3} and all(v > 0 for v in r.decode_j_per_token.values())
    assert r.energy_method in ("rapl", "nvml", "rapl+nvml", "estimate:cpu-time")
    with pytest.raises(CodequantError, match="positive"):
        measure(str(tiny_llama_dir), InferenceSettings(batches=(0,)))


def test_isolated_measure_and_its_errors(tiny_llama_dir, tmp_path):
    r = measure_isolated(str(tiny_llama_dir), SMALL, backend="given")
    assert (
        r["backend"] == "given" and r["decode_tok_s"]["3"] > 0 and r["peak_rss_mb"] > 50 and r["wall_s"] > 0
    )
    bad = measure_isolated(str(tmp_path / "nothing-here"), SMALL)
    assert "error" in bad and bad["spec"].endswith("nothing-here")


def test_backends_and_bits_of_a_quantize_folder(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"x" * 10)
    (tmp_path / "aqlm").mkdir()
    (tmp_path / "aqlm" / "config.json").write_text("{}")
    (tmp_path / "codequant").mkdir()  # no codequant.json: not an export
    (tmp_path / "quantize.json").write_text(json.dumps({"accounting": {"formula_bits_per_param": 2.153}}))
    assert backends(tmp_path) == [("dequantized", str(tmp_path)), ("aqlm-kernels", str(tmp_path / "aqlm"))]
    assert formula_bits(tmp_path) == formula_bits(tmp_path / "aqlm") == 2.153
    assert weight_bytes(tmp_path) == 10 and weight_bytes("smollm2-135m") is None
