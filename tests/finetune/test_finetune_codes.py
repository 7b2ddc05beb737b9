"""PV-tuning-style code updates: re-encoding the groups that moved (codes change, the error strictly falls),
shadow steps then re-encoding lowering the quantized layer's loss, and distillation with code updates on a
tiny AQLM-quantized Llama (codes change, validation KL falls, keep-best restores codes, exports stay clean)."""

from __future__ import annotations

import pytest
import torch

from codequant.finetune.codes import (
    SHADOW_ATTR,
    attach_shadows,
    detach_shadows,
    reencode_layer,
    reencode_model,
)
from codequant.finetune.teacher import TeacherTargets
from codequant.finetune.trainer import FinetuneConfig, distill, mean_kl
from codequant.quant.aqlm import AqlmLinear


def _layer(m=1, size=16, g=4, out=6, inp=12, seed=0) -> AqlmLinear:
    gen = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, size, (out, inp // g, m), generator=gen)
    books = torch.randn(m, size, 1, g, generator=gen)
    return AqlmLinear(codes, books, torch.rand(out, generator=gen) + 0.5)


def test_reencode_fixes_exactly_the_pairs_that_moved():
    layer = _layer()
    wanted = layer.codes.clone()
    pairs = [(0, 1), (3, 0), (5, 2)]
    for r, j in pairs:
        wanted[r, j, 0] = (wanted[r, j, 0] + 5) % 16
    target = AqlmLinear(wanted, layer.codebooks.data, layer.scales.data.flatten()).dequantize()
    before = layer.codes.clone()
    changed = reencode_layer(layer, target, fraction=len(pairs) / before[..., 0].numel())
    assert changed == len(pairs)
    assert torch.equal(layer.codes, wanted)  # one codebook: the best code per group is exact
    assert torch.allclose(layer.dequantize(), target, atol=1e-6)
    untouched = torch.ones_like(before[..., 0], dtype=torch.bool)
    for r, j in pairs:
        untouched[r, j] = False
    assert torch.equal(layer.codes[..., 0][untouched], before[..., 0][untouched])


def test_reencode_with_several_codebooks_changes_codes_and_strictly_lowers_the_error():
    layer = _layer(m=2, seed=1)
    target = layer.dequantize() + 1.0 * torch.randn(
        layer.out_features, layer.in_features, generator=torch.Generator().manual_seed(2)
    )
    before_codes = layer.codes.clone()
    moved = ((target - layer.dequantize()) ** 2).reshape(6, 3, 4).sum(-1)
    chosen = torch.zeros(18, dtype=torch.bool)
    chosen[moved.flatten().topk(9).indices] = True  # half of the 18 (row, group) pairs: those that moved most
    chosen = chosen.view(6, 3)

    def reencode_all(codes, target):  # every pair re-encoded: the unchosen ones would change too
        other = _layer(m=2, seed=1)
        other.codes.copy_(codes)
        reencode_layer(other, target, fraction=1.0)
        return other.codes

    err = float(((layer.dequantize() - target) ** 2).sum())
    changed = reencode_layer(layer, target, fraction=0.5)
    after = float(((layer.dequantize() - target) ** 2).sum())
    assert changed > 0 and changed == int((layer.codes != before_codes).sum())
    assert after < 0.95 * err, (err, after)
    # only the half of the (row, group) pairs that moved furthest from the target may change
    assert not torch.equal(layer.codes[~chosen], reencode_all(before_codes, target)[~chosen])
    assert torch.equal(layer.codes[~chosen], before_codes[~chosen])


def test_shadow_steps_then_reencoding_move_codes_towards_the_loss():
    """PV-style code update end to end: the straight-through gradient moves the shadow towards a better weight,
    re-encoding towards the shadow changes codes, and the loss of the *quantized* layer strictly falls."""
    layer = _layer(m=1, size=16, g=4, out=8, inp=16, seed=3)
    wanted = AqlmLinear(
        torch.randint(0, 16, layer.codes.shape, generator=torch.Generator().manual_seed(4)),
        layer.codebooks.data,
        layer.scales.data.flatten(),
    )
    x = torch.randn(64, 16, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        y = wanted(x)
    model = torch.nn.Sequential(layer)
    shadow = attach_shadows(model)["0.shadow"]

    def loss() -> torch.Tensor:
        return ((model(x) - y) ** 2).mean()

    with torch.no_grad():
        before = float(loss())
    opt = torch.optim.Adam([shadow], lr=0.05)
    for _ in range(30):
        opt.zero_grad()
        loss().backward()
        opt.step()
    codes = layer.codes.clone()
    gap = float(((layer.dequantize() - shadow.detach()) ** 2).sum())
    changed = reencode_model(model, fraction=0.5)
    detach_shadows(model)
    with torch.no_grad():
        after = float(loss())
    assert changed > 0 and not torch.equal(layer.codes, codes)
    assert float(((layer.dequantize() - shadow.detach()) ** 2).sum()) < gap
    assert after < 0.9 * before, (before, after)


def test_straight_through_forward_keeps_the_value_and_feeds_the_shadow():
    layer = _layer()
    x = torch.randn(3, layer.in_features)
    plain = layer(x).detach()
    shadow = attach_shadows(torch.nn.Sequential(layer))["0.shadow"]
    y = layer(x)
    assert torch.allclose(y, plain, atol=1e-6)
    y.sum().backward()
    assert shadow.grad is not None and float(shadow.grad.abs().sum()) > 0
    assert SHADOW_ATTR not in dict(layer.named_parameters()) and "shadow" not in str(list(layer.state_dict()))


def test_distill_with_code_updates_changes_codes_and_keeps_the_best(aqlm_student_and_targets, tmp_path):
    student, tokens, targets = aqlm_student_and_targets
    tr = TeacherTargets(targets.ids[:8], targets.logprobs[:8])
    va = TeacherTargets(targets.ids[8:], targets.logprobs[8:])
    codes_before = {n: m.codes.clone() for n, m in student.named_modules() if isinstance(m, AqlmLinear)}
    config = FinetuneConfig(
        epochs=3,
        lr=3e-3,
        batch_size=4,
        patience=3,
        code_updates=True,
        reencode_fraction=0.05,
        reencode_every=1,
    )
    result = distill(student, tokens[:8], tr, tokens[8:], va, config, checkpoint_dir=tmp_path, progress=False)
    assert all(h["codes_changed"] > 0 for h in result.history)
    assert result.val_kl_after < result.val_kl_before
    # keep-best restored the codes with the codebooks: the model's KL is the best epoch's
    assert mean_kl(student, tokens[8:], va, 4) == pytest.approx(result.val_kl_after, rel=1e-5)
    moved = sum(
        int((m.codes != codes_before[n]).sum())
        for n, m in student.named_modules()
        if isinstance(m, AqlmLinear)
    )
    assert moved > 0 or result.best_epoch == 0
    # shadows are gone after training and never reach the state dict
    assert all(SHADOW_ATTR not in m.__dict__ for m in student.modules())
    assert not any("shadow" in k for k in student.state_dict())
