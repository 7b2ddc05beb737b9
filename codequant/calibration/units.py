"""Documents and units: the two granularities every calibration source is drawn at.

A *unit* is what the recipe limits ("at most one file per repository/package"): a Python package, a JDK package,
a pydoc topic, a book. A *document* is one text inside a unit (a source file, a topic, a book). Units list their
documents lazily, so that enumerating all of site-packages costs a directory listing, not reading every file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

Category = Literal["python", "java", "prose", "general"]
# prose: technical natural language about Python/Java (Mixed); general: general English text (Random).
NATURAL = ("prose", "general")


@dataclass(frozen=True)
class Document:
    """One text; `read()` loads it on demand (source files are read only when drawn)."""

    source: str
    unit: str
    name: str
    read: Callable[[], str] = field(compare=False, repr=False)


@dataclass(frozen=True)
class Unit:
    """A package/repository/topic; `documents()` lists its texts in a stable (sorted) order."""

    source: str
    id: str
    category: Category
    documents: Callable[[], list[Document]] = field(compare=False, repr=False)
    topic: str = ""  # for prose: "python" or "java" (what the text is about)

    @property
    def key(self) -> str:
        return f"{self.source}:{self.id}"


def stable_hash(*parts: object) -> int:
    """A process-independent hash (Python's hash() is salted per process, so it cannot make a seeded choice)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def seeded_order(items: list, seed: int, salt: str, key: Callable[[object], str]) -> list:
    """`items` in an order that depends only on the seed and each item's key (not on listing order)."""
    return sorted(items, key=lambda item: (stable_hash(salt, seed, key(item)), key(item)))
