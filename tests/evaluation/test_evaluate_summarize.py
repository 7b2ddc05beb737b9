"""evaluate() on humaneval-summarize: scored by text (no sandbox), both prompt styles, canonical, resume."""

from __future__ import annotations

import json

import pytest

from codequant.evaluation import EvalSettings, Loaded, evaluate
from codequant.evaluation import runner as runner_mod


@pytest.fixture()
def no_sandbox(monkeypatch):
    def fail(*a, **k):
        raise AssertionError("a text task must not reach the sandbox")

    monkeypatch.setattr(runner_mod, "_run_programs", fail)


def _rows(out):
    return [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]


def test_canonical_scores_reference_against_itself(tmp_path, no_sandbox):
    s = evaluate(
        "canonical", "humaneval-summarize", EvalSettings(limit=5), out_dir=tmp_path / "c", progress=False
    )
    assert s["task"] == "summarize" and s["problems"] == 5 and s["completions"] == 5
    assert s["bleu"] == pytest.approx(100.0) and s["corpus_bleu"] == pytest.approx(100.0)
    assert s["rouge_l"] == pytest.approx(1.0) and s["status_counts"] == {"scored": 5}
    assert "passed" not in s and "pass@1" not in s
    row = _rows(tmp_path / "c")[0]
    assert row["passed"] is None and row["program"] is None and row["status"] == "scored"
    assert row["summary"] == row["reference"] and row["completion"].startswith("Check if in given list")


@pytest.mark.parametrize("style", ["base", "chat"])
def test_tiny_model_both_styles_and_resume(tmp_path, tiny_llama, tiny_tokenizer, no_sandbox, style):
    tiny = Loaded("tiny", tiny_llama, tiny_tokenizer)
    out = tmp_path / style
    first = evaluate(
        tiny,
        "humaneval-summarize",
        EvalSettings(limit=1, max_new_tokens=8, prompt_style=style),
        out_dir=out,
        progress=False,
    )
    assert first["completions"] == 1
    s = evaluate(
        tiny,
        "humaneval-summarize",
        EvalSettings(limit=2, max_new_tokens=8, prompt_style=style),
        out_dir=out,
        progress=False,
    )
    assert s["run"]["new_completions"] == 1  # resumed: only the second problem was generated
    rows = _rows(out)
    assert [r["task_id"] for r in rows] == ["HumanEvalSummarize/0", "HumanEvalSummarize/1"]
    for r in rows:
        assert 0.0 <= r["bleu"] <= 100.0 and 0.0 <= r["rouge_l"] <= 1.0 and r["passed"] is None
        assert 0 < r["new_tokens"] <= 8
    prompt = rows[0]["prompt"]
    if style == "base":
        assert prompt.endswith('-> bool:\n    """')
    else:
        assert "<|im_start|>user\nWrite the docstring of the Python function" in prompt
    assert s["config"]["prompt_style"] == style
    assert s["bleu"] == pytest.approx(sum(r["bleu"] for r in rows) / 2)


def test_failures_refuses_a_text_run(tmp_path, no_sandbox):
    from typer.testing import CliRunner

    from codequant.cli import app

    evaluate(
        "canonical", "humaneval-summarize", EvalSettings(limit=2), out_dir=tmp_path / "c", progress=False
    )
    res = CliRunner().invoke(app, ["failures", str(tmp_path / "c")])
    assert res.exit_code != 0 and "scored by text" in str(res.exception)


def test_cli_evaluate_prints_scores(tmp_path, no_sandbox):
    from typer.testing import CliRunner

    from codequant.cli import app

    out = tmp_path / "c"
    res = CliRunner().invoke(
        app, ["evaluate", "canonical", "-b", "humaneval-summarize", "--limit", "3", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert "3 summaries of 3 problems  BLEU-4 100.00  corpus BLEU-4 100.00  ROUGE-L 1.0000" in res.output
