"""Edits to a source text: how a Java repair row says what its seeded bug changed without quoting the code.

An edit is `(offset, length, replacement)`; the replacement is short new text (`<=`, `!(`, a local's name) or
`(offset, length)` of a span of the original text moved here (swapped arguments). The builder
(`benchmarks.build.java_mutations`) writes them and the loader (`benchmarks.repair.java`) applies them, so they
live here, where loading needs no tree-sitter.
"""

from __future__ import annotations

from dataclasses import dataclass

Replacement = str | tuple[int, int]


@dataclass(frozen=True)
class Edit:
    offset: int
    length: int
    text: Replacement  # new text, or (offset, length) of the original span whose text goes here

    def to_json(self) -> list:
        return [self.offset, self.length, list(self.text) if isinstance(self.text, tuple) else self.text]

    @staticmethod
    def from_json(x: list) -> Edit:
        text = x[2]
        return Edit(int(x[0]), int(x[1]), tuple(text) if isinstance(text, list) else text)


def apply_edits(text: str, edits: list[Edit] | tuple[Edit, ...]) -> str:
    """`text` with `edits` applied; moved spans are read from the original `text`. Edits may not overlap."""
    out, pos = [], 0
    for e in sorted(edits, key=lambda e: (e.offset, e.length)):
        if e.offset < pos or e.offset + e.length > len(text):
            raise ValueError(f"edit {e.to_json()} overlaps another or leaves the text")
        out.append(text[pos : e.offset])
        out.append(text[e.text[0] : e.text[0] + e.text[1]] if isinstance(e.text, tuple) else e.text)
        pos = e.offset + e.length
    return "".join(out) + text[pos:]
