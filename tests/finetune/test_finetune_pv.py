"""PV-tuning's V-step (codequant.finetune.pv): the trust region (tau = 0 changes nothing, tau > 0 at most tau of
the pairs), the choice of pairs (exactly the ones whose change lowers the linearised objective most), a V-step
on a problem with a known better assignment lowering the real loss, and distillation with PV-tuning on a tiny
AQLM-quantized Llama."""

from __future__ import annotations

import copy

import pytest
import torch

from codequant.finetune.pv import PROBE_ATTR, PVCodeOptimizer, attach_probes, detach_probes, v_step
from codequant.finetune.teacher import TeacherTargets, compute_teacher_targets
from codequant.finetune.trainer import FinetuneConfig, distill, mean_kl
from codequant.quant.aqlm import AqlmLinear


def _layer(m=2, size=16, g=4, out=8, inp=16, seed=0) -> AqlmLinear:
    gen = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, size, (out, inp // g, m), generator=gen)
    books = torch.randn(m, size, 1, g, generator=gen)
    return AqlmLinear(codes, books, torch.rand(out, generator=gen) + 0.5)


def _pairs_changed(before: torch.Tensor, after: torch.Tensor) -> int:
    return int((before != after).any(-1).sum())


def test_zero_trust_region_changes_no_code():
    layer = _layer()
    before = layer.codes.clone()
    update = torch.randn(layer.out_features, layer.in_features, generator=torch.Generator().manual_seed(1))
    assert v_step(layer, update, tau=0.0) == 0
    assert torch.equal(layer.codes, before)


@pytest.mark.parametrize("tau", [0.05, 0.25, 0.5])
def test_at_most_tau_of_the_pairs_change_and_the_target_gets_closer(tau):
    layer = _layer(seed=2)
    before = layer.codes.clone()
    w = layer.dequantize().clone()
    update = torch.randn(layer.out_features, layer.in_features, generator=torch.Generator().manual_seed(3))
    target = w - update
    changed = v_step(layer, update, tau=tau)
    pairs = before.shape[0] * before.shape[1]
    assert 0 < _pairs_changed(before, layer.codes) <= int(tau * pairs)
    assert changed == int((layer.codes != before).sum()) <= tau * before.numel()
    assert float(((layer.dequantize() - target) ** 2).sum()) < float(((w - target) ** 2).sum())


def test_the_pairs_chosen_are_those_that_lower_the_linearised_objective_most():
    """One codebook: the best code per pair is exact, so the best k pairs can be listed by brute force."""
    layer = _layer(m=1, size=16, g=4, out=6, inp=16, seed=4)
    before = layer.codes.clone()
    w = layer.dequantize().clone()
    update = 0.7 * torch.randn(6, 16, generator=torch.Generator().manual_seed(5))
    target = (w - update).reshape(6, 4, 4)
    books = layer.codebooks.detach().reshape(16, 4)
    s = layer.scales.detach().reshape(6, 1, 1, 1)
    options = ((s * books.view(1, 1, 16, 4) - target.unsqueeze(2)) ** 2).sum(-1)  # [6, 4, 16]
    now = ((w.reshape(6, 4, 4) - target) ** 2).sum(-1)
    gain = (now - options.min(-1).values).flatten()
    k = 6
    v_step(layer, update, tau=k / 24, candidates=24.0)
    moved = (layer.codes != before).any(-1).flatten()
    assert set(moved.nonzero().flatten().tolist()) == set(gain.topk(k).indices.tolist())
    assert torch.equal(layer.codes.flatten()[moved], options.argmin(-1).flatten()[moved])


def _known_better_problem(seed: int):
    """A layer whose codes differ from a `wanted` assignment with the same codebooks and scales; the loss is the
    output error against the wanted layer, so lowering it means moving codes towards `wanted`."""
    layer = _layer(m=1, size=16, g=4, out=16, inp=32, seed=seed)
    gen = torch.Generator().manual_seed(seed + 100)
    wanted_codes = layer.codes.clone()
    flip = torch.rand(wanted_codes.shape[:2], generator=gen) < 0.3
    wanted_codes[flip] = torch.randint(0, 16, (int(flip.sum()), 1), generator=gen)
    wanted = AqlmLinear(wanted_codes, layer.codebooks.data, layer.scales.data.flatten())
    x = torch.randn(256, 32, generator=gen)
    with torch.no_grad():
        y = wanted(x)
    return layer, wanted_codes, x, y


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_v_step_on_a_problem_with_a_known_better_assignment_lowers_the_loss(seed):
    layer, _, x, y = _known_better_problem(seed)
    model = torch.nn.Sequential(layer)
    layers = attach_probes(model)

    def loss() -> torch.Tensor:
        return ((model(x) - y) ** 2).sum(-1).mean()

    with torch.no_grad():
        before = float(loss())
    loss().backward()
    assert layer.__dict__[PROBE_ATTR].grad is not None
    changed = PVCodeOptimizer(layers, lr=0.5, tau=0.1).step()
    assert layer.__dict__[PROBE_ATTR].grad is None  # consumed
    with torch.no_grad():
        after = float(loss())
    assert changed > 0
    assert after < 0.97 * before, (before, after)
    detach_probes(model)
    assert PROBE_ATTR not in layer.__dict__ and not any("probe" in k for k in model.state_dict())


def test_probes_leave_the_forward_value_unchanged_and_collect_the_weight_gradient():
    layer = _layer()
    x = torch.randn(5, layer.in_features, generator=torch.Generator().manual_seed(6))
    plain = layer(x).detach()
    attach_probes(torch.nn.Sequential(layer))
    w = layer.dequantize().detach().clone().requires_grad_(True)
    y = layer(x)
    assert torch.equal(y, plain)
    (y**2).sum().backward()
    (torch.nn.functional.linear(x, w) ** 2).sum().backward()
    assert torch.allclose(layer.__dict__[PROBE_ATTR].grad, w.grad, atol=1e-4)


def test_settings_are_checked():
    with pytest.raises(ValueError, match="tau"):
        v_step(_layer(), torch.zeros(8, 16), tau=1.5)
    with pytest.raises(ValueError, match="lr"):
        PVCodeOptimizer({}, lr=0.0)
    with pytest.raises(ValueError, match="choose one"):
        FinetuneConfig(pv_tuning=True, code_updates=True)
    with pytest.raises(ValueError, match="pv_tau"):
        FinetuneConfig(pv_tuning=True, pv_tau=-0.1)


def _codes(model) -> dict[str, torch.Tensor]:
    return {n: m.codes.clone() for n, m in model.named_modules() if isinstance(m, AqlmLinear)}


def test_distill_with_pv_tuning_fits_its_rows_better_than_codebooks_alone(
    tiny_llama, tiny_aqlm, confident, tmp_path
):
    """Validation on the training rows themselves (this tiny set is too small to generalise), so keep-best follows
    the objective both runs optimise: the V-steps must lower it beyond what the P-steps alone reach."""
    torch.manual_seed(0)
    confident(tiny_llama)
    tokens = torch.randint(1, tiny_llama.config.vocab_size, (8, 24))
    targets = compute_teacher_targets(tiny_llama, tokens, top_k=16, batch_size=4, progress=False)
    plain_model, pv_model = (tiny_aqlm(copy.deepcopy(tiny_llama), tokens) for _ in range(2))
    settings = {"epochs": 3, "lr": 3e-3, "batch_size": 4, "patience": 3}
    plain = distill(plain_model, tokens, targets, tokens, targets, FinetuneConfig(**settings), progress=False)
    before = _codes(pv_model)
    config = FinetuneConfig(**settings, pv_tuning=True, pv_lr=0.1, pv_tau=0.01)
    result = distill(
        pv_model, tokens, targets, tokens, targets, config, checkpoint_dir=tmp_path, progress=False
    )
    assert all(h["codes_changed"] > 0 for h in result.history)
    assert result.val_kl_before == pytest.approx(plain.val_kl_before)
    assert result.val_kl_after < 0.95 * plain.val_kl_after, (plain.val_kl_after, result.val_kl_after)
    # keep-best restored the codes with the codebooks: the model's KL is the best epoch's
    assert mean_kl(pv_model, tokens, targets, 4) == pytest.approx(result.val_kl_after, rel=1e-5)
    assert any(not torch.equal(m, before[n]) for n, m in _codes(pv_model).items())
    assert all(PROBE_ATTR not in m.__dict__ for m in pv_model.modules())
    assert not any("probe" in k or "straight" in k for k in pv_model.state_dict())
    assert "pv" in torch.load(tmp_path / "finetune_state.pt", weights_only=False)


def test_distill_with_a_zero_trust_region_moves_no_code(aqlm_student_and_targets):
    student, tokens, targets = aqlm_student_and_targets
    tr = TeacherTargets(targets.ids[:8], targets.logprobs[:8])
    va = TeacherTargets(targets.ids[8:], targets.logprobs[8:])
    before = _codes(student)
    config = FinetuneConfig(epochs=1, lr=3e-3, batch_size=4, pv_tuning=True, pv_lr=0.05, pv_tau=0.0)
    result = distill(student, tokens[:8], tr, tokens[8:], va, config, progress=False)
    assert result.history[0]["codes_changed"] == 0
    assert all(torch.equal(m, before[n]) for n, m in _codes(student).items())
