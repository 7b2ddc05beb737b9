"""`finetune` end to end on a tiny Llama: quantize (RTN 2-bit) -> distil -> export -> reload."""

from __future__ import annotations

import json

import pytest
import torch

from codequant.errors import CodequantError
from codequant.finetune import FinetuneConfig, FinetuneRun, finetune
from codequant.quant.run import QuantRun, build_config, quantize_to_dir


@pytest.fixture()
def confident_llama_dir(tiny_llama, tiny_tokenizer, confident, tmp_path):
    """The tiny Llama with scaled matrices: random init is near-uniform, so no quantization would show in the KL."""
    confident(tiny_llama)
    tiny_llama.save_pretrained(tmp_path / "teacher")
    tiny_tokenizer.save_pretrained(tmp_path / "teacher")
    return tmp_path / "teacher"


def test_finetune_improves_and_exports_reloadable_checkpoint(confident_llama_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    tiny_llama_dir = confident_llama_dir
    torch.manual_seed(0)
    tokens = torch.randint(1, 300, (64, 32))
    qdir, fdir = tmp_path / "q", tmp_path / "ft"
    quantize_to_dir(
        str(tiny_llama_dir),
        build_config("rtn", bits=2, group_size=16),
        qdir,
        QuantRun(calibration=tokens, formats=("codequant", "dequantized")),
        progress=False,
    )
    config = FinetuneConfig(epochs=4, lr=1e-3, batch_size=4, patience=2)
    result = finetune(
        qdir, str(tiny_llama_dir), fdir, FinetuneRun(calibration=tokens, top_k=16), config, progress=False
    )
    saved = json.loads((fdir / "finetune.json").read_text())
    assert saved["val_kl_after"] < saved["val_kl_before"] == result["val_kl_before"]
    assert saved["method"] == "rtn" and saved["peak_rss_mb"] > 0

    from codequant.quant.export import load_codequant_checkpoint

    student, _ = load_codequant_checkpoint(fdir / "codequant")
    plain = AutoModelForCausalLM.from_pretrained(fdir).eval()
    with torch.no_grad():
        a = student(input_ids=tokens[:2]).logits
        b = plain(input_ids=tokens[:2]).logits
    assert torch.allclose(a, b, atol=1e-4)


def test_finetune_needs_a_codequant_checkpoint(tiny_llama_dir, tmp_path):
    with pytest.raises(CodequantError, match="no codequant checkpoint"):
        finetune(
            tmp_path,
            str(tiny_llama_dir),
            tmp_path / "out",
            FinetuneRun(calibration=torch.zeros(8, 8, dtype=torch.long)),
        )


def _tiny_aqlm(teacher_dir, tmp_path, formats: tuple[str, ...]):
    """(calibration tokens, the 1x4 AQLM folder, its loaded checkpoint) of the confident tiny teacher."""
    from codequant.quant.export import load_codequant_checkpoint

    torch.manual_seed(0)
    tokens = torch.randint(1, 300, (24, 16))
    qdir = tmp_path / "q"
    config = build_config("aqlm", num_codebooks=1, codebook_bits=4, group_size=8)
    config.options.update({"max_rounds": 1, "tune_epochs": 0})
    quantize_to_dir(
        str(teacher_dir), config, qdir, QuantRun(calibration=tokens, formats=formats), progress=False
    )
    return tokens, qdir, load_codequant_checkpoint(qdir / "codequant")[0]


def test_code_updates_on_an_aqlm_checkpoint_and_refused_for_rtn(confident_llama_dir, tmp_path):
    from codequant.quant.export import load_codequant_checkpoint

    tokens, qdir, before = _tiny_aqlm(confident_llama_dir, tmp_path, ("codequant", "aqlm"))
    ft = FinetuneConfig(
        epochs=2,
        lr=3e-3,
        batch_size=4,
        patience=2,
        code_updates=True,
        reencode_fraction=0.05,
        reencode_every=1,
    )
    result = finetune(
        qdir,
        str(confident_llama_dir),
        tmp_path / "ft",
        FinetuneRun(calibration=tokens, top_k=16),
        ft,
        progress=False,
    )
    saved = json.loads((tmp_path / "ft" / "finetune.json").read_text())
    assert saved["config"]["code_updates"] and all(h["codes_changed"] > 0 for h in saved["history"])
    assert result["val_kl_after"] <= result["val_kl_before"]
    after, _ = load_codequant_checkpoint(tmp_path / "ft" / "codequant")
    if result["best_epoch"] > 0:  # the kept parameters came with re-encoded codes
        changed = sum(
            int((a != b).sum())
            for (n, a), (_, b) in zip(after.named_buffers(), before.named_buffers(), strict=True)
            if n.endswith("codes")
        )
        assert changed > 0
    rtn = tmp_path / "rtn"
    quantize_to_dir(
        str(confident_llama_dir),
        build_config("rtn", bits=2, group_size=16),
        rtn,
        QuantRun(calibration=tokens, formats=("codequant",)),
        progress=False,
    )
    with pytest.raises(CodequantError, match="no AQLM layers"):
        finetune(
            rtn,
            str(confident_llama_dir),
            tmp_path / "ft2",
            FinetuneRun(calibration=tokens),
            ft,
            progress=False,
        )


def test_pv_tuning_end_to_end_exports_moved_codes_and_is_refused_for_rtn(confident_llama_dir, tmp_path):
    from codequant.quant.export import load_codequant_checkpoint

    tokens, qdir, before = _tiny_aqlm(confident_llama_dir, tmp_path, ("codequant",))
    ft = FinetuneConfig(epochs=2, lr=3e-3, batch_size=4, patience=2, pv_tuning=True, pv_lr=0.1, pv_tau=0.02)
    result = finetune(
        qdir,
        str(confident_llama_dir),
        tmp_path / "ft",
        FinetuneRun(calibration=tokens, top_k=16),
        ft,
        progress=False,
    )
    saved = json.loads((tmp_path / "ft" / "finetune.json").read_text())
    assert saved["config"]["pv_tuning"] and saved["config"]["pv_tau"] == 0.02
    assert all(h["codes_changed"] > 0 for h in saved["history"])
    assert result["val_kl_after"] <= result["val_kl_before"]
    after, _ = load_codequant_checkpoint(tmp_path / "ft" / "codequant")
    moved = sum(
        int((a != b).sum())
        for (n, a), (_, b) in zip(after.named_buffers(), before.named_buffers(), strict=True)
        if n.endswith("codes")
    )
    assert moved > 0 or result["best_epoch"] == 0
    rtn = tmp_path / "rtn"
    quantize_to_dir(
        str(confident_llama_dir),
        build_config("rtn", bits=2, group_size=16),
        rtn,
        QuantRun(calibration=tokens, formats=("codequant",)),
        progress=False,
    )
    with pytest.raises(CodequantError, match="--pv-tuning moves AQLM codes"):
        finetune(
            rtn,
            str(confident_llama_dir),
            tmp_path / "ft2",
            FinetuneRun(calibration=tokens),
            ft,
            progress=False,
        )
