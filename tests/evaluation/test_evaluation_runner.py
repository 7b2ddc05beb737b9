"""evaluate() end to end with the real sandbox: canonical runs, resume, config guard, sampling scope growth."""

import json
from dataclasses import replace

import pytest

from codequant.errors import CodequantError
from codequant.evaluation import EvalSettings, Loaded, evaluate

TEST = "def check(candidate):\n    assert candidate(2) == 4\n    assert candidate(0) == 0\n"
RECORDS = [
    {
        "task_id": "Mini/0",
        "prompt": 'def double(x):\n    """Return 2 * x."""\n',
        "canonical_solution": "    return 2 * x\n",
        "test": TEST,
        "entry_point": "double",
    },
    {
        "task_id": "Mini/1",
        "prompt": 'import math\n\n\ndef twice(x):\n    """Return x + x."""\n',
        "canonical_solution": "    return x + x\n",
        "test": TEST,
        "entry_point": "twice",
    },
    # a wrong reference solution: the harness must report it as failing
    {
        "task_id": "Mini/2",
        "prompt": "def dbl(x):\n",
        "canonical_solution": "    return x * 3\n",
        "test": TEST,
        "entry_point": "dbl",
    },
]


@pytest.fixture()
def mini(tmp_path):
    path = tmp_path / "mini.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    return path


def _lines(out):
    return [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]


def test_canonical_run_resume_and_config_guard(mini, tmp_path):
    out = tmp_path / "run"
    s = evaluate("canonical", "humaneval", data=mini, out_dir=out, progress=False)
    assert s["problems"] == 3 and s["completions"] == 3 and s["passed"] == 2
    assert s["pass@1"] == pytest.approx(2 / 3)
    assert s["status_counts"] == {"assertion": 1, "ok": 2}
    assert s["failure_counts"] == {"assertion": 1}  # the failed completion, classified (codequant.failures)
    rows = _lines(out)
    assert [r["task_id"] for r in sorted(rows, key=lambda r: r["task_id"])] == ["Mini/0", "Mini/1", "Mini/2"]
    bad = next(r for r in rows if r["task_id"] == "Mini/2")
    assert (
        bad["passed"] is False
        and bad["exception_type"] == "AssertionError"
        and "check(dbl)" in bad["program"]
    )
    assert json.loads((out / "summary.json").read_text())["pass@1"] == s["pass@1"]
    assert set(s["versions"]) >= {"torch", "transformers", "codequant"}

    again = evaluate("canonical", "humaneval", data=mini, out_dir=out, progress=False)
    assert again["run"]["new_completions"] == 0 and again["pass@1"] == s["pass@1"]
    # An interrupted write leaves a truncated last line: it is dropped and that completion redone.
    text = (out / "samples.jsonl").read_text()
    (out / "samples.jsonl").write_text(text[: len(text) - 40])
    redone = evaluate("canonical", "humaneval", data=mini, out_dir=out, progress=False)
    assert redone["run"]["new_completions"] == 1 and redone["completions"] == 3 and len(_lines(out)) == 3

    with pytest.raises(CodequantError, match="different config.*max_new_tokens"):
        evaluate(
            "canonical", "humaneval", EvalSettings(max_new_tokens=7), data=mini, out_dir=out, progress=False
        )


