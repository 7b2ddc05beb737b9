"""Folder formats that a package above `models` knows how to rebuild, registered here by that package.

`models.load` must read a codequant native checkpoint (`codequant.safetensors`: quantized linears with their codes,
codebooks and scales), but only `codequant.quant` knows those linears, and `models` sits below `quant` in the data
flow (tests/test_layering.py). So, as `quant/registry.py` does for quantized linears, the format's owner registers a
loader for the file that marks it: `codequant.quant.export` does so when imported, and every path that loads a
model imports it (the CLI's model commands, the evaluation runner, the study's steps in any worker, the inference
metrics; tests/models/test_models_checkpoints.py checks each in a fresh interpreter).

A loader is `fn(folder, dtype) -> model` (in eval mode); `models.load` wraps the model into its one `LoadedModel`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from codequant.errors import CodequantError

FolderLoader = Callable[[Path, torch.dtype], Any]
NATIVE_FILE = "codequant.safetensors"  # a codequant native checkpoint's weights
# marker file -> the module whose import registers its loader (named in the error when nothing registered it)
KNOWN_FORMATS = {NATIVE_FILE: "codequant.quant.export"}
_LOADERS: dict[str, FolderLoader] = {}


def register_folder_loader(marker: str, loader: FolderLoader) -> None:
    """Folders holding the file `marker` (and no `model*.safetensors` of their own) load with `loader`."""
    _LOADERS[marker] = loader


def registered_markers() -> list[str]:
    return sorted(_LOADERS)


def folder_loader(folder: Path) -> FolderLoader | None:
    """The registered loader for `folder`, or None when transformers reads it itself (it holds
    `model*.safetensors`, or no marker file). A marker whose loader was never registered is a clear error, not a
    transformers error about missing weights."""
    if any(folder.glob("model*.safetensors")):
        return None
    for marker in sorted({*_LOADERS, *KNOWN_FORMATS}):
        if (folder / marker).is_file():
            if marker not in _LOADERS:
                raise CodequantError(
                    f"{folder} holds {marker}, whose loader registers when {KNOWN_FORMATS[marker]} "
                    "is imported; this process never imported it (import it before models.load)"
                )
            return _LOADERS[marker]
    return None
