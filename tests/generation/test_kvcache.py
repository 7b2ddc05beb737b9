"""PreallocatedLayer behaves exactly like transformers' DynamicLayer under appends and the engine's batch edits."""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicLayer

from codequant.generation.kvcache import MIN_SPARE, PreallocatedLayer


def _step(layers, k, v):
    return [layer.update(k, v) for layer in layers]


def test_appends_selects_and_trims_like_a_dynamic_layer():
    g = torch.Generator().manual_seed(0)
    ours, ref = PreallocatedLayer(), DynamicLayer()
    both = [ours, ref]
    for n in (5, 1, 1, *([1] * (MIN_SPARE + 10))):  # a prefill, then enough steps to grow the buffer twice
        k, v = torch.randn(3, 2, n, 4, generator=g), torch.randn(3, 2, n, 4, generator=g)
        (ko, vo), (kr, vr) = _step(both, k, v)
        assert torch.equal(ko, kr) and torch.equal(vo, vr)
    assert ours.get_seq_length() == ref.get_seq_length() == 5 + 2 + MIN_SPARE + 10
    for layer in both:  # what the engine does when rows finish: drop rows, then trim leading columns
        layer.batch_select_indices(torch.tensor([2, 0]))
        layer.keys = layer.keys[..., 3:, :]
        layer.values = layer.values[..., 3:, :]
    k, v = torch.randn(2, 2, 1, 4, generator=g), torch.randn(2, 2, 1, 4, generator=g)
    (ko, vo), (kr, vr) = _step(both, k, v)
    assert torch.equal(ko, kr) and torch.equal(vo, vr) and ours.get_seq_length() == ref.get_seq_length()


def test_appending_does_not_copy_the_cache_each_step():
    layer = PreallocatedLayer()
    layer.update(torch.zeros(1, 1, 8, 4), torch.zeros(1, 1, 8, 4))
    buffer = layer._keys_buf.data_ptr()
    for _ in range(MIN_SPARE):
        layer.update(torch.ones(1, 1, 1, 4), torch.ones(1, 1, 1, 4))
    assert layer._keys_buf.data_ptr() == buffer and layer.keys.shape[-2] == 8 + MIN_SPARE
