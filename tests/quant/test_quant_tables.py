"""Quantized token tables (embedding / head) and the whole saved file's bits per weight, on tiny Llamas."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from codequant.errors import CodequantError
from codequant.models.filebits import folder_tensor_bytes, parameter_count
from codequant.quant.base import QuantConfig
from codequant.quant.run import QuantRun, build_config, quantize_to_dir
from codequant.quant.tables import QuantizedEmbedding, QuantizedHead, TableSpec, TiedHead, quantize_tables

CALIB = torch.randint(3, 300, (8, 16), generator=torch.Generator().manual_seed(1))
HIDDEN, INTER, LAYERS, KV = (
    64,
    128,
    2,
    32,
)  # the conftest tiny Llama: 4 heads of 16, 2 kv heads -> k/v 32 wide


def _folder(tmp_path, tiny_llama_builder, tiny_tokenizer, tied: bool):
    model = tiny_llama_builder(len(tiny_tokenizer))
    if tied:
        model.config.tie_word_embeddings = True
        model.lm_head.weight = model.model.embed_tokens.weight
    path = tmp_path / ("tied" if tied else "untied")
    model.save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


def _quantize(folder, out, **tables):
    run = QuantRun(calibration=CALIB, **tables)
    return quantize_to_dir(str(folder), build_config("rtn", bits=4, group_size=16), out, run, progress=False)


def _int_bytes(rows: int, cols: int, bits: int, group: int) -> int:
    """Bit-packed codes + fp16 scale and offset per group of `group` values of a row."""
    return rows * cols * bits // 8 + rows * (cols // group) * 2 * 2


def test_whole_file_bits_are_the_saved_tensors_over_the_fp_parameters(
    tmp_path, tiny_llama_builder, tiny_tokenizer
):
    vocab = len(tiny_tokenizer)
    folder = _folder(tmp_path, tiny_llama_builder, tiny_tokenizer, tied=False)
    result = _quantize(folder, tmp_path / "q", embedding_bits=8, head_bits=4, table_group_size=16)
    shapes = [
        (HIDDEN, HIDDEN),
        (KV, HIDDEN),
        (KV, HIDDEN),
        (HIDDEN, HIDDEN),
        (INTER, HIDDEN),
        (INTER, HIDDEN),
        (HIDDEN, INTER),
    ]  # q, k, v, o, gate, up, down
    linears = LAYERS * sum(_int_bytes(o, i, 4, 16) for o, i in shapes)
    norms = (2 * LAYERS + 1) * HIDDEN * 4  # fp32 RMSNorm weights
    tables = _int_bytes(vocab, HIDDEN, 8, 16) + _int_bytes(vocab, HIDDEN, 4, 16)
    params = LAYERS * sum(o * i for o, i in shapes) + (2 * LAYERS + 1) * HIDDEN + 2 * vocab * HIDDEN
    native = result["whole_file"]["codequant"]
    assert native["parameters"] == params
    assert native["tensor_bytes"] == linears + norms + tables
    assert native["bits_per_weight"] == pytest.approx(8 * (linears + norms + tables) / params, rel=1e-12)
    assert result["whole_file"]["dequantized"]["bits_per_weight"] == pytest.approx(
        32.0
    )  # fp32 copy: no claim
    assert result["accounting"]["model_params"] == params
    assert result["accounting"]["quantized_params"] == LAYERS * sum(o * i for o, i in shapes)  # linears only
    assert result["accounting"]["stored_bits_per_param"] == pytest.approx(4 + 32 / 16)
    saved = json.loads((tmp_path / "q" / "quantize.json").read_text())
    assert saved["whole_file"] == result["whole_file"] and saved["tables"]["head"]["bits"] == 4
    assert json.loads((tmp_path / "q" / "codequant" / "codequant.json").read_text())["whole_file"] == native
    # what `codequant models footprint` and bench/inference.py show for the saved folders
    from codequant.models import footprint, load
    from codequant.models.filebits import model_file_bits

    again = load(str(tmp_path / "q" / "codequant")).model
    assert model_file_bits(tmp_path / "q" / "codequant", again) == pytest.approx(native["bits_per_weight"])
    assert model_file_bits(tmp_path / "q", load(str(tmp_path / "q")).model) == pytest.approx(32.0)
    assert footprint(again).kinds["embeddings"].bytes == vocab * HIDDEN + vocab * (HIDDEN // 16) * 4


def test_without_tables_the_file_keeps_fp32_tables(tmp_path, tiny_llama_builder, tiny_tokenizer):
    vocab = len(tiny_tokenizer)
    folder = _folder(tmp_path, tiny_llama_builder, tiny_tokenizer, tied=False)
    result = _quantize(folder, tmp_path / "q")
    native = result["whole_file"]["codequant"]
    fp_bytes = folder_tensor_bytes(folder)
    assert fp_bytes == 4 * native["parameters"]
    linear_bits = result["accounting"]["stored_bits_per_param"] * result["accounting"]["quantized_params"]
    assert native["tensor_bytes"] == linear_bits / 8 + 4 * (2 * vocab * HIDDEN + (2 * LAYERS + 1) * HIDDEN)


@pytest.mark.parametrize("bits", [8, 6, 4])
def test_untied_tables_round_trip_through_load(tmp_path, tiny_llama_builder, tiny_tokenizer, bits):
    from codequant.models import load

    folder = _folder(tmp_path, tiny_llama_builder, tiny_tokenizer, tied=False)
    fp = load(str(folder)).model
    model = load(str(folder)).model
    quantize_tables(model, TableSpec(embedding_bits=bits, head_bits=bits, group_size=16))
    assert isinstance(model.model.embed_tokens, QuantizedEmbedding) and isinstance(
        model.lm_head, QuantizedHead
    )
    ids = CALIB[:2]
    with torch.no_grad():
        want, base = model(ids).logits, fp(ids).logits
    err = ((want - base).norm() / base.norm()).item()
    assert 0 < err < {8: 0.01, 6: 0.05, 4: 0.2}[bits]  # quantized, and the coarser the grid the further
    result = _quantize(folder, tmp_path / "q", embedding_bits=bits, head_bits=bits, table_group_size=16)
    again = load(result["exports"]["codequant"]).model
    assert isinstance(again.model.embed_tokens, QuantizedEmbedding) and isinstance(
        again.lm_head, QuantizedHead
    )
    deq = load(result["exports"]["dequantized"]).model
    inmem = load(str(folder)).model
    from codequant.quant.pipeline import quantize_model
    from codequant.quant.registry import make_quantizer

    quantize_model(inmem, CALIB, make_quantizer(QuantConfig("rtn", bits=4, group_size=16)), progress=False)
    quantize_tables(inmem, TableSpec(embedding_bits=bits, head_bits=bits, group_size=16))
    with torch.no_grad():
        ref = inmem(ids).logits
        torch.testing.assert_close(again(ids).logits, ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(deq(ids).logits, ref, rtol=1e-5, atol=1e-5)


def test_a_tied_table_is_quantized_and_stored_once(tmp_path, tiny_llama_builder, tiny_tokenizer):
    from codequant.models import load

    vocab = len(tiny_tokenizer)
    folder = _folder(tmp_path, tiny_llama_builder, tiny_tokenizer, tied=True)
    with pytest.raises(CodequantError, match="ties its LM head"):
        _quantize(folder, tmp_path / "bad", embedding_bits=8, head_bits=4)
    result = _quantize(folder, tmp_path / "q", embedding_bits=6, head_bits=6, table_group_size=16)
    assert result["tables"]["head"]["tied_to"] == "model.embed_tokens"
    native = result["whole_file"]["codequant"]
    assert native["parameters"] == parameter_count(load(str(folder)).model)  # the tied table counted once
    again = load(result["exports"]["codequant"]).model
    assert isinstance(again.lm_head, TiedHead) and again.lm_head.source is again.model.embed_tokens
    with safe_open(str(tmp_path / "q" / "codequant" / "codequant.safetensors"), framework="pt") as f:
        keys = list(f.keys())
    assert (
        not [k for k in keys if "lm_head" in k] and keys.count("q.model.embed_tokens.codes") == 1
    )  # one table
    table = _int_bytes(vocab, HIDDEN, 6, 16)
    untied_total = _quantize(
        _folder(tmp_path, tiny_llama_builder, tiny_tokenizer, tied=False),
        tmp_path / "u",
        embedding_bits=6,
        head_bits=6,
        table_group_size=16,
    )["whole_file"]["codequant"]
    assert untied_total["tensor_bytes"] - native["tensor_bytes"] == table  # the untied model stores two
    deq = load(result["exports"]["dequantized"]).model
    ids = CALIB[:2]
    with torch.no_grad():
        ref = again(ids).logits
        torch.testing.assert_close(deq(ids).logits, ref, rtol=1e-5, atol=1e-5)
        # the head reads the same quantized table as the embedding
        torch.testing.assert_close(again.lm_head.weight, again.model.embed_tokens.dequantize())
        # generation with the KV cache runs through the quantized tables and agrees with the dequantized export
        out = again.generate(ids, max_new_tokens=4, do_sample=False)
        assert torch.equal(out, deq.generate(ids, max_new_tokens=4, do_sample=False))


def test_embedding_lookup_equals_the_dequantized_table(tiny_llama):
    quantize_tables(tiny_llama, TableSpec(embedding_bits=4, group_size=-1))
    emb = tiny_llama.model.embed_tokens
    ids = CALIB[:3]
    assert torch.equal(emb(ids), emb.dequantize()[ids])
    assert emb.group_size == HIDDEN  # -1: one grid per row


def test_the_aqlm_format_cannot_hold_quantized_tables(
    tmp_path, tiny_llama_builder, tiny_tokenizer, tiny_llama
):
    from codequant.quant.aqlm.export import aqlm_format_problem

    folder = _folder(tmp_path, tiny_llama_builder, tiny_tokenizer, tied=False)
    config = build_config("aqlm", num_codebooks=1, codebook_bits=4, group_size=8)
    run = QuantRun(calibration=CALIB, formats=("aqlm",), embedding_bits=8, head_bits=8)
    with pytest.raises(CodequantError, match="aqlm format cannot hold quantized token tables"):
        quantize_to_dir(str(folder), config, tmp_path / "a", run, progress=False)
    assert not (tmp_path / "a" / "checkpoint").exists()  # refused before any work
    quantize_tables(tiny_llama, TableSpec(embedding_bits=8, head_bits=8))
    assert "cannot hold quantized token tables" in aqlm_format_problem(tiny_llama)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"embedding_bits": 5}, "embedding_bits must be one of 8, 6, 4"),
        ({"head_bits": 2}, "head_bits must be one of"),
        ({"embedding_bits": 8, "group_size": 0}, "group size"),
    ],
)
def test_table_settings_are_checked_once(kwargs, match):
    with pytest.raises(CodequantError, match=match):
        TableSpec(**kwargs)
    run_kwargs = {("table_group_size" if k == "group_size" else k): v for k, v in kwargs.items()}
    with pytest.raises(CodequantError, match=match):
        QuantRun(**run_kwargs)
