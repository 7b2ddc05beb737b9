"""A half-precision request stays half precision on every command path: CLI quantize, evaluate, perplexity and
finetune, and the study kinds. Each path records the dtype its weights actually computed in (the loaded model's,
not the request), so a load that silently became float32 fails here. Bad names fail with the same one line from
the CLI and from a study YAML."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import yaml

TEST = "def check(candidate):\n    assert candidate(2) == 4\n"
RECORDS = [
    {
        "task_id": "Mini/0",
        "prompt": 'def double(x):\n    """Return 2 * x."""\n',
        "canonical_solution": "    return 2 * x\n",
        "test": TEST,
        "entry_point": "double",
    }
]
CODE = "def add(a, b):\n    return a + b\n\n\nclass Box:\n    def __init__(self, v):\n        self.v = v\n"


def cli(*args: str) -> subprocess.CompletedProcess:
    code = "from codequant.cli import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)


@pytest.fixture()
def inputs(tmp_path):
    texts = tmp_path / "texts"
    texts.mkdir()
    for i in range(10):  # one calibration row per file
        (texts / f"f{i}.py").write_text(CODE * (3 + i))
    (tmp_path / "mini.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    return tmp_path


def _tensor_dtypes(path) -> set[torch.dtype]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return {f.get_tensor(k).dtype for k in f.keys()}


def test_every_cli_command_keeps_float16(inputs, tiny_llama_dir):
    q, tmp = inputs / "q", inputs
    done = cli(
        "quantize",
        str(tiny_llama_dir),
        "--method",
        "rtn",
        "--bits",
        "4",
        "--group-size",
        "32",
        "--calibration",
        str(tmp / "texts"),
        "--samples",
        "8",
        "--seq-len",
        "16",
        "--val-samples",
        "2",
        "--dtype",
        "float16",
        "--out",
        str(q),
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((q / "quantize.json").read_text())["dtype"] == "float16"
    assert _tensor_dtypes(q / "model.safetensors") == {torch.float16}

    done = cli(
        "evaluate",
        str(q),
        "--data",
        str(tmp / "mini.jsonl"),
        "--limit",
        "1",
        "--max-new-tokens",
        "4",
        "--prompt-style",
        "base",
        "--dtype",
        "fp16",
        "--out",
        str(tmp / "run"),
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp / "run" / "config.json").read_text())["dtype"] == "float16"

    done = cli(
        "perplexity",
        str(q),
        "--text",
        str(tmp / "texts" / "f3.py"),
        "--seq-len",
        "16",
        "--dtype",
        "float16",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["dtype"] == "float16"

    done = cli(
        "finetune",
        str(q),
        "--teacher",
        str(tiny_llama_dir),
        "--calibration",
        str(tmp / "texts"),
        "--samples",
        "8",
        "--seq-len",
        "16",
        "--val-samples",
        "2",
        "--epochs",
        "1",
        "--top-k",
        "8",
        "--dtype",
        "float16",
        "--teacher-device",
        "cpu",
        "--out",
        str(tmp / "ft"),
    )
    assert done.returncode == 0, done.stderr
    saved = json.loads((tmp / "ft" / "finetune.json").read_text())
    assert (saved["dtype"], saved["teacher_dtype"], saved["teacher_device"]) == ("float16", "float16", "cpu")
    assert _tensor_dtypes(tmp / "ft" / "model.safetensors") == {torch.float16}


def test_auto_on_the_cpu_is_float32_from_the_cli(inputs, tiny_llama_dir):
    done = cli(
        "perplexity",
        str(tiny_llama_dir),
        "--text",
        str(inputs / "texts" / "f3.py"),
        "--seq-len",
        "16",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["dtype"] == "float32"


def _study(tmp, model_dir, runner: dict) -> object:
    cfg = {
        "name": "half",
        "models": [str(model_dir)],
        "quantizations": [{"method": "rtn", "bits": [4], "calibration": ["texts"]}],
        "calibration": {"samples": 4, "seq_len": 16, "val_samples": 0, "seed": 0},
        "benchmarks": [{"name": "humaneval", "data": "mini.jsonl"}],
        "decoding": [{"name": "greedy", "max_new_tokens": 4, "prompt_style": "base", "batch_size": 2}],
        "perplexity": {"languages": ["python"], "tokens": 64, "seq_len": 16},
        "runner": {"isolate": False, "quantize_batch_size": 2, **runner},
    }
    path = tmp / f"half-{runner.get('dtype', 'auto')}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_study_kinds_run_in_runner_dtype(inputs, tiny_llama_dir):
    """runner.dtype bfloat16: every model step loads bf16 and says so; the steps' keys differ from the default
    study's, and the fp baseline is another version (variant key) than the fp32 one."""
    from codequant.study import build_plan, load_config, run_study
    from codequant.study.kinds.common import read_result, variant_key
    from codequant.study.runner import artifact_dir

    cfg = load_config(_study(inputs, tiny_llama_dir, {"dtype": "bf16"}))
    assert cfg.runner.dtype == "bfloat16"
    plan = build_plan(cfg, inputs)
    default = build_plan(load_config(_study(inputs, tiny_llama_dir, {})), inputs)
    model_steps = [s for s in plan.steps if s.kind not in ("calibrate", "compare")]
    assert {s.config["dtype"] for s in model_steps} == {"bfloat16"}
    assert not {s.key for s in model_steps} & {s.key for s in default.steps}
    assert {s.key for s in plan.of_kind("calibrate")} == {s.key for s in default.of_kind("calibrate")}
    fp_eval = next(s for s in plan.of_kind("evaluate") if s.meta["variant"]["method"] == "fp")
    assert variant_key(fp_eval).endswith("@bfloat16")

    study = inputs / "half"
    run_study(cfg, study, base=inputs, log=lambda s: None)
    got = {(s.kind, s.label): read_result(artifact_dir(study, s)).get("dtype") for s in model_steps}
    assert set(got.values()) == {"bfloat16"}, got
    for s in plan.of_kind("evaluate"):
        assert json.loads((artifact_dir(study, s) / "config.json").read_text())["dtype"] == "bfloat16"
    (q,) = plan.of_kind("quantize")
    assert _tensor_dtypes(artifact_dir(study, q) / "model.safetensors") == {torch.bfloat16}


@pytest.mark.parametrize("bad", ["fp8", "float64"])
def test_bad_dtype_is_the_same_one_line_from_yaml_and_cli(inputs, tiny_llama_dir, bad):
    from codequant.errors import CodequantError
    from codequant.study import load_config

    path = _study(inputs, tiny_llama_dir, {"dtype": bad})
    with pytest.raises(CodequantError, match=rf"runner\.dtype: unknown dtype '{bad}'"):
        load_config(path)
    for args in (
        ["study", "run", str(path)],
        [
            "quantize",
            str(tiny_llama_dir),
            "--method",
            "rtn",
            "--bits",
            "4",
            "--dtype",
            bad,
            "--out",
            str(inputs / "x"),
        ],
        ["evaluate", "canonical", "--dtype", bad],
        ["perplexity", "x", "--text", "y", "--dtype", bad],
    ):
        done = cli(*args)
        assert done.returncode == 2, (args, done.stderr)
        lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
        assert (
            len(lines) == 1
            and f"unknown dtype '{bad}'; use one of auto, float32, float16, bfloat16" in lines[0]
        )
