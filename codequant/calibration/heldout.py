"""Held-out code for perplexity: whole files of the held-out tenth of Python/Java packages (split.py).

Calibration never draws from these units (build.py refuses to), so a quantized model's perplexity here measures
code it was not calibrated on. Files are concatenated in a fixed order, separated by the EOS token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from codequant.calibration.build import load_units
from codequant.calibration.split import is_heldout, split_key
from codequant.calibration.units import seeded_order
from codequant.errors import CodequantError

HELDOUT_SOURCES = {
    "python": ("python-stdlib",),
    "java": ("jdk",),
}  # stdlib: same files wherever Python 3.11 runs
MAX_FILE_CHARS = 200_000


def heldout_rows(
    language: str, tokenizer: Any, n_tokens: int, *, seed: int = 0, sources: Sequence[str] | None = None
) -> tuple[torch.Tensor, list[dict]]:
    """(1-D tokens, the files they came from) — the files let tests and manifests check disjointness."""
    if language not in HELDOUT_SOURCES:
        raise CodequantError(f"held-out language must be python or java, not {language!r}")
    units = [u for u in load_units(list(sources or HELDOUT_SOURCES[language])) if u.category == language]
    held = [u for u in units if is_heldout(u)]
    if not held:
        raise CodequantError(f"no held-out {language} code among {len(units)} units of the sources")
    eos = getattr(tokenizer, "eos_token_id", None)
    ids: list[int] = []
    files: list[dict] = []
    for unit in seeded_order(held, seed, "heldout-unit", key=lambda u: u.key):
        for doc in unit.documents():
            text = doc.read()[:MAX_FILE_CHARS]
            if not text.strip():
                continue
            ids.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
            if eos is not None:
                ids.append(int(eos))
            files.append(
                {"source": unit.source, "unit": unit.id, "file": doc.name, "split_key": split_key(unit)}
            )
            if len(ids) >= n_tokens:
                return torch.tensor(ids[:n_tokens], dtype=torch.long), files
    raise CodequantError(
        f"held-out {language} code has only {len(ids)} tokens, fewer than the {n_tokens} asked for"
    )


def heldout_tokens(
    language: str,
    tokenizer: Any,
    n_tokens: int = 32_768,
    *,
    samples: int | None = None,
    seq_len: int | None = None,
    seed: int = 0,
    sources: Sequence[str] | None = None,
) -> torch.Tensor:
    """`n_tokens` held-out tokens as a 1-D LongTensor, or [samples, seq_len] rows when both are given."""
    if samples is not None and seq_len is not None:
        tokens, _ = heldout_rows(language, tokenizer, samples * seq_len, seed=seed, sources=sources)
        return tokens.view(samples, seq_len)
    tokens, _ = heldout_rows(language, tokenizer, n_tokens, seed=seed, sources=sources)
    return tokens
