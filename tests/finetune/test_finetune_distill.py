"""Distillation on a tiny Llama: the KL loss, teacher caching, trainable selection and the training loop."""

from __future__ import annotations

import copy

import pytest
import torch

from codequant.finetune.loss import topk_kl
from codequant.finetune.params import select_trainable
from codequant.finetune.teacher import TeacherTargets, compute_teacher_targets
from codequant.finetune.trainer import FinetuneConfig, distill, mean_kl
from codequant.quant.base import QuantConfig
from codequant.quant.checkpoint import set_submodule
from codequant.quant.rtn import RtnQuantizer


def test_topk_kl_is_zero_for_identical_and_matches_full_kl_when_k_is_vocab():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11)
    lp = torch.log_softmax(logits, -1)
    top, ids = lp.topk(11, -1)
    assert topk_kl(logits, ids, top).item() == pytest.approx(0.0, abs=1e-6)
    other = torch.randn(2, 5, 11)
    full = (lp.exp() * (lp - torch.log_softmax(other, -1))).sum(-1).mean()
    assert topk_kl(other, ids, top).item() == pytest.approx(full.item(), rel=1e-4)
    top3, ids3 = lp.topk(3, -1)
    coarse = topk_kl(other, ids3, top3).item()
    assert 0.0 < coarse <= full.item() + 1e-6  # coarsening never increases a KL


def _quantize_rtn(model, bits=2, group=16):
    quantizer = RtnQuantizer(QuantConfig(method="rtn", bits=bits, group_size=group))
    for name, module in list(model.named_modules()):
        if isinstance(module, torch.nn.Linear) and ".layers." in name:
            set_submodule(model, name, quantizer.quantize_linear(name, module))
    return model


def test_select_trainable_freezes_codes_and_embeddings(tiny_llama):
    student = _quantize_rtn(tiny_llama)
    params = select_trainable(student)
    assert params, "norms and scales must be trainable"
    assert all("embed" not in n and "lm_head" not in n for n in params)
    assert any(n.endswith(".scale") for n in params) and any("norm" in n for n in params)
    trainable = {id(p) for p in params.values()}
    assert all(not p.requires_grad for p in student.parameters() if id(p) not in trainable)


def test_distill_lowers_validation_kl_and_resumes(tiny_llama, confident, tmp_path):
    torch.manual_seed(0)
    tiny_llama = confident(tiny_llama)
    teacher = copy.deepcopy(tiny_llama)
    tokens = torch.randint(1, teacher.config.vocab_size, (12, 24))
    targets = compute_teacher_targets(teacher, tokens, top_k=16, batch_size=4, progress=False)
    targets.save(tmp_path / "t.safetensors")
    loaded = TeacherTargets.load(tmp_path / "t.safetensors")
    assert torch.equal(loaded.ids, targets.ids) and loaded.top_k == 16
    train_t, val_t = tokens[:8], tokens[8:]
    tr = TeacherTargets(loaded.ids[:8], loaded.logprobs[:8])
    va = TeacherTargets(loaded.ids[8:], loaded.logprobs[8:])
    student = _quantize_rtn(tiny_llama)
    config = FinetuneConfig(epochs=4, lr=3e-3, batch_size=4, patience=2)
    result = distill(student, train_t, tr, val_t, va, config, checkpoint_dir=tmp_path, progress=False)
    assert result.val_kl_before > 0.05
    assert result.val_kl_after < 0.9 * result.val_kl_before
    assert mean_kl(student, val_t, va, 4) == pytest.approx(result.val_kl_after, rel=1e-5)  # best kept
    assert (tmp_path / "finetune_state.pt").exists()
    # A rerun over a finished checkpoint trains no further epochs and returns the same result.
    again = distill(student, train_t, tr, val_t, va, config, checkpoint_dir=tmp_path, progress=False)
    assert again.val_kl_after == pytest.approx(result.val_kl_after, rel=1e-6)
    assert again.history == result.history
