"""Perplexity agrees with the model's own loss and is independent of how the windows are batched."""

from __future__ import annotations

import math

import pytest
import torch

from codequant.errors import CodequantError
from codequant.metrics.perplexity import perplexity


def test_matches_hf_loss_and_batching(tiny_llama):
    torch.manual_seed(0)
    vocab = tiny_llama.config.vocab_size
    stream = torch.randint(0, vocab, (4 * 32 + 10,))
    res = perplexity(tiny_llama, stream, seq_len=32, batch_size=3, progress=False)
    assert res["windows"] == 5 and res["tokens"] == 4 * 31 + 9
    assert float(res) == pytest.approx(math.exp(res["nll"]))
    with torch.no_grad():
        losses = [
            tiny_llama(input_ids=w[None], labels=w[None]).loss.item() * (w.numel() - 1)
            for w in stream.split(32)
        ]
    assert res["nll"] == pytest.approx(sum(losses) / res["tokens"], rel=1e-5)
    rows = perplexity(tiny_llama, stream[:128].view(4, 32), seq_len=32, batch_size=1, progress=False)
    one = perplexity(tiny_llama, stream[:128], seq_len=32, batch_size=4, progress=False)
    assert rows["ppl"] == pytest.approx(one["ppl"], rel=1e-5)
    assert tiny_llama.training is False


def test_rejects_empty_input(tiny_llama):
    with pytest.raises(CodequantError, match="at least 2 tokens"):
        perplexity(tiny_llama, torch.tensor([1]), progress=False)
