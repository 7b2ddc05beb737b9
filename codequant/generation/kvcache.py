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


class PreallocatedLayer(DynamicLayer):
    def __init__(self, **kwargs):
        self._k: torch.Tensor | None = None
        self._v: torch.Tensor | None = None
        self._len = self._vlen = 0  # filled positions of each buffer (equal except between the two assignments)
        super().__init__(**kwargs)

    # keys / values: views of the filled positions; assigning a tensor makes it the buffer (no spare room yet)
    @property
    def keys(self) -> torch.Tensor | None:  # type: ignore[override]
        return None if self._k is None else self._k[..., : self._len, :]

    @keys.setter
    def keys(self, value: torch.Tensor | None) -> None:
        self._k = value
        self._len = 0 if value is None or value.ndim < 2 else value.shape[-2]

    @property
    def values(self) -> torch.Tensor | None:  # type: ignore[override]
        return None if self._v is None else self._v[..., : self._vlen, :]

    @values.setter
    def values(self, value: torch.Tensor | None) -> None:
        self._v = value
        self._vlen = 0 if value is None or value.ndim < 2 else value.shape[-2]

    def _reserve(self, extra: int, like: torch.Tensor) -> None:
        if self._len != self._vlen:
            raise RuntimeError(f"cache keys hold {self._len} positions but values {self._vlen}")
        needed = self._len + extra
        if all(t is not None and t.ndim == 4 and t.shape[-2] >= needed for t in (self._k, self._v)):
            return
        capacity = needed + max(MIN_SPARE, self._len)
        shape = (*like.shape[:-2], capacity, like.shape[-1])
        k, v = like.new_empty(shape), like.new_empty(shape)
        if self._len:
            k[..., : self._len, :] = self._k[..., : self._len, :]
            v[..., : self._len, :] = self._v[..., : self._len, :]
        self._k, self._v = k, v

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        n = key_states.shape[-2]
        self._reserve(n, key_states)
        self._k[..., self._len : self._len + n, :] = key_states
        self._v[..., self._len : self._len + n, :] = value_states
        self._len += n
        self._vlen = self._len
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self._len if self.is_initialized else 0


def preallocate(cache) -> None:
    """Swap the plain full-attention layers of a fresh transformers cache for `PreallocatedLayer`s."""
    cache.layers = [PreallocatedLayer() if type(layer) is DynamicLayer else layer for layer in cache.layers]
