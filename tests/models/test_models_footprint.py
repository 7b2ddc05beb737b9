"""codequant.models.footprint: every parameter and buffer counted once, by kind, at its real size."""

from __future__ import annotations

import torch
from torch import nn

from codequant.models.footprint import footprint, footprint_table


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # parameters() yields a tied tensor once


def test_untied_tiny_llama(tiny_llama):
    cfg = tiny_llama.config
    fp = footprint(tiny_llama)
    v, h, i, layers = cfg.vocab_size, cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    kv = cfg.num_key_value_heads * (h // cfg.num_attention_heads)
    assert fp.parameters == _params(tiny_llama)
    assert fp.kinds["embeddings"].parameters == v * h
    assert fp.kinds["head"].parameters == v * h and not fp.head_tied
    assert fp.kinds["linear"].parameters == layers * (2 * h * h + 2 * h * kv + 3 * h * i)
    assert fp.kinds["norms"].parameters == (2 * layers + 1) * h
    assert fp.linear_modules == 7 * layers
    assert fp.linear_bits_per_weight == 32.0
    buffers = sum(b.numel() * b.element_size() for b in tiny_llama.buffers())
    assert fp.kinds["other"].buffers == sum(b.numel() for b in tiny_llama.buffers()) > 0  # rotary inv_freq
    assert fp.bytes == 4 * fp.parameters + buffers


def test_tied_head_is_counted_once(tiny_llama):
    tiny_llama.lm_head.weight = tiny_llama.model.embed_tokens.weight
    fp = footprint(tiny_llama)
    assert fp.head_tied
    assert fp.kinds["head"].parameters == 0 and fp.kinds["head"].tensors == 0
    assert fp.parameters == _params(tiny_llama)
    d = fp.to_dict()
    assert d["head_tied"] is True and d["parameters"] == fp.parameters
    assert set(d["kinds"]) == {"embeddings", "linear", "norms", "head", "other"}


def test_half_precision_halves_the_bytes(tiny_llama):
    fp32 = footprint(tiny_llama).bytes
    fp16 = footprint(tiny_llama.half()).bytes  # .half() casts the float buffers too
    assert 2 * fp16 == fp32


def test_aqlm_quantized_linear_is_charged_its_codes_and_codebooks(tiny_llama):
    from aqlm.inference import QuantizedLinear

    layer = tiny_llama.model.layers[0].mlp
    old = layer.down_proj
    q = QuantizedLinear(
        old.in_features,
        old.out_features,
        in_group_size=8,
        out_group_size=1,
        num_codebooks=1,
        nbits_per_codebook=8,
        bias=False,
    )
    layer.down_proj = q
    fp = footprint(tiny_llama)
    q_bytes = sum(t.numel() * t.element_size() for t in [*q.parameters(), *q.buffers()])
    expected_bits = 8 * (fp.kinds["linear"].bytes) / fp.linear_weights
    assert fp.linear_modules == 7 * tiny_llama.config.num_hidden_layers
    assert fp.linear_weights == sum(
        m.in_features * m.out_features
        for m in tiny_llama.modules()
        if isinstance(m, (nn.Linear, QuantizedLinear)) and m is not tiny_llama.lm_head
    )
    assert q_bytes < 4 * old.weight.numel()
    assert fp.linear_bits_per_weight == expected_bits < 32
    assert fp.parameters == _params(tiny_llama)


def test_buffers_of_packed_linears_count():
    class PackedLinear(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.in_features, self.out_features = 16, 4
            self.register_buffer("codes", torch.zeros(4, 8, dtype=torch.uint8))  # 4-bit, two per byte
            self.scale = nn.Parameter(torch.ones(4, dtype=torch.float16))

    model = nn.Sequential(nn.Embedding(10, 16), PackedLinear(), nn.LayerNorm(4))
    fp = footprint(model)
    assert fp.kinds["linear"].buffers == 32 and fp.kinds["linear"].parameters == 4
    assert fp.kinds["linear"].bytes == 32 + 8
    assert fp.linear_bits_per_weight == 8 * 40 / 64
    assert fp.kinds["norms"].parameters == 8 and fp.kinds["embeddings"].parameters == 160


def test_table_lists_every_kind_and_total(tiny_llama):
    from rich.console import Console

    console = Console(width=150, record=True)
    console.print(footprint_table(footprint(tiny_llama), "tiny"))
    text = console.export_text()
    for word in ("embeddings", "linear", "norms", "head", "other", "total", "32.00 stored bits/weight"):
        assert word in text
