"""A KV cache layer that appends in place: transformers' `DynamicLayer` with preallocated capacity.

`DynamicLayer.update` concatenates, so every decoding step copies each layer's whole cache (for SmolLM2 at batch 8
and 600 positions, ~220 MB of copies per step, more than the weights it reads). This layer keeps its keys and
values in a buffer with spare positions, writes each new step into it, and hands attention a view of the filled
part; the buffer grows by doubling, so appending costs amortised O(1). `keys`/`values` stay assignable (a plain
tensor replaces the buffer), so the engine's batch editing (merging, dropping rows, trimming padding) works on it
as on a `DynamicLayer`.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicLayer

MIN_SPARE = 64  # positions reserved at least when the buffer grows


class _Filled:
    """`keys` / `values`: a view of the filled positions of the layer's buffer. Assigning a tensor makes it the
    buffer (no spare room yet: the next append reallocates), which is how the engine edits a batch."""

    def __set_name__(self, owner, name: str) -> None:
        self.buf, self.len = f"_{name}_buf", f"_{name}_len"

    def __get__(self, layer, owner=None):
        if layer is None:
            return self
        buf = layer.__dict__.get(self.buf)
        return None if buf is None else buf[..., : layer.__dict__[self.len], :]

    def __set__(self, layer, value: torch.Tensor | None) -> None:
        layer.__dict__[self.buf] = value
        layer.__dict__[self.len] = 0 if value is None or value.ndim < 2 else value.shape[-2]


class PreallocatedLayer(DynamicLayer):
    keys = _Filled()
    values = _Filled()

    def _reserve(self, extra: int, like: torch.Tensor) -> None:
        filled = self._keys_len
        if filled != self._values_len:
            raise RuntimeError(f"cache keys hold {filled} positions but values {self._values_len}")
        needed = filled + extra
        if all(t is not None and t.ndim == 4 and t.shape[-2] >= needed for t in (self._keys_buf, self._values_buf)):
            return
        capacity = needed + max(MIN_SPARE, filled)
        shape = (*like.shape[:-2], capacity, like.shape[-1])
        k, v = like.new_empty(shape), like.new_empty(shape)
        if filled:
            k[..., :filled, :], v[..., :filled, :] = self.keys, self.values
        self._keys_buf, self._values_buf = k, v

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        n = key_states.shape[-2]
        self._reserve(n, key_states)
        start = self._keys_len
        self._keys_buf[..., start : start + n, :] = key_states
        self._values_buf[..., start : start + n, :] = value_states
        self._keys_len = self._values_len = start + n
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self._keys_len if self.is_initialized else 0


def preallocate(cache) -> None:
    """Swap the plain full-attention layers of a fresh transformers cache for `PreallocatedLayer`s."""
    cache.layers = [PreallocatedLayer() if type(layer) is DynamicLayer else layer for layer in cache.layers]
