"""Incremental detokenization: the text of a growing completion, decoding a few tokens per new token.

Decoding a row's whole output after every token (what stop sequences need) costs O(n) per token, O(n^2) per
completion. Here each new token decodes only a short window: the tokens since the last point where the text was
known to be complete (`prefix`) and the new ones (`read`). The text the window adds beyond the prefix's is
appended; while the window ends inside a multi-byte character (the decoder shows U+FFFD) nothing is appended and
the window grows. The same scheme is what text-generation servers use; it gives the full decode's text for the
byte-level BPE tokenizers of code models, and `full()` is always the exact full decode (used for the final
output, so the result never depends on the window).
"""

from __future__ import annotations

from typing import Any


class IncrementalText:
    """The decoded text of `ids`, kept current as tokens are appended."""

    def __init__(self, tokenizer: Any, skip_special_tokens: bool = True):
        self.tokenizer = tokenizer
        self.skip = skip_special_tokens
        self.ids: list[int] = []
        self.text = ""
        self._prefix = 0  # ids[_prefix:_read] decode to the end of `text`
        self._read = 0

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=self.skip)

    def append(self, token: int) -> str:
        """Add one token; returns the text it completed ('' while a character is still incomplete)."""
        self.ids.append(token)
        before = self._decode(self.ids[self._prefix : self._read])
        after = self._decode(self.ids[self._prefix :])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            new = after[len(before) :]
            self.text += new
            self._prefix, self._read = self._read, len(self.ids)
            return new
        return ""

    def full(self) -> str:
        """The exact decode of every token (one O(n) decode; for the final output)."""
        return self._decode(self.ids)

    def __len__(self) -> int:
        return len(self.ids)
