"""oneDNN-packed linears in the engine: what gets packed, the same logits to fp32 rounding, the model restored
afterwards, the memory guard, and greedy tokens unchanged on a tiny Llama."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from codequant.generation import packed as packed_mod
from codequant.generation.engine import EngineOptions, Request, SamplingParams, generate
from codequant.generation.packed import packable_linears, packed_linears

needs_onednn = pytest.mark.skipif(
    not packable_linears(nn.Sequential(nn.Linear(2, 2))), reason="no oneDNN linear ops"
)


@needs_onednn
def test_packing_keeps_the_logits_and_restores_the_model(tiny_llama, monkeypatch):
    calls = []
    real = packed_mod._packed_forward
    monkeypatch.setattr(packed_mod, "_packed_forward", lambda self, x: calls.append(self) or real(self, x))
    ids = torch.randint(1, 300, (3, 12), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        before = tiny_llama(ids).logits
        with packed_linears(tiny_llama, 3) as n:
            inside = tiny_llama(ids).logits
            assert all(hasattr(m, "_codequant_packed") for m in packable_linears(tiny_llama))
        after = tiny_llama(ids).logits
    assert n == len(packable_linears(tiny_llama)) == 2 * 7 + 1  # 7 linears per block and the lm_head
    assert len(calls) == n  # every linear ran through oneDNN once
    assert torch.allclose(inside, before, rtol=1e-4, atol=1e-5)
    assert torch.equal(after, before)
    assert not any("forward" in vars(m) or hasattr(m, "_codequant_packed") for m in tiny_llama.modules())


@needs_onednn
def test_training_and_quantized_layers_are_left_alone(tiny_llama):
    from codequant.quant.base import QuantConfig
    from codequant.quant.pipeline import quantize_model
    from codequant.quant.registry import make_quantizer

    ids = torch.randint(1, 300, (2, 8), generator=torch.Generator().manual_seed(1))
    with packed_linears(tiny_llama, 2):  # grad enabled (training): the plain kernel
        tiny_llama.lm_head._codequant_packed = None  # oneDNN would fail on it
        tiny_llama(ids).logits.sum().backward()
    assert tiny_llama.lm_head.weight.grad is not None
    quantize_model(tiny_llama, ids, make_quantizer(QuantConfig("rtn", bits=4, group_size=32)), progress=False)
    assert packable_linears(tiny_llama) == [tiny_llama.lm_head]


def test_memory_guard_and_switch(tiny_llama, monkeypatch):
    monkeypatch.setattr(packed_mod, "available_memory", lambda: 1024)
    with packed_linears(tiny_llama, 4) as n:
        assert n == 0
    with packed_linears(tiny_llama, 4, enabled=False) as n:
        assert n == 0
    if packable_linears(tiny_llama):
        with packed_linears(tiny_llama, 4, enabled=True) as n:
            assert n > 0


def test_engine_tokens_are_the_same_with_and_without_packing(tiny_llama, tiny_tokenizer):
    reqs = [
        Request(p, key=i) for i, p in enumerate(["def add(a, b):", "import", "for i in range(3):", "x ="])
    ]
    params = SamplingParams(max_new_tokens=24)
    plain = generate(
        tiny_llama,
        tiny_tokenizer,
        reqs,
        params,
        batch_size=4,
        engine=EngineOptions(packed=False),
        progress=False,
    )
    fast = generate(
        tiny_llama,
        tiny_tokenizer,
        reqs,
        params,
        batch_size=4,
        engine=EngineOptions(packed=True),
        progress=False,
    )
    assert [c.token_ids for c in fast] == [c.token_ids for c in plain]
