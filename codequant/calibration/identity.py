"""Tokenizer identity (for cache keys and manifests) and tokenizer-only loading for the CLI.

The identity hashes the vocabulary, not the path: SmolLM2's tokenizer read from the GGUF and from the converted
cache folder is the same tokenizer and must hit the same cached calibration set.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

# codequant.models (torch, transformers) loads inside `load_tokenizer` only: hashing a tokenizer needs neither.
from codequant.errors import CodequantError


def tokenizer_identity(tokenizer: Any) -> dict[str, Any]:
    vocab = tokenizer.get_vocab()
    payload = json.dumps(sorted(vocab.items()), ensure_ascii=False) + json.dumps(
        [str(t) for t in getattr(tokenizer, "all_special_tokens", [])]
    )
    return {
        "name": str(getattr(tokenizer, "name_or_path", "") or ""),
        "class": type(tokenizer).__name__,
        "vocab_size": len(vocab),
        "sha256": hashlib.sha256(payload.encode()).hexdigest(),
    }


def load_tokenizer(spec: str) -> Any:
    """The tokenizer of a model spec without loading the weights (an uncached GGUF is read for its tokenizer only)."""
    from transformers import AutoTokenizer

    from codequant.models import resolve
    from codequant.models.loader import SOURCE_FILE, gguf_cache_folder

    source, where = resolve(spec)
    try:
        if source in ("embedded", "gguf"):
            folder = gguf_cache_folder(Path(where))
            if (folder / SOURCE_FILE).is_file():
                return AutoTokenizer.from_pretrained(folder)
            return AutoTokenizer.from_pretrained(str(Path(where).parent), gguf_file=Path(where).name)
        return AutoTokenizer.from_pretrained(str(where))
    except (ValueError, KeyError, OSError, TypeError) as exc:
        raise CodequantError(f"no usable tokenizer for {spec}: {str(exc).splitlines()[0]}") from exc
