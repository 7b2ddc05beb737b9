"""`codequant calibration build|show` and `codequant perplexity` through the Typer app."""

from __future__ import annotations

import json

import pytest
from helpers_calibration import TEXT_FILE, write_source_folder
from typer.testing import CliRunner

from codequant.calibration import load_calibration
from codequant.cli import app


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CODEQUANT_CACHE", str(tmp_path / "cache"))


def test_build_then_show(tmp_path, tiny_llama_dir):
    folder = write_source_folder(tmp_path / "src")
    out = tmp_path / "set"
    args = [
        "calibration",
        "build",
        "--kind",
        "local",
        "--model",
        str(tiny_llama_dir),
        "--samples",
        "6",
        "--seq-len",
        "32",
        "--val-samples",
        "2",
        "--seed",
        "3",
        "--source",
        str(folder),
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    calib = load_calibration(out)
    assert (
        calib.tokens.shape == (6, 32) and calib.manifest["seed"] == 3 and calib.sha256[:16] in result.output
    )
    shown = CliRunner().invoke(app, ["calibration", "show", str(out), "--rows", "3"])
    assert shown.exit_code == 0, shown.output
    assert "local" in shown.output and calib.sha256[:16] in shown.output and "first 3 rows" in shown.output


def test_small_sets_get_validation_rows_that_fit(tmp_path, tiny_llama_dir):
    """--samples below the old fixed 16 validation rows works: the default scales with --samples and says so."""
    folder = write_source_folder(tmp_path / "src")
    out = tmp_path / "set"
    result = CliRunner().invoke(
        app,
        [
            "calibration",
            "build",
            "--kind",
            "local",
            "--model",
            str(tiny_llama_dir),
            "--samples",
            "16",
            "--seq-len",
            "16",
            "--source",
            str(folder),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert load_calibration(out).val_samples == 2 and "(2 validation rows)" in result.output


def test_build_errors_are_one_line(tmp_path, tiny_llama_dir):
    result = CliRunner().invoke(
        app,
        [
            "calibration",
            "build",
            "--kind",
            "poems",
            "--model",
            str(tiny_llama_dir),
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert result.exit_code != 0 and "unknown calibration kind" in str(result.exception or result.output)


def test_perplexity_text_json(tmp_path, tiny_llama_dir):
    text = tmp_path / "t.txt"
    text.write_text(TEXT_FILE.format(i=3) * 3)
    result = CliRunner().invoke(
        app,
        [
            "perplexity",
            str(tiny_llama_dir),
            "--text",
            str(text),
            "--seq-len",
            "64",
            "--max-tokens",
            "300",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    res = json.loads(result.stdout)
    assert res["tokens"] == 300 - 5 and res["windows"] == 5 and res["ppl"] > 1
