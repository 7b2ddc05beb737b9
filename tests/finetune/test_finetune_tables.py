"""Fine-tuning a checkpoint whose token tables are quantized (`codequant quantize --embedding-bits/--head-bits`):
the tables stay frozen unless asked; `--train-embeddings`/`--train-head` train a quantized table's scales and
offsets (codes fixed); a tied head is its embedding's one table. End to end on a tiny Llama: quantize, finetune,
reload, compare logits and the saved table bytes."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from safetensors import safe_open

from codequant.finetune import FinetuneConfig, FinetuneRun, finetune
from codequant.finetune.params import select_trainable
from codequant.quant.export import load_codequant_checkpoint
from codequant.quant.options import TableSpec
from codequant.quant.run import QuantRun, build_config, quantize_to_dir
from codequant.quant.tables import QuantizedEmbedding, QuantizedHead, TiedHead, quantize_tables

TABLE_GROUP = 16


def _tables(model) -> list[torch.nn.Module]:
    return [m for m in model.modules() if isinstance(m, (QuantizedEmbedding, QuantizedHead))]


@pytest.mark.parametrize("tied", [False, True])
def test_quantized_tables_are_frozen_unless_asked_and_then_train_their_scales(tiny_llama, tied):
    if tied:
        tiny_llama.config.tie_word_embeddings = True
        tiny_llama.lm_head.weight = tiny_llama.model.embed_tokens.weight
    quantize_tables(tiny_llama, TableSpec(embedding_bits=8, head_bits=8, group_size=TABLE_GROUP))
    assert isinstance(tiny_llama.lm_head, TiedHead if tied else QuantizedHead)
    table_ids = {id(t) for m in _tables(tiny_llama) for t in (*m.parameters(), *m.buffers())}

    frozen = select_trainable(tiny_llama)
    assert frozen and not [n for n, p in frozen.items() if id(p) in table_ids]
    assert all(not p.requires_grad for m in _tables(tiny_llama) for p in m.parameters())
    assert all(m.scale.dtype == torch.float16 for m in _tables(tiny_llama))  # not even promoted

    emb = tiny_llama.model.embed_tokens
    head = emb if tied else tiny_llama.lm_head
    both = select_trainable(tiny_llama, train_embeddings=True, train_head=True)
    expected = {id(emb.scale), id(emb.offset), id(head.scale), id(head.offset)}
    assert {id(p) for n, p in both.items() if n.startswith(("embed.", "head."))} == expected
    assert len(both) == len({id(p) for p in both.values()})  # a tied table once
    assert emb.scale.dtype == torch.float32 and emb.scale.requires_grad and not emb.codes.is_floating_point()
    only_head = select_trainable(tiny_llama, train_head=True)
    assert {id(p) for n, p in only_head.items() if n.startswith(("embed.", "head."))} == {
        id(head.scale),
        id(head.offset),
    }


def _table_bytes(folder) -> dict[str, int]:
    """Bytes of the saved token-table tensors by name."""
    with safe_open(str(folder / "codequant.safetensors"), framework="pt") as f:
        return {k: f.get_tensor(k).nbytes for k in f.keys() if "embed_tokens" in k or "lm_head" in k}


def test_finetune_of_a_checkpoint_with_quantized_tables(tiny_llama, tiny_tokenizer, confident, tmp_path):
    """RTN 2-bit decoder with 8-bit tables: plain fine-tuning changes the logits and leaves the saved tables
    byte for byte; with --train-embeddings --train-head their codes stay and only the scales and offsets move,
    stored as fp32 (4 more bytes per group of each table)."""
    confident(tiny_llama)
    teacher = tmp_path / "teacher"
    tiny_llama.save_pretrained(teacher)
    tiny_tokenizer.save_pretrained(teacher)
    torch.manual_seed(0)
    tokens = torch.randint(1, 300, (64, 32))
    qdir = tmp_path / "q"
    quantize_to_dir(
        str(teacher),
        build_config("rtn", bits=2, group_size=16),
        qdir,
        QuantRun(
            calibration=tokens,
            formats=("codequant",),
            embedding_bits=8,
            head_bits=8,
            table_group_size=TABLE_GROUP,
        ),
        progress=False,
    )
    quantized, _ = load_codequant_checkpoint(qdir / "codequant")
    before = _table_bytes(qdir / "codequant")
    assert before and any(k.endswith("embed_tokens.codes") for k in before)

    def tune(out, lr=1e-3, **flags):
        config = FinetuneConfig(epochs=2, lr=lr, batch_size=4, patience=2, **flags)
        # validation on the training rows: keep-best follows the objective (on 8 held-out random rows training the
        # tables' scales overfits: 0.116 -> 0.136 at lr 1e-4, so keep-best would rightly keep the start)
        run = FinetuneRun(calibration=SimpleNamespace(train=tokens, val=tokens), top_k=16)
        result = finetune(qdir, str(teacher), out, run, config, progress=False)
        assert result["best_epoch"] >= 1, (
            out.name,
            result["val_kl_before"],
            result["history"],
        )  # kept: not restored to the start
        model, _ = load_codequant_checkpoint(out / "codequant")
        return model

    ids = tokens[:2]
    plain = tune(tmp_path / "ft")
    assert _table_bytes(tmp_path / "ft" / "codequant") == before  # frozen: the same tensors, the same bytes
    assert isinstance(plain.model.embed_tokens, QuantizedEmbedding) and isinstance(
        plain.lm_head, QuantizedHead
    )
    for a, b in zip(_tables(plain), _tables(quantized), strict=True):
        assert (
            torch.equal(a.codes, b.codes)
            and torch.equal(a.scale, b.scale)
            and torch.equal(a.offset, b.offset)
        )
    with torch.no_grad():
        assert not torch.allclose(plain(input_ids=ids).logits, quantized(input_ids=ids).logits, atol=1e-4)

    tables = tune(tmp_path / "ft-tables", lr=1e-4, train_embeddings=True, train_head=True)
    after = _table_bytes(tmp_path / "ft-tables" / "codequant")
    grown = {k: v for k, v in after.items() if after[k] != before[k]}
    assert set(after) == set(before) and grown and all(k.endswith((".scale", ".offset")) for k in grown)
    assert all(after[k] == 2 * before[k] for k in grown)  # fp16 -> fp32 scales and offsets
    for a, b in zip(_tables(tables), _tables(quantized), strict=True):
        assert torch.equal(a.codes, b.codes) and not torch.equal(a.scale.half(), b.scale)
    with torch.no_grad():
        assert not torch.allclose(tables(input_ids=ids).logits, plain(input_ids=ids).logits, atol=1e-4)
