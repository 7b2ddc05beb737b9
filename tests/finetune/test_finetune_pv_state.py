"""PV-tuning's state (codequant.finetune.pv_state): streamed gradients give the same V-step as summed ones, the
bytes PV really allocates on a tiny AQLM model are the bytes `study plan` counts for it, and `pv_state_dtype` is
checked the same way from the CLI, `FinetuneConfig` and a study YAML."""

from __future__ import annotations

import copy

import pytest
import torch
import yaml
from typer.testing import CliRunner

from codequant.cli import app
from codequant.errors import CodequantError
from codequant.finetune.loss import topk_kl
from codequant.finetune.pv import PROBE_ATTR, PVCodeOptimizer, attach_probes, detach_probes
from codequant.finetune.pv_state import pv_state_bytes
from codequant.finetune.teacher import compute_teacher_targets
from codequant.finetune.trainer import FinetuneConfig
from codequant.models.shapes import model_shape
from codequant.quant.aqlm import AqlmLinear
from codequant.study import build_plan, load_config
from codequant.study.config import parse_config
from codequant.study.costs import plan_costs


def _backward(model, tokens, targets, rows=slice(0, 4)) -> None:
    logits = model(input_ids=tokens[rows], use_cache=False).logits
    topk_kl(logits, targets.ids[rows], targets.logprobs[rows]).backward()


def _trainable(model) -> None:
    for m in model.modules():
        if isinstance(m, AqlmLinear):
            m.codebooks.requires_grad_(True)


def _codes(model) -> dict[str, torch.Tensor]:
    return {n: m.codes.clone() for n, m in model.named_modules() if isinstance(m, AqlmLinear)}


def _quantized_pair(quantize, base, tokens):
    """Two equal AQLM models from one fp model (a quantized model holds tensors `deepcopy` cannot copy)."""
    models = []
    for _ in range(2):
        model = quantize(copy.deepcopy(base), tokens)
        _trainable(model)
        models.append(model)
    return models


def test_streamed_gradients_give_the_same_v_steps_as_gradients_kept_in_the_probes(
    tiny_llama, tiny_aqlm, confident
):
    """`stream=True` folds each layer's dL/dW into the moments during backward and frees it; the codes and moments
    after two V-steps are those of the probes' kept gradients (the pre-existing path)."""
    torch.manual_seed(0)
    confident(tiny_llama)
    tokens = torch.randint(1, tiny_llama.config.vocab_size, (8, 24))
    targets = compute_teacher_targets(tiny_llama, tokens, top_k=16, batch_size=4, progress=False)
    kept, streamed = _quantized_pair(tiny_aqlm, tiny_llama, tokens)
    assert all(
        torch.equal(a, b) for a, b in zip(_codes(kept).values(), _codes(streamed).values(), strict=True)
    )
    opts = {"lr": 0.1, "tau": 0.05}
    pv_kept = PVCodeOptimizer(attach_probes(kept), **opts)
    pv_streamed = PVCodeOptimizer(attach_probes(streamed), **opts, stream=True)
    changed = []
    for rows in (slice(0, 4), slice(4, 8)):
        _backward(kept, tokens, targets, rows)
        _backward(streamed, tokens, targets, rows)
        assert all(m.__dict__[PROBE_ATTR].grad is None for m in pv_streamed.layers.values())  # freed at once
        assert all(m.__dict__[PROBE_ATTR].grad is not None for m in pv_kept.layers.values())
        changed.append((pv_kept.step(), pv_streamed.step()))
    assert changed[0][0] > 0 and all(a == b for a, b in changed), changed
    a, b = _codes(kept), _codes(streamed)
    assert all(torch.equal(a[n], b[n]) for n in a)
    for name, (m, v) in pv_kept.moments.items():
        assert torch.equal(m, pv_streamed.moments[name][0]) and torch.equal(v, pv_streamed.moments[name][1])
    pv_streamed.close()
    detach_probes(streamed)


