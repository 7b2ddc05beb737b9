"""The report from a real (tiny) study: report.md with its tables, CSV + LaTeX files, readable PNGs; CLI."""

import csv
import subprocess
import sys
from pathlib import Path

import matplotlib.image as mpimg
import pytest
import yaml

from codequant.errors import CodequantError
from codequant.report import build_report
from codequant.report.plots import pareto_front
from codequant.study import load_config, run_study

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "study"))
from test_study_runner import write_study  # noqa: E402


@pytest.fixture()
def small_study(tmp_path, tiny_llama_dir):
    """fp tiny Llama and the canonical solutions, evaluated on the 3-problem file (no quantization)."""
    path = write_study(tmp_path, tiny_llama_dir, quantizations=[])
    data = yaml.safe_load(path.read_text())
    data["models"].append("canonical")
    path.write_text(yaml.safe_dump(data))
    run_study(load_config(path), tmp_path / "tiny", base=tmp_path, log=lambda s: None)
    return path, tmp_path / "tiny"


def test_report_files_tables_and_pngs(small_study):
    _, study = small_study
    md = build_report(study)
    text = md.read_text()
    assert text.startswith("# Study report: tiny")
    assert (
        "| canonical | humaneval | python | greedy | fp | 66.7% |" in text
    )  # 2 of 3 canonical solutions pass
    assert [line for line in text.splitlines() if line.startswith("#")] == [
        "# Study report: tiny",
        "## pass@1 against fp",
        "### What these designs can detect",
        "## Code summarization",
        "## Calibration",
        "## Fine-tuning",
        "## Memory",
        "## Perplexity",
        "## Quantization error",
        "## Inference",
        "## Why completions fail",
        "### Does a class grow from fp?",
        "## Timings",
    ]
    assert "(no summarization runs in this study)\n\n## Calibration" in text
    assert (
        "(no fp and quantized runs to compare yet)\n\n## Timings" in text
    )  # empty tables say so, then a gap
    for name in (
        "pass_at_1",
        "calibration",
        "finetune",
        "memory",
        "perplexity",
        "timings",
        "summarization",
        "quant_errors",
        "inference",
        "failures",
        "failure_growth",
    ):
        assert (md.parent / "tables" / f"{name}.tex").read_text().startswith(r"\begin{table}")
        assert (md.parent / "tables" / f"{name}.csv").is_file()
    rows = list(csv.DictReader(open(md.parent / "tables" / "pass_at_1.csv")))
    assert {r["version"] for r in rows} == {"fp"} and len(rows) == 2
    for png in ("pass_vs_bits", "memory_pareto", "perplexity_vs_bits", "perplexity_pareto", "failures"):
        path = md.parent / "plots" / f"{png}.png"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        img = mpimg.imread(path)
        assert img.shape[0] > 100 and img.shape[1] > 100
        assert f"plots/{png}.png" in text


def test_report_cli_and_missing_db(small_study, tmp_path):
    path, study = small_study
    exe = Path(sys.executable).parent / "codequant"
    out = subprocess.run(
        [str(exe), "report", str(study), "--out", str(tmp_path / "rep")], capture_output=True, text=True
    )
    assert out.returncode == 0 and (tmp_path / "rep" / "report.md").is_file()
    status = subprocess.run(
        [str(exe), "study", "status", str(path), "--out", str(study)], capture_output=True, text=True
    )
    assert status.returncode == 0 and "2 done" in status.stdout
    bad = subprocess.run([str(exe), "report", str(tmp_path / "nothing")], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "study run" in bad.stderr
    with pytest.raises(CodequantError):
        build_report(tmp_path / "nothing")


def test_pareto_front():
    pts = [(10.0, 0.5), (5.0, 0.4), (6.0, 0.3), (20.0, 0.5), (2.0, 0.1)]
    assert pareto_front(pts) == [4, 1, 0]


def test_report_shows_the_current_grid_only(small_study, tmp_path):
    """study.db keeps the steps of an earlier, larger grid; the report of the shrunk grid must not show them."""
    path, study = small_study
    assert "| canonical |" in build_report(study).read_text()
    data = yaml.safe_load(path.read_text())
    data["models"].remove("canonical")
    path.write_text(yaml.safe_dump(data))
    run_study(
        load_config(path), study, base=tmp_path, log=lambda s: None
    )  # nothing new to run: only the plan
    text = build_report(study).read_text()
    assert "| canonical |" not in text
    rows = list(csv.DictReader(open(study / "report" / "tables" / "pass_at_1.csv")))
    assert rows and {r["model"] for r in rows} == {r["model"] for r in rows if r["model"] != "canonical"}
    timings = list(csv.DictReader(open(study / "report" / "tables" / "timings.csv")))
    assert timings and not any("canonical" in r["step"] for r in timings)


def test_the_pareto_plot_draws_whole_file_bits_beside_the_linears(tmp_path):
    from codequant.report.plots import pareto_axes, pareto_series, perplexity_pareto

    rows = [
        {
            "series": "fp",
            "language": "python",
            "perplexity": 10.0,
            "bits_per_weight": None,
            "whole_file_bits": 32.0,
        },
        {
            "series": "rtn",
            "language": "python",
            "perplexity": 12.0,
            "bits_per_weight": 4.5,
            "whole_file_bits": 10.3,
        },
        {
            "series": "rtn emb4",
            "language": "python",
            "perplexity": 13.0,
            "bits_per_weight": 4.5,
            "whole_file_bits": 4.5,
        },
    ]
    assert pareto_axes(rows) == ["bits_per_weight", "whole_file_bits"]
    linear, fp = pareto_series(rows, "python", "bits_per_weight")
    assert fp == [10.0] and linear == {"rtn": [(4.5, 12.0)], "rtn emb4": [(4.5, 13.0)]}
    whole, _ = pareto_series(rows, "python", "whole_file_bits")
    assert whole == {"fp": [(32.0, 10.0)], "rtn": [(10.3, 12.0)], "rtn emb4": [(4.5, 13.0)]}
    assert pareto_axes([{**r, "whole_file_bits": None} for r in rows]) == ["bits_per_weight"]
    two = mpimg.imread(perplexity_pareto(rows, tmp_path / "two.png"))
    one = mpimg.imread(
        perplexity_pareto([{**r, "whole_file_bits": None} for r in rows], tmp_path / "one.png")
    )
    assert two.shape[0] > 1.8 * one.shape[0]  # a second row of panels
