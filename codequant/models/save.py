"""`save`: write a model and tokenizer as an HF folder (safetensors) that `load` reads back.

The folder is written under a temporary name next to `out_dir` and renamed into place, so a reader never
sees a half-written model, and an interrupted save leaves the old folder (if any) untouched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from codequant.errors import CodequantError
from codequant.models.loader import LoadedModel, write_atomic


def save(
    loaded_or_model: LoadedModel | Any,
    tokenizer: Any = None,
    out_dir: str | Path | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Save a `LoadedModel` (its tokenizer unless one is given) or a model + tokenizer to `out_dir`."""
    if out_dir is None:
        raise CodequantError("save needs an output folder (out_dir)")
    if isinstance(loaded_or_model, LoadedModel):
        model = loaded_or_model.model
        tokenizer = tokenizer if tokenizer is not None else loaded_or_model.tokenizer
    else:
        model = loaded_or_model
    if not hasattr(model, "save_pretrained"):
        raise CodequantError(f"cannot save a {type(model).__name__}: save needs a transformers model")
    out = Path(out_dir).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise CodequantError(f"{out} already exists and is not empty; remove it or pass overwrite=True")
    return write_atomic(out, model, tokenizer)
