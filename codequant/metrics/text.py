"""Text metrics of code summarization: sentence BLEU-4 (sacrebleu), corpus BLEU-4 and ROUGE-L F1 (rouge-score).

Settings, fixed here so that every run is scored alike:

- sentence BLEU: `sacrebleu.metrics.BLEU(tokenize="13a", lowercase=False, smooth_method="exp",
  effective_order=True)`, `.sentence_score(hypothesis, [reference])` - sacrebleu's own sentence-level setting:
  BLEU-4 with exponential smoothing of zero n-gram counts (Chen & Cherry 2014, method 3) and effective order (a
  sentence shorter than 4 tokens is not zero by construction). 0-100.
- corpus BLEU: `BLEU(tokenize="13a", lowercase=False, smooth_method="exp")` `.corpus_score` over every scored
  completion with its reference (n-gram counts summed over the run, then one brevity penalty). 0-100.
- ROUGE-L: `rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)`, `.score(target=reference,
  prediction=hypothesis)["rougeL"].fmeasure`: F1 of the longest common subsequence over rouge-score's tokens
  (lowercased, non-alphanumerics as separators, Porter-stemmed). 0-1.

BERTScore is not computed: it needs a pretrained model that is not shipped offline.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

METRICS = ("bleu", "rouge_l")  # per-sample metrics, the ones the paired test compares


@lru_cache(maxsize=1)
def _sentence_bleu():
    from sacrebleu.metrics import BLEU

    return BLEU(tokenize="13a", lowercase=False, smooth_method="exp", effective_order=True)


@lru_cache(maxsize=1)
def _rouge():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def sentence_bleu(hypothesis: str, reference: str) -> float:
    """Sentence BLEU-4 of `hypothesis` against one `reference`, 0-100 (settings in the module docstring)."""
    return float(_sentence_bleu().sentence_score(hypothesis, [reference]).score)


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU-4 over aligned hypotheses and references, 0-100."""
    from sacrebleu.metrics import BLEU

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not hypotheses:
        return float("nan")
    bleu = BLEU(tokenize="13a", lowercase=False, smooth_method="exp")
    return float(bleu.corpus_score(list(hypotheses), [list(references)]).score)


def rouge_l(hypothesis: str, reference: str) -> float:
    """ROUGE-L F1 of `hypothesis` against `reference`, 0-1."""
    return float(_rouge().score(reference, hypothesis)["rougeL"].fmeasure)


def text_scores(hypothesis: str, reference: str) -> dict[str, float]:
    """Every per-sample metric of one summary: {"bleu": 0-100, "rouge_l": 0-1}."""
    return {"bleu": sentence_bleu(hypothesis, reference), "rouge_l": rouge_l(hypothesis, reference)}
