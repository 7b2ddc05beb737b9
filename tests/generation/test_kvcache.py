"""PreallocatedLayer behaves exactly like transformers' DynamicLayer under appends and the engine's batch edits."""

from __future__ import annotations

import pytest
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


def _slot_and_reference(g):
    """A SlotLayer and a plain DynamicLayer fed the same prefill of 3 rows."""
    from codequant.generation.kvcache import SlotLayer

    slot, ref = SlotLayer(slots=4), DynamicLayer()
    k, v = torch.randn(3, 2, 5, 4, generator=g), torch.randn(3, 2, 5, 4, generator=g)
    slot.place(k, v)
    ref.update(k, v)
    return slot, ref


def test_slot_layer_edits_match_selecting_trimming_and_concatenating():
    g = torch.Generator().manual_seed(1)
    slot, ref = _slot_and_reference(g)
    for _ in range(MIN_SPARE + 3):  # enough steps to outgrow the first buffer
        k, v = torch.randn(3, 2, 1, 4, generator=g), torch.randn(3, 2, 1, 4, generator=g)
        (ks, vs), (kr, vr) = slot.update(k, v), ref.update(k, v)
        assert torch.equal(ks, kr) and torch.equal(vs, vr)
    # Row 0 finishes: the last row moves into its slot (order [2, 1]); then 2 padding columns are trimmed.
    slot.move_rows([(0, 2)], 2)
    slot.trim(2)
    ref.batch_select_indices(torch.tensor([2, 1]))
    ref.keys, ref.values = ref.keys[..., 2:, :], ref.values[..., 2:, :]
    assert torch.equal(slot.keys, ref.keys) and slot.get_seq_length() == ref.get_seq_length()
    # Two new rows with a shorter cache join, right-aligned; a longer one widens the visible part.
    for width in (3, ref.get_seq_length() + 4):
        k, v = torch.randn(1, 2, width, 4, generator=g), torch.randn(1, 2, width, 4, generator=g)
        slot.place(k, v)
        grow = max(0, width - ref.get_seq_length())
        pad = torch.zeros(ref.keys.shape[0], 2, grow, 4)
        ref.keys, ref.values = torch.cat([pad, ref.keys], -2), torch.cat([pad, ref.values], -2)
        assert torch.equal(slot.keys[:-1, :, grow:], ref.keys[:, :, grow:])
        assert torch.equal(slot.keys[-1:, :, -width:], k) and torch.equal(slot.values[-1:, :, -width:], v)
        ref.keys = torch.cat([ref.keys, slot.keys[-1:]])
        ref.values = torch.cat([ref.values, slot.values[-1:]])
    assert slot.rows == 4 and slot.keys.shape == ref.keys.shape
    assert torch.isfinite(slot.keys).all()  # columns left of a short row are stale or zero, never NaN


def test_slot_edits_copy_only_moved_rows():
    g = torch.Generator().manual_seed(2)
    slot, _ = _slot_and_reference(g)
    buffer = slot._k.data_ptr()
    slot.move_rows([(0, 2)], 2)
    slot.trim(1)
    slot.place(torch.randn(2, 2, 3, 4, generator=g), torch.randn(2, 2, 3, 4, generator=g))
    slot.update(torch.randn(4, 2, 1, 4, generator=g), torch.randn(4, 2, 1, 4, generator=g))
    assert slot._k.data_ptr() == buffer and slot.get_seq_length() == 5
    with pytest.raises(RuntimeError, match="slots"):
        slot.place(torch.zeros(1, 2, 1, 4), torch.zeros(1, 2, 1, 4))
