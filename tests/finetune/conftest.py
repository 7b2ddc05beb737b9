"""Shared fixtures of the fine-tuning tests."""

from __future__ import annotations

import copy

import pytest
import torch

from codequant.finetune.teacher import compute_teacher_targets
from codequant.quant.aqlm import AqlmQuantizer
from codequant.quant.base import QuantConfig
from codequant.quant.pipeline import quantize_model


def quantize_tiny_aqlm(model, tokens):
    """The fine-tuning tests' AQLM student: 1x4 g8, one round, no block tuning, fitted on 8 rows (in place)."""
    config = QuantConfig(
        "aqlm",
        num_codebooks=1,
        codebook_bits=4,
        group_size=8,
        seed=0,
        options={"max_rounds": 1, "tune_epochs": 0},
    )
    quantize_model(model, tokens[:8], AqlmQuantizer(config), progress=False)
    return model


def make_confident(model):
    """Scale every matrix by 6 (in place): random init gives near-uniform next-token distributions (KL ~ 0 whatever
    the weights), a confident teacher lets quantization error show in the KL."""
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(6.0)
    return model


@pytest.fixture()
def confident():
    """`make_confident` for the fine-tuning tests (a fixture: `from conftest import` is ambiguous in this suite)."""
    return make_confident


@pytest.fixture()
def tiny_aqlm():
    """`quantize_tiny_aqlm` for tests that quantize copies of one model themselves."""
    return quantize_tiny_aqlm


@pytest.fixture()
def aqlm_student_and_targets(tiny_llama):
    torch.manual_seed(0)
    make_confident(tiny_llama)
    teacher = copy.deepcopy(tiny_llama)
    tokens = torch.randint(1, teacher.config.vocab_size, (12, 24))
    targets = compute_teacher_targets(teacher, tokens, top_k=16, batch_size=4, progress=False)
    quantize_tiny_aqlm(tiny_llama, tokens)
    return tiny_llama, tokens, targets
