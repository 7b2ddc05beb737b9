"""Bit accounting by hand, preset resolution on SmolLM2's real shapes, and bad specs."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from codequant.errors import CodequantError
from codequant.quant.aqlm import PRESETS, AqlmLinear, resolve_aqlm_config
from codequant.quant.aqlm.linear import aqlm_storage
from codequant.quant.aqlm.presets import model_cost, quantized_shapes
from codequant.quant.base import QuantConfig


@pytest.fixture(scope="module")
def smollm2_shaped():
    """SmolLM2-135M's architecture on the meta device: real shapes, no memory."""
    config = LlamaConfig(
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        tie_word_embeddings=True,
    )
    with torch.device("meta"):
        return LlamaForCausalLM(config)


def test_storage_of_a_small_layer_by_hand():
    # out 4, in 8, M=2 codebooks of B=3 bits, g=4: 8 groups x 2 codes x 3 bits = 48; codebooks 2*8*4 fp16 = 1024;
    # scales 4 fp16 = 64. Stored codes are int8: 8 x 2 x 8 = 128.
    cost = aqlm_storage(4, 8, 2, 3, 4)
    assert cost.params == 32
    assert cost.formula_bits == 48 + 1024 + 64
    assert cost.stored_bits == 128 + 1024 + 64
    big = aqlm_storage(4, 8, 1, 12, 4)  # int16 codes for B > 8
    assert big.stored_bits == 8 * 16 + 4096 * 4 * 16 + 64
    layer = AqlmLinear(
        torch.zeros(4, 2, 2, dtype=torch.long), torch.zeros(2, 8, 1, 4), torch.ones(4), bias=torch.zeros(4)
    )
    assert layer.storage().stored_bits == cost.stored_bits + 4 * 32  # plus the fp32 bias


def test_smollm2_shapes_and_codebook_costs(smollm2_shaped):
    shapes = quantized_shapes(smollm2_shaped)
    assert len(shapes) == 210 and (192, 576) in shapes and (576, 1536) in shapes
    # the brief's figures: a 1x16 g8 codebook costs ~16 bits/weight on SmolLM2, 2x8 about 0.13
    one16 = model_cost(shapes, 1, 16, 8)["formula_bits_per_param"] - 2
    two8 = model_cost(shapes, 2, 8, 8)["formula_bits_per_param"] - 2
    assert 14 < one16 < 18
    assert 0.1 < two8 < 0.2


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_bits_resolve_within_budget_on_smollm2(smollm2_shaped, preset, bits):
    config = resolve_aqlm_config(QuantConfig("aqlm", bits=bits, preset=preset), smollm2_shaped)
    m, b, g = config.num_codebooks, config.codebook_bits, config.group_size
    assert m * b / g == bits
    resolved = config.options["resolved"]
    assert resolved["formula_bits_per_param"] <= bits * 1.1
    assert resolved["formula_bits_per_param"] == pytest.approx(
        model_cost(quantized_shapes(smollm2_shaped), m, b, g)["formula_bits_per_param"]
    )
    assert resolved["reason"]
    if preset == "fast":
        assert (m, b, g) == PRESETS["fast"][bits]
    if preset == "paper" and bits == 2:
        assert (m, b, g) == (2, 8, 8) and "1x15" in resolved["reason"]


def test_explicit_spec_bypasses_presets(smollm2_shaped):
    config = resolve_aqlm_config(
        QuantConfig("aqlm", num_codebooks=1, codebook_bits=16, group_size=8), smollm2_shaped
    )
    assert (config.num_codebooks, config.codebook_bits, config.group_size) == (1, 16, 8)
    assert config.options["resolved"]["formula_bits_per_param"] > 16


@pytest.mark.parametrize(
    "spec, message",
    [
        (dict(num_codebooks=2, codebook_bits=17, group_size=8), "1..16"),
        (dict(num_codebooks=0, codebook_bits=8, group_size=8), "at least 1"),
        (dict(num_codebooks=2, codebook_bits=8, group_size=7), "does not divide"),
        (dict(num_codebooks=2, codebook_bits=8), "all of"),
        (dict(bits=5), "one of"),
        (dict(bits=2, preset="tiny"), "preset"),
    ],
)
def test_bad_specs_raise_codequant_error(smollm2_shaped, spec, message):
    with pytest.raises(CodequantError, match=message):
        resolve_aqlm_config(QuantConfig("aqlm", **spec), smollm2_shaped)
