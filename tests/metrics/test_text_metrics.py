"""BLEU-4 (sacrebleu) and ROUGE-L (rouge-score) as codequant.metrics.text computes them: real values."""

from __future__ import annotations

import math

import pytest

from codequant.metrics.text import corpus_bleu, rouge_l, sentence_bleu, text_scores

REF = "Return the sum of a and b."


def test_identical_strings_score_perfectly():
    assert sentence_bleu(REF, REF) == pytest.approx(100.0)
    assert rouge_l(REF, REF) == pytest.approx(1.0)
    assert corpus_bleu([REF, "x y z w"], [REF, "x y z w"]) == pytest.approx(100.0)
    assert text_scores("", REF) == {"bleu": 0.0, "rouge_l": 0.0}


def test_sentence_bleu_by_hand_and_direction():
    # 13a tokens: hyp "Return the sum of two numbers ." (7), ref "Return the sum of a and b ." (8)
    # matches: 1-grams 5/7 (Return the sum of .), 2-grams 3/6, 3-grams 2/5, 4-grams 1/4; BP = exp(1 - 8/7)
    hyp = "Return the sum of two numbers."
    expected = 100 * math.exp(1 - 8 / 7) * (5 / 7 * 3 / 6 * 2 / 5 * 1 / 4) ** 0.25
    assert sentence_bleu(hyp, REF) == pytest.approx(expected, rel=1e-9)
    # BLEU is not symmetric: hypothesis and reference must not be swapped
    assert sentence_bleu(REF, hyp) != pytest.approx(expected, rel=1e-6)


def test_sentence_bleu_is_smoothed():
    # no 3- or 4-gram in common: unsmoothed BLEU would be 0; exponential smoothing counts the k-th empty order
    # as 1 / 2^k matches
    hyp, ref = "Return the total of a plus b.", "Return the sum of a and b."
    # 1-grams 6/8 (Return the of a b .), 2-grams 3/7 (Return the, of a, b .), 3-grams 0/6, 4-grams 0/5; no BP
    expected = 100 * (6 / 8 * 3 / 7 * (1 / 2) / 6 * (1 / 4) / 5) ** 0.25
    assert sentence_bleu(hyp, ref) == pytest.approx(expected, rel=1e-9)
    assert sentence_bleu(hyp, ref) > 0


def test_rouge_l_by_hand():
    # LCS("the cat sat on the mat", "the cat was on the mat") = "the cat on the mat": 5 of 6 tokens each side
    assert rouge_l("the cat sat on the mat", "the cat was on the mat") == pytest.approx(5 / 6)
    # unequal lengths: hyp 3 tokens, ref 6, LCS 3 -> P = 1, R = 1/2, F1 = 2/3; stemming: "returns" ~ "return"
    assert rouge_l("returns the cat", "Return the big cat on mats") == pytest.approx(2 / 3)


def test_corpus_bleu_pools_counts():
    hyps, refs = ["Return the sum of two numbers.", REF], [REF, REF]
    c = corpus_bleu(hyps, refs)
    assert 0 < c < 100 and c != pytest.approx((sentence_bleu(*hyps[:1], REF) + 100) / 2)
    with pytest.raises(ValueError):
        corpus_bleu(["a"], [])
    assert math.isnan(corpus_bleu([], []))
