"""Effort presets: `reference` carries the AQLM reference's defaults, explicit options win, unknown names fail."""

from __future__ import annotations

import pytest

from codequant.errors import CodequantError
from codequant.quant.aqlm import AqlmQuantizer
from codequant.quant.aqlm.effort import EFFORTS, resolve_effort
from codequant.quant.aqlm.fit import FitOptions
from codequant.quant.aqlm.tune import TuneOptions
from codequant.quant.base import QuantConfig


def quantizer(**options) -> AqlmQuantizer:
    return AqlmQuantizer(QuantConfig("aqlm", num_codebooks=2, codebook_bits=8, group_size=8, options=options))


def test_fast_is_the_option_defaults():
    q = quantizer()
    assert q.effort == "fast" and EFFORTS["fast"] == {}
    assert q.fit_options == FitOptions() and q.tune_options == TuneOptions()
    assert q.fit_options.kmeans_sample is None and q.fit_options.damping > 0  # k-means on all groups, a ridge


def test_reference_effort_and_explicit_overrides():
    q = quantizer(effort="reference")
    assert (q.fit_options.kmeans_iters, q.fit_options.adam_steps, q.fit_options.max_rounds) == (100, 100, 100)
    assert q.fit_options.damping == 0.0 and q.fit_options.beam_size == 1
    assert (q.tune_options.epochs, q.tune_options.batch_size, q.tune_options.early_stop) == (10, 32, 3)
    assert q.tune_options.betas == (0.9, 0.95) and q.tune_options.lr == 1e-4
    q = quantizer(effort="reference", beam_size=4, tune_epochs=2)
    assert q.fit_options.beam_size == 4 and q.tune_options.epochs == 2 and q.fit_options.adam_steps == 100
    described = q.describe()
    assert described["effort"] == "reference" and described["fit"]["beam_size"] == 4
    assert described["tune"]["epochs"] == 2


def test_unknown_effort_is_one_clear_error():
    with pytest.raises(CodequantError, match="unknown AQLM effort 'slow'; choose one of fast, reference"):
        resolve_effort({"effort": "slow"})
    with pytest.raises(CodequantError, match="bad AQLM option"):
        quantizer(adam_steps="many")
