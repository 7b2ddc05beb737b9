"""Half precision end to end: fp16 and bf16 tiny Llamas go through quantize (RTN, GPTQ, AQLM) -> export -> reload ->
evaluate, stay in their dtype at every step, and lose no more than floating-point noise against the fp32 path.

Tolerance (docs/quantization.md, "dtype"): each quantized linear's relative output error ||(W'-W)X||^2/||WX||^2
(RTN: relative weight error) and the last block's relative output MSE in fp16/bf16 are within 10% of the same run
in fp32, plus a rounding floor of 4 eps^2 of the dtype (bf16: 2.4e-4, fp16: 3.8e-6): half precision rounds the
weights the quantizer starts from and the activations that the XTX and the block targets come from, and a block
computed in bf16 is that noisy against itself. The fit runs in fp32/fp64 either way. Measured on this tiny Llama:
per-layer ratios half/fp32 0.98-1.08; last block GPTQ bf16 1.43e-3 against 1.27e-3, AQLM fp16 0.118 against 0.112.
"""

from __future__ import annotations

import json

import pytest
import torch

from codequant.models import load
from codequant.models.dtype import folder_dtype
from codequant.quant.run import QuantRun, build_config, quantize_to_dir

REL = 0.10


def floor(dtype: str) -> float:
    """The rounding floor of a relative squared error in `dtype`: 4 eps^2."""
    return 4 * torch.finfo(getattr(torch, dtype)).eps ** 2


HALF = ("float16", "bfloat16")
TEST = "def check(candidate):\n    assert candidate(2) == 4\n"
RECORDS = [
    {
        "task_id": f"Mini/{i}",
        "prompt": f'def double{i}(x):\n    """Return 2 * x."""\n',
        "canonical_solution": "    return 2 * x\n",
        "test": TEST,
        "entry_point": f"double{i}",
    }
    for i in range(2)
]


def _config(method: str):
    if method == "aqlm":
        config = build_config("aqlm", num_codebooks=1, codebook_bits=4, group_size=8, seed=0)
        config.options.update(
            {"max_rounds": 2, "tune_epochs": 1}
        )  # block tuning runs: its masters are tested too
        return config
    return build_config(method, bits=4, group_size=32, seed=0)


@pytest.fixture(scope="module")
def calib():
    return torch.randint(3, 384, (12, 24), generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def runs(tiny_llama_dir, tmp_path_factory, calib):
    """Every method quantized in fp32, fp16 and bf16 (once for the module): {(method, dtype): (out, result)}."""
    done = {}
    for method in ("rtn", "gptq", "aqlm"):
        for dtype in ("float32", *HALF):
            out = tmp_path_factory.mktemp(f"{method}-{dtype}")
            formats = (
                ("aqlm", "dequantized", "codequant") if method == "aqlm" else ("dequantized", "codequant")
            )
            result = quantize_to_dir(
                str(tiny_llama_dir),
                _config(method),
                out,
                QuantRun(calibration=calib, formats=formats, dtype=dtype),
                progress=False,
            )
            done[(method, dtype)] = (out, result)
    return done


@pytest.mark.parametrize("method", ["rtn", "gptq", "aqlm"])
@pytest.mark.parametrize("dtype", HALF)
def test_half_precision_quantization_errors_match_fp32(runs, method, dtype):
    """Layer by layer and for the last block, the half-precision run's output errors are the fp32 run's within
    the stated tolerance; quantize.json records the dtype."""
    _, ref = runs[(method, "float32")]
    _, half = runs[(method, dtype)]
    assert half["dtype"] == dtype and ref["dtype"] == "float32"
    keys = ("rel_weight_error",) if method == "rtn" else ("rel_output_error", "rel_output_error_heldout")
    for a, b in zip(ref["layers"], half["layers"], strict=True):  # RTN collects no XTX: its weight error
        assert a["name"] == b["name"]
        for key in (k for k in keys if a.get(k) is not None):
            assert b[key] == pytest.approx(a[key], rel=REL, abs=floor(dtype)), (a["name"], key)
    ref_mse, half_mse = ref["blocks"][-1]["rel_output_mse"], half["blocks"][-1]["rel_output_mse"]
    assert half_mse == pytest.approx(ref_mse, rel=REL, abs=floor(dtype))
    if method == "aqlm":  # block tuning ran on fp32 masters and did not make the held-out error worse
        tune = half["blocks"][-1]["tune"]
        assert tune["epochs"] == 1 and tune["select_after"] <= tune["select_before"] * 1.01


@pytest.mark.parametrize("method", ["rtn", "gptq", "aqlm"])
@pytest.mark.parametrize("dtype", HALF)
def test_exports_keep_the_dtype_and_reload_in_it(runs, calib, method, dtype):
    """Every export says and stores the model's dtype; reloading gives it back, and the native checkpoint and the
    dequantized export compute the same logits in it."""
    from codequant.quant.export import load_codequant_checkpoint

    out, _ = runs[(method, dtype)]
    want = getattr(torch, dtype)
    folders = [out, out / "codequant"] + ([out / "aqlm"] if method == "aqlm" else [])
    assert [folder_dtype(f) for f in folders] == [dtype] * len(folders)
    from safetensors import safe_open

    with safe_open(
        str(out / "model.safetensors"), framework="pt"
    ) as f:  # the tensors themselves, not the label
        assert {f.get_tensor(k).dtype for k in f.keys()} == {want}
    native, _ = load_codequant_checkpoint(out / "codequant")
    assert native.get_input_embeddings().weight.dtype == want
    assert {q.dtype for q in native.modules() if hasattr(q, "dequantize")} == {want}
    loaded = load(str(out), dtype=dtype)
    assert loaded.dtype == dtype and {p.dtype for p in loaded.model.parameters()} == {want}
    with torch.no_grad():
        a = native(input_ids=calib[:2]).logits.float()
        b = loaded.model(input_ids=calib[:2]).logits.float()
    assert torch.allclose(a, b, rtol=0, atol=1e-2 if dtype == "bfloat16" else 2e-3)


@pytest.mark.parametrize("dtype", HALF)
def test_reloaded_half_model_evaluates_in_the_sandbox(runs, tmp_path, dtype):
    """The exported AQLM model, reloaded in its dtype, generates (canonical-free) and the sandbox runs what it
    wrote; the run's config records the dtype, so an fp32 run of the same folder is another version."""
    from codequant.errors import CodequantError
    from codequant.evaluation import EvalSettings, evaluate

    out, _ = runs[("aqlm", dtype)]
    data = tmp_path / "mini.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    settings = EvalSettings(limit=2, max_new_tokens=8, prompt_style="base", dtype=dtype, batch_size=2)
    summary = evaluate(str(out), "humaneval", settings, data=data, out_dir=tmp_path / "run", progress=False)
    assert summary["config"]["dtype"] == dtype and summary["completions"] == 2
    rows = [json.loads(line) for line in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    assert all(r["status"] and r["new_tokens"] >= 1 and r["program"] for r in rows)  # generated and executed
    with pytest.raises(CodequantError, match="different config"):  # fp32 into the fp16 run folder: refused
        evaluate(
            str(out),
            "humaneval",
            EvalSettings(limit=2, max_new_tokens=8, prompt_style="base", dtype="float32"),
            data=data,
            out_dir=tmp_path / "run",
            progress=False,
        )
