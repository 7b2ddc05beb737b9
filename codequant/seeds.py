"""Derived seeds: one run seed and a key (a layer name, a block index, a completion) give an independent,
reproducible seed, so results do not depend on the order in which things are computed or on what else ran."""

from __future__ import annotations

import zlib

_MULTIPLIER = 1_000_003  # a prime: nearby run seeds give unrelated derived seeds


def derive_seed(seed: int, key: str | int) -> int:
    """`seed` mixed with `key` (a string by its CRC-32, an int as it is), in [0, 2^63)."""
    part = zlib.crc32(key.encode()) if isinstance(key, str) else int(key)
    return (int(seed) * _MULTIPLIER + part) % (2**63)