@pytest.mark.parametrize(("state_dtype", "every"), [("float32", 1), ("bfloat16", 1), ("float32", 2)])
def test_the_plan_counts_the_bytes_pv_allocates(
    aqlm_student_and_targets, tiny_llama_dir, tmp_path, state_dtype, every
):
    """The real state after a V-step (moments, probes and any gradient they hold, summed by nbytes) on a tiny AQLM
    Llama, per quantized weight, times the weights the plan reads from the same model's config, is what `study
    plan` adds to the finetune step's GPU memory for PV-tuning (less its one-layer working set)."""
    student, tokens, targets = aqlm_student_and_targets
    _trainable(student)
    pv = PVCodeOptimizer(attach_probes(student), state_dtype=state_dtype, stream=every == 1)
    _backward(student, tokens, targets)
    pv.step()
    _backward(
        student, tokens, targets
    )  # with every > 1 the probes now hold the summed gradient until the V-step
    real = pv.state_bytes()
    weights = sum(m.out_features * m.in_features for m in pv.layers.values())
    shape = model_shape(str(tiny_llama_dir))
    assert shape.linear_params == weights
    probes = 4 * len(pv.layers)  # each probe's value is one fp32 zero broadcast to [out, in]
    planned = pv_state_bytes(weights, shape.largest_linear, state_dtype=state_dtype, every=every)
    assert real - probes == planned.device
    assert real - probes == weights * (4 if state_dtype == "float32" else 2) * 2 + (
        4 * weights if every > 1 else 0
    )

    def finetune_gpu_bytes(pv_settings: dict) -> float:
        data = {
            "name": "pv",
            "models": [str(tiny_llama_dir)],
            "quantizations": [{"method": "aqlm", "bits": [2], "finetune": [True]}],
            "calibration": {"samples": 8, "seq_len": 16, "val_samples": 2},
            "benchmarks": [{"name": "humaneval", "limit": 2}],
            "finetune": pv_settings,
            "runner": {"device": "cuda"},
        }
        path = tmp_path / "study.yaml"
        path.write_text(yaml.safe_dump(data))
        cfg = load_config(path)
        (cost,) = [c for c in plan_costs(cfg, build_plan(cfg, tmp_path)) if c.kind == "finetune"]
        return cost.gpu_gb * 1e9

    without = finetune_gpu_bytes({})
    with_pv = finetune_gpu_bytes({"pv_tuning": True, "pv_state_dtype": state_dtype, "pv_every": every})
    layer = pv_state_bytes(weights, shape.largest_linear).layer
    assert with_pv - without - layer == pytest.approx(real / weights * shape.linear_params, rel=1e-3)


def test_the_34b_plan_fits_an_80gb_gpu_only_with_the_state_reduced(tmp_path):
    """CodeLlama-34B at 2 bits, batch 1 x 4096: fp32 moments alone are ~270 GB; bfloat16 moments on the host leave
    one layer's buffers on the GPU."""

    def cost(pv: dict):
        data = {
            "name": "big",
            "models": ["codellama/CodeLlama-34b-hf"],
            "quantizations": [{"method": "aqlm", "bits": [2], "finetune": [True]}],
            "calibration": {"samples": 1024, "seq_len": 4096, "val_samples": 128},
            "benchmarks": [{"name": "humaneval"}],
            "finetune": {"batch_size": 1, **pv},
            "runner": {
                "device": "cuda",
                "gpu": "h100-80gb",
                "resources": {"finetune": {"gpus": 1, "memory_gb": 600, "time_min": 10**6}},
            },
        }
        (c,) = [
            c
            for c in plan_costs(parse_config(data), build_plan(parse_config(data), tmp_path))
            if c.kind == "finetune"
        ]
        return c

    plain, fp32 = cost({}), cost({"pv_tuning": True})
    offloaded = cost({"pv_tuning": True, "pv_state_dtype": "bfloat16", "pv_offload": True})
    assert fp32.problem and "GPU memory" in fp32.problem and fp32.gpu_gb - plain.gpu_gb > 250
    assert offloaded.problem is None and offloaded.gpu_gb - plain.gpu_gb < 5
    assert offloaded.host_gb - plain.host_gb == pytest.approx(
        4 * model_shape("codellama/CodeLlama-34b-hf").linear_params / 1e9
    )