def test_model_sampling_scope_grows_reproducibly(mini, tmp_path, tiny_llama, tiny_tokenizer):
    out = tmp_path / "run"
    tiny = Loaded("tiny", tiny_llama, tiny_tokenizer)
    base = EvalSettings(temperature=0.8, top_p=0.95, max_new_tokens=8, prompt_style="base", batch_size=2)
    kw = dict(data=mini, out_dir=out, progress=False)
    s = evaluate(tiny, "humaneval", replace(base, samples=2, limit=2), **kw)
    assert s["problems"] == 2 and s["completions"] == 4 and s["pass@1"] == 0.0
    first = {(r["task_id"], r["sample_index"]): r for r in _lines(out)}
    r = first[("Mini/0", 0)]
    assert r["prompt"] == RECORDS[0]["prompt"] and r["program"].split("\n", 1)[1].startswith(
        RECORDS[0]["prompt"] + r["completion"]
    )  # after the line that rebinds __name__ (python_main="skip")
    assert (
        r["stop_reason"] in ("eos", "stop", "length") and 0 < r["new_tokens"] <= 8 and r["prompt_tokens"] > 0
    )
    assert r["status"] in ("syntax_error", "assertion", "exception", "ok", "timeout", "killed")

    grown = evaluate(tiny, "humaneval", replace(base, samples=3), **kw)
    assert grown["run"]["new_completions"] == 3 * 3 - 4 and grown["completions"] == 9
    assert "pass@1" in grown and "pass@5" not in grown
    # A fresh run of the larger scope draws the same samples: seeds depend only on (seed, task, index).
    fresh = tmp_path / "fresh"
    evaluate(tiny, "humaneval", replace(base, samples=3, batch_size=5), **{**kw, "out_dir": fresh})
    key = lambda r: (r["task_id"], r["sample_index"])  # noqa: E731
    assert {key(r): r["raw_output"] for r in _lines(out)} == {key(r): r["raw_output"] for r in _lines(fresh)}


def test_greedy_samples_repeat_and_user_errors(mini, tmp_path, tiny_llama, tiny_tokenizer):
    s = evaluate(
        Loaded("tiny", tiny_llama, tiny_tokenizer),
        "humaneval",
        EvalSettings(samples=2, max_new_tokens=4),
        data=mini,
        out_dir=tmp_path / "g",
        progress=False,
    )
    rows = _lines(tmp_path / "g")
    assert s["completions"] == 6 and len({r["raw_output"] for r in rows if r["task_id"] == "Mini/0"}) == 1
    assert (
        s["config"]["prompt_style"] == "auto"
        and "Complete the following Python function" in rows[0]["prompt"]
    )
    with pytest.raises(CodequantError, match="unknown benchmark"):
        evaluate("canonical", "nope", out_dir=tmp_path / "x")
    with pytest.raises(CodequantError, match="samples"):
        evaluate("canonical", "humaneval", EvalSettings(samples=0), out_dir=tmp_path / "x")


@pytest.mark.slow
@pytest.mark.ci
def test_canonical_humaneval_all_pass(tmp_path):
    s = evaluate("canonical", "humaneval", out_dir=tmp_path / "c", progress=False)
    assert s["problems"] == 164 and s["passed"] == 164 and s["pass@1"] == 1.0


@pytest.mark.slow
def test_smollm2_chat_first_problems(tmp_path):
    """The embedded model answers through its chat template; its code blocks are extracted and executed."""
    s = evaluate(
        "smollm2-135m",
        "humaneval",
        EvalSettings(prompt_style="chat", limit=3, max_new_tokens=160),
        out_dir=tmp_path / "s",
        progress=False,
    )
    rows = _lines(tmp_path / "s")
    assert s["problems"] == 3 and len(rows) == 3
    assert all("<|im_start|>assistant" in r["prompt"] for r in rows)
    assert sum("def " in r["completion"] and "```" not in r["completion"] for r in rows) >= 2
    assert s["status_counts"].get("syntax_error", 0) <= 1


def test_model_spec_loaded_through_codequant_models(mini, tmp_path, tiny_llama_dir):
    s = evaluate(
        str(tiny_llama_dir),
        "humaneval",
        EvalSettings(limit=1, max_new_tokens=4, prompt_style="base"),
        data=mini,
        out_dir=tmp_path / "f",
        progress=False,
    )
    assert s["completions"] == 1 and s["config"]["model"] == str(tiny_llama_dir)
    assert s["run"]["load_s"] > 0 and _lines(tmp_path / "f")[0]["new_tokens"] >= 1


def test_device_is_checked_before_any_work(tmp_path):
    import torch

    from codequant.devices import resolve_device

    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(CodequantError, match="unknown --device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(CodequantError, match="no CUDA GPU"):
            evaluate(
                "smollm2-135m", "humaneval", EvalSettings(limit=1, device="cuda"), out_dir=tmp_path / "run"
            )
        assert not (tmp_path / "run").exists()
