"""Bits per weight of a whole saved model, from the files themselves.

Why: a quantizer's bits/param counts only the tensors it quantized (the decoder linears), while the embedding,
the head, norms, codebooks and scales also sit in the file; in a small model the fp tables alone can outweigh a
2-bit decoder. So the figure to put beside "2 bits" is the saved folder's: every tensor's bytes in its
`*.safetensors` files (the header and its JSON metadata excluded: they are not weights), times 8, over the
parameter count of the fp model it stands for (tied tensors counted once). An fp32 folder is exactly 32.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from codequant.errors import CodequantError


def safetensors_tensor_bytes(path: str | Path) -> int:
    """Sum of the tensors' data bytes in one safetensors file, read from its header (no tensor is loaded)."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise CodequantError(f"{path} is not a safetensors file (shorter than its header length)")
        (size,) = struct.unpack("<Q", head)
        header = json.loads(f.read(size))
    return sum(
        end - start
        for key, info in header.items()
        if key != "__metadata__"
        for start, end in [info["data_offsets"]]
    )


def folder_tensor_bytes(folder: str | Path) -> int:
    """Tensor bytes of every `*.safetensors` file directly in `folder` (sub-folders are other exports)."""
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise CodequantError(f"{folder} holds no .safetensors file to measure")
    return sum(safetensors_tensor_bytes(p) for p in files)


def whole_file_bits(folder: str | Path, parameters: int) -> dict[str, Any]:
    """{"tensor_bytes", "parameters", "bits_per_weight"} of the model saved in `folder`, whose fp model has
    `parameters` parameters."""
    if parameters <= 0:
        raise CodequantError(f"the fp model's parameter count must be positive, got {parameters}")
    size = folder_tensor_bytes(folder)
    return {"tensor_bytes": size, "parameters": int(parameters), "bits_per_weight": 8 * size / parameters}


def parameter_count(model: Any) -> int:
    """Parameters of an fp model, each tensor once (a tied head is the embedding)."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():  # parameters() already yields a shared Parameter once
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def recorded_parameters(folder: str | Path) -> int | None:
    """The fp model's parameter count recorded by the run that wrote `folder` (`accounting.model_params` in its
    codequant.json, or the quantize.json of the folder or its parent); None for folders written before it was."""
    folder = Path(folder)
    for where in (folder, folder.parent):
        for name in ("codequant.json", "quantize.json"):
            info = where / name
            if info.is_file():
                params = json.loads(info.read_text()).get("accounting", {}).get("model_params")
                if params:
                    return int(params)
    return None


def model_file_bits(spec: str | Path, model: Any) -> float | None:
    """Whole-file bits/weight of the model loaded from `spec`: the tensors of its folder over the fp parameters
    (recorded by the writing run; an fp model's own). An fp model that is not a folder of safetensors (an embedded
    GGUF, loaded converted) counts the tensors it loads. None when it cannot be known (an older quantized folder)."""
    quantized = any(not t.is_floating_point() for t in model.buffers())
    folder = Path(spec)
    params = recorded_parameters(folder) if folder.is_dir() else None
    if params is None and not quantized:
        params = parameter_count(model)
    if not params:
        return None
    if folder.is_dir() and any(folder.glob("*.safetensors")):
        return 8 * folder_tensor_bytes(folder) / params
    if quantized:
        return None
    return 8 * sum(p.numel() * p.element_size() for p in model.parameters()) / params
