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
        if all(
            t is not None and t.ndim == 4 and t.shape[-2] >= needed
            for t in (self._keys_buf, self._values_buf)
        ):
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


class _SlotView:
    """`keys` / `values` of a `SlotLayer`: the view attention reads. Read-only (the base class sets None)."""

    def __init__(self, buf: str):
        self.buf = buf

    def __get__(self, layer, owner=None):
        if layer is None:
            return self
        buf = layer.__dict__.get(self.buf)
        return None if buf is None else buf[: layer.rows, :, layer.off : layer.end]

    def __set__(self, layer, value) -> None:
        if value is not None:
            raise AttributeError("edit a SlotLayer through place / move_rows / trim")


class SlotLayer(DynamicLayer):
    """A cache layer for continuous batching: one buffer [row slots, heads, columns, dim] edited in place.

    The engine's batch edits would otherwise copy the whole cache: dropping a finished row (`batch_select_indices`)
    and merging newly prefilled rows (`torch.cat`) each rewrite every layer, and the next append reallocates again
    because the result has no spare room (on SmolLM2 at batch 32 that was ~9% of a HumanEval pass). Here:

    - a finished row's slot is refilled by moving the last rows into it (`move_rows`: copies only moved rows);
    - leading columns that are padding for every row are dropped by advancing an offset (`trim`: no copy);
    - new rows are written right-aligned into free slots below the running ones (`place`).

    Attention sees `buf[:rows, :, off:end]`, a view. Buffers start zeroed so masked columns never hold NaN/inf
    (a masked score is -inf, but 0 * NaN would still poison the output).
    """

    def __init__(self, slots: int):
        self.slots = slots
        self.rows = self.off = self.end = 0
        self._k = self._v = None
        super().__init__()

    keys = _SlotView("_k")
    values = _SlotView("_v")

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device, self.is_initialized = key_states.device, True

    def _allocate(self, like: torch.Tensor, width: int, left: int) -> None:
        """(Re)allocate for `width` visible columns, keeping the visible part and `left` free columns before it."""
        capacity = left + width + max(MIN_SPARE, width)
        shape = (self.slots, like.shape[1], capacity, like.shape[-1])
        k, v = like.new_zeros(shape), like.new_zeros(shape)
        seen = self.end - self.off
        if self._k is not None and seen:
            k[:, :, left : left + seen] = self._k[:, :, self.off : self.end]
            v[:, :, left : left + seen] = self._v[:, :, self.off : self.end]
        self._k, self._v, self.off, self.end = k, v, left, left + seen

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        if key_states.shape[0] != self.rows:
            raise RuntimeError(f"slot cache holds {self.rows} rows, got {key_states.shape[0]}")
        n = key_states.shape[-2]
        if self._k is None or self.end + n > self._k.shape[-2]:
            self._allocate(key_states, self.end - self.off + n, 0)
        self._k[: self.rows, :, self.end : self.end + n] = key_states
        self._v[: self.rows, :, self.end : self.end + n] = value_states
        self.end += n
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.end - self.off

    def place(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Add rows (their cache `keys`/`values` [n, heads, width, dim]) below the running ones, right-aligned with
        the last column; columns left of a shorter new row keep stale values, which the engine's mask hides."""
        n, width = keys.shape[0], keys.shape[-2]
        if self.rows + n > self.slots:
            raise RuntimeError(f"slot cache has {self.slots} slots; {self.rows} used, {n} more asked")
        if self._k is None or self.rows == 0:
            self.off = self.end = 0
            if self._k is None or width > self._k.shape[-2]:
                self._k = None
                self._allocate(keys, width, 0)
            self.end = width
        elif width > self.end - self.off:
            if width > self.end:  # not enough columns left of the visible part: make room
                self._allocate(keys, self.end - self.off, width - (self.end - self.off))
            self.off = self.end - width
        self._k[self.rows : self.rows + n, :, self.end - width : self.end] = keys
        self._v[self.rows : self.rows + n, :, self.end - width : self.end] = values
        self.rows += n
        self.is_initialized, self.device = True, keys.device

    def move_rows(self, moves: list[tuple[int, int]], rows: int) -> None:
        """Copy row `src` into slot `dst` for each (dst, src), then keep the first `rows` slots."""
        for dst, src in moves:
            self._k[dst, :, self.off : self.end] = self._k[src, :, self.off : self.end]
            self._v[dst, :, self.off : self.end] = self._v[src, :, self.off : self.end]
        self.rows = rows

    def trim(self, columns: int) -> None:
        """Drop the first `columns` visible columns (padding for every row)."""
        self.off = min(self.off + columns, self.end)


def slot_cache(config, slots: int):
    """A transformers `DynamicCache` for `config` whose layers are `SlotLayer`s with `slots` row slots, or None
    when the model has layers other than plain full attention (sliding windows cannot be edited this way)."""
    from transformers import DynamicCache

    cache = DynamicCache(config=config)
    if not cache.layers or any(type(layer) is not DynamicLayer for layer in cache.layers):
        return None
    cache.layers = [SlotLayer(slots) for _ in cache.layers]
    return cache