def test_pv_state_dtype_is_checked_the_same_from_the_cli_the_config_and_the_yaml(tmp_path):
    expected = "pv_state_dtype must be one of float32, bfloat16 (the V-step's Adam moments), got 'float16'"
    with pytest.raises(CodequantError) as e:
        FinetuneConfig(pv_tuning=True, pv_state_dtype="float16")
    assert str(e.value) == expected
    data = {
        "name": "t",
        "models": ["m"],
        "benchmarks": [{"name": "humaneval"}],
        "quantizations": [{"method": "aqlm", "bits": [2], "finetune": [True]}],
        "finetune": {"pv_tuning": True, "pv_state_dtype": "float16"},
    }
    with pytest.raises(CodequantError) as e:
        parse_config(data)
    assert "\n" not in str(e.value) and str(e.value).endswith(expected)
    result = CliRunner().invoke(
        app,
        [
            "finetune",
            str(tmp_path),
            "--teacher",
            "m",
            "--pv-tuning",
            "--pv-state-dtype",
            "float16",
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert (
        isinstance(result.exception, CodequantError) and str(result.exception) == expected
    )  # main() prints it


def test_the_state_settings_join_the_finetune_key_only_when_set(tmp_path):
    data = {
        "name": "t",
        "models": ["m"],
        "benchmarks": [{"name": "humaneval"}],
        "quantizations": [{"method": "aqlm", "bits": [2], "finetune": [True]}],
        "finetune": {"pv_tuning": True},
    }

    def finetune_step(**pv):
        data["finetune"] = {"pv_tuning": True, **pv}
        return next(s for s in build_plan(parse_config(data), tmp_path).steps if s.kind == "finetune")

    default = finetune_step()
    assert "pv_state_dtype" not in default.config and "pv_offload" not in default.config
    assert finetune_step(pv_state_dtype="float32", pv_offload=False).key == default.key
    bf16 = finetune_step(pv_state_dtype="bfloat16")
    assert bf16.config["pv_state_dtype"] == "bfloat16" and bf16.key != default.key
    assert finetune_step(pv_offload=True).key not in (default.key, bf16.key)


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="offloading moves the moments between a GPU and the host"
)
def test_offloaded_moments_wait_on_the_host_and_give_the_same_v_steps(tiny_llama, tiny_aqlm):
    torch.manual_seed(0)
    tokens = torch.randint(1, tiny_llama.config.vocab_size, (8, 24))
    targets = compute_teacher_targets(tiny_llama, tokens, top_k=16, batch_size=4, progress=False)
    on_gpu, offloaded = (m.cuda() for m in _quantized_pair(tiny_aqlm, tiny_llama, tokens))
    tokens, targets = tokens.cuda(), type(targets)(targets.ids.cuda(), targets.logprobs.cuda())
    plain = PVCodeOptimizer(attach_probes(on_gpu), lr=0.1, tau=0.05, stream=True)
    host = PVCodeOptimizer(attach_probes(offloaded), lr=0.1, tau=0.05, stream=True, offload=True)
    for rows in (slice(0, 4), slice(4, 8)):
        _backward(on_gpu, tokens, targets, rows)
        _backward(offloaded, tokens, targets, rows)
        assert plain.step() == host.step()
    assert all(t.device.type == "cpu" and t.is_pinned() for pair in host.moments.values() for t in pair)
    assert all(t.device.type == "cuda" for pair in plain.moments.values() for t in pair)
    a, b = _codes(on_gpu), _codes(offloaded)
    assert all(torch.equal(a[n], b[n]) for n in a)
