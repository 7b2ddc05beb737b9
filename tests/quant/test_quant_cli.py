"""`codequant quantize`: bad specs fail fast with one clear error line (before any model is loaded)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from codequant.errors import CodequantError
from codequant.quant.run import build_config, parse_formats


def run_cli(*args: str) -> subprocess.CompletedProcess:
    code = "from codequant.cli import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, "quantize", *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "awq", "--bits", "4"], "unknown --method 'awq'"),
        (["--method", "rtn", "--bits", "12"], "bits must be an integer in 2..8"),
        (["--method", "gptq"], "gptq needs --bits"),
        (
            ["--method", "aqlm", "--codebooks", "1", "--codebook-bits", "17", "--group-size", "8"],
            "--codebook-bits must be in 1..16",
        ),
        (["--method", "aqlm", "--bits", "5"], "aqlm --bits must be one of 8, 4, 3, 2"),
        (["--method", "rtn", "--bits", "4", "--format", "aqlm"], "--format aqlm needs --method aqlm"),
        (["--method", "rtn", "--bits", "4", "--codebooks", "2"], "AQLM options"),
        (
            ["--method", "gptq", "--bits", "4", "--effort", "reference"],
            "--effort, --beam-size and --init are AQLM options",
        ),
        (
            ["--method", "rtn", "--bits", "4", "--init", "oa-em"],
            "--effort, --beam-size and --init are AQLM options",
        ),
        (["--method", "aqlm", "--bits", "2", "--init", "em"], "init must be one of kmeans, oa-em"),
        (
            ["--method", "gptq", "--bits", "4", "--group-size", "64", "--static-groups"],
            "--static-groups only applies with --act-order",
        ),
        (
            ["--method", "rtn", "--bits", "4", "--act-order"],
            "--act-order and --static-groups are GPTQ options",
        ),
        (["--method", "gptq", "--bits", "4", "--clip", "max"], "clip must be one of minmax, mse"),
        (["--method", "aqlm", "--bits", "2", "--clip", "mse"], "--clip is an RTN/GPTQ option"),
    ],
)
def test_bad_specs_print_one_error_line(args, message, tmp_path):
    proc = run_cli("smollm2-135m", *args, "--out", str(tmp_path / "o"))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr
    assert not (tmp_path / "o").exists()


def test_format_parsing():
    assert parse_formats(None, "aqlm") == ["aqlm", "dequantized", "codequant"]
    assert parse_formats(None, "gptq") == ["dequantized", "codequant"]
    assert parse_formats("both", "aqlm") == ["aqlm", "dequantized"]
    assert parse_formats("dequantized,codequant", "rtn") == ["dequantized", "codequant"]
    with pytest.raises(CodequantError, match="unknown --format"):
        parse_formats("gguf", "rtn")
    assert build_config("gptq", bits=3, group_size=-1).group_size == -1


def test_quantize_to_dir_writes_a_loadable_model_and_resumes(tiny_llama_dir, tmp_path):
    import json

    import torch

    from codequant.models import load
    from codequant.quant.run import QuantRun, quantize_to_dir

    calib = torch.randint(3, 384, (6, 16), generator=torch.Generator().manual_seed(0))
    config = build_config("gptq", bits=4, group_size=32)
    out = tmp_path / "q"
    first = quantize_to_dir(
        str(tiny_llama_dir),
        config,
        out,
        QuantRun(calibration=calib, formats=("dequantized", "codequant")),
        progress=False,
    )
    assert first["complete"] and first["accounting"]["formula_bits_per_param"] == 5.0
    saved = json.loads((out / "quantize.json").read_text())
    assert len(saved["layers"]) == 14 and saved["accounting"]["checkpoint_bytes"] > 0
    # every GPTQ layer reports the damping it asked for and the one its Cholesky factorization needed
    assert all(
        layer["fit"]["damping"] == 0.01
        and layer["fit"]["damping_used"] >= 0.01
        and layer["fit"]["retries"] >= 0
        for layer in saved["layers"]
    )
    again = quantize_to_dir(
        str(tiny_llama_dir),
        config,
        out,
        QuantRun(calibration=calib, formats=("dequantized",)),
        progress=False,
    )
    assert all(b["resumed"] for b in again["blocks"])
    assert [layer["fit"] for layer in again["layers"]] == [layer["fit"] for layer in saved["layers"]]
    # the rerun exported only dequantized: the earlier codequant export and the first run's timings are kept
    assert set(again["exports"]) == {"dequantized", "codequant"}
    assert again["earlier_timings"] == [first["timings"]]
    from codequant.quant.export import load_codequant_checkpoint

    native, _ = load_codequant_checkpoint(out / "codequant")
    exported = load(str(out)).model
    with torch.no_grad():
        assert torch.equal(exported(calib).logits, native(calib).logits)


@pytest.mark.parametrize("flag, expected", [(None, True), ("--one-pass", False)])
def test_xtx_collection_follows_the_method_default_or_the_flag(tiny_llama_dir, tmp_path, flag, expected):
    import json

    out = tmp_path / "q"
    args = [
        str(tiny_llama_dir),
        "--method",
        "gptq",
        "--bits",
        "4",
        "--group-size",
        "32",
        "--calibration",
        "random",
        "--samples",
        "4",
        "--seq-len",
        "16",
        "--format",
        "dequantized",
        "--out",
        str(out),
    ]
    proc = run_cli(*args, *([flag] if flag else []))
    assert proc.returncode == 0, proc.stderr
    saved = json.loads((out / "quantize.json").read_text())
    assert saved["calibration"]["sequential"] is expected
    # default held-out rows: 4 // 8 = 0 would leave none, so at least 1; the summary shows both errors
    assert saved["calibration"]["val_samples"] == 1 and "held out: 1 of the 4 calibration rows" in proc.stdout
    assert "layer output error (mean over layers): in-sample" in proc.stdout and ", held-out" in proc.stdout
    assert all("rel_output_error_heldout" in layer for layer in saved["layers"])
