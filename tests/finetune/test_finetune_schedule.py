"""The fine-tuning lr schedule: the cosine factor's shape, the lr the trainer really steps with, the same run
after a resume, and one check of the name from the CLI, FinetuneConfig and a study."""

from __future__ import annotations

import math

import pytest
import torch
from typer.testing import CliRunner

from codequant.errors import CodequantError
from codequant.finetune.schedule import lr_factor
from codequant.finetune.teacher import TeacherTargets
from codequant.finetune.trainer import FinetuneConfig, distill


def test_cosine_runs_from_one_to_zero_and_constant_stays_one():
    factors = [lr_factor("cosine", s, 10) for s in range(11)]
    assert factors[0] == 1.0 and factors[10] == pytest.approx(0.0, abs=1e-12)
    assert factors[5] == pytest.approx(0.5)
    assert all(a > b for a, b in zip(factors, factors[1:], strict=False))
    assert {lr_factor("constant", s, 10) for s in range(11)} == {1.0}


def split(tokens, targets):
    tr = TeacherTargets(targets.ids[:8], targets.logprobs[:8])
    va = TeacherTargets(targets.ids[8:], targets.logprobs[8:])
    return tokens[:8], tr, tokens[8:], va


def trained(student):
    return {n: p.detach().clone() for n, p in student.named_parameters() if p.requires_grad}


def test_the_trainer_steps_with_the_scheduled_lr(aqlm_student_and_targets):
    student, tokens, targets = aqlm_student_and_targets
    config = FinetuneConfig(epochs=3, lr=1e-3, lr_schedule="cosine", batch_size=4, patience=3)
    result = distill(student, *split(tokens, targets), config, progress=False)
    # 8 rows / batch 4 = 2 steps per epoch, 6 planned: the lr after epoch e is the factor at step 2e
    lrs = [h["lr_end"] for h in result.history]
    assert lrs == pytest.approx([1e-3 * 0.5 * (1 + math.cos(math.pi * 2 * e / 6)) for e in (1, 2, 3)])
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)


def test_a_resumed_cosine_run_equals_the_straight_one(
    tiny_llama_dir, tiny_aqlm, confident, tmp_path, monkeypatch
):
    """Killed in its second epoch and rerun, a cosine run ends where the uninterrupted one does: the scheduler's
    position is in the checkpoint (without it the resumed epochs would restart at the full lr)."""
    from transformers import AutoModelForCausalLM

    import codequant.finetune.trainer as trainer
    from codequant.finetune.teacher import compute_teacher_targets

    def model():
        return confident(AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval())

    tokens = torch.randint(1, 384, (12, 24), generator=torch.Generator().manual_seed(0))
    targets = compute_teacher_targets(model(), tokens, top_k=16, batch_size=4, progress=False)
    data = split(tokens, targets)
    config = FinetuneConfig(epochs=3, lr=3e-3, lr_schedule="cosine", batch_size=4, patience=3)
    straight = tiny_aqlm(model(), tokens)
    expected = distill(straight, *data, config, progress=False)

    real, calls = trainer.topk_kl, [0]

    def dies_in_epoch_two(*args):
        calls[0] += 1
        # calls: 1 validation before training, 2 steps and 1 validation per epoch: 5 = epoch 2's first step,
        # after epoch 1's checkpoint
        if calls[0] == 5:
            raise KeyboardInterrupt
        return real(*args)

    resumed = tiny_aqlm(model(), tokens)
    monkeypatch.setattr(trainer, "topk_kl", dies_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        distill(resumed, *data, config, checkpoint_dir=tmp_path, progress=False)
    monkeypatch.setattr(trainer, "topk_kl", real)
    assert torch.load(tmp_path / "finetune_state.pt", weights_only=False)["epoch"] == 1
    resumed = tiny_aqlm(model(), tokens)
    result = distill(resumed, *data, config, checkpoint_dir=tmp_path, progress=False)
    assert len(result.history) == 3
    for got, want in zip(result.history, expected.history, strict=True):
        assert got == pytest.approx(want, rel=1e-5)
    a, b = trained(straight), trained(resumed)
    assert a.keys() == b.keys() and all(torch.allclose(a[n], b[n], atol=1e-6) for n in a)


def test_an_unknown_schedule_is_refused_alike_everywhere(tmp_path):
    from codequant.cli import app
    from codequant.study.config import Finetune

    with pytest.raises(CodequantError, match="lr schedule must be one of constant, cosine"):
        FinetuneConfig(lr_schedule="linear")
    with pytest.raises(ValueError, match="lr schedule must be one of constant, cosine"):
        Finetune(lr_schedule="linear")
    out = CliRunner().invoke(
        app,
        [
            "finetune",
            str(tmp_path),
            "--teacher",
            "x",
            "--lr-schedule",
            "linear",
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert isinstance(out.exception, CodequantError) and "lr schedule must be one of constant" in str(
        out.exception
    )
    assert "lr_schedule" not in Finetune().step_config()  # the default leaves old study keys as they were
    assert Finetune(lr_schedule="cosine").step_config()["lr_schedule"] == "cosine"
