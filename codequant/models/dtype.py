"""Which floating-point dtype a model's weights load in: one rule for `--dtype` and `runner.dtype` everywhere.

`auto` is the checkpoint's own dtype (its config's `dtype` / `torch_dtype`) on a GPU, and float32 on the CPU:
CPUs without AMX or AVX512-FP16 (this machine's) have no fast half-precision matmul, so fp16/bf16 there is
slower than fp32, and the study's CPU results were all measured in fp32. On a GPU, fp16/bf16 halves the memory
and doubles the matmul throughput; CodeLlama-34B does not fit one 80 GB GPU in fp32 (135 GB) but does in fp16.

A GGUF file (the embedded models) is dequantized by transformers' converter, which writes float32; that converted
folder is the model's "own" checkpoint, so `auto` is float32 for it on every device. Ask for `float16` or
`bfloat16` explicitly to run it in half precision.

The names are those of torch (`float32`, `float16`, `bfloat16`); the short forms `fp32`, `fp16`, `bf16` are
accepted and normalised, so that a study YAML and the CLI go through the same `check_dtype`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from codequant.errors import CodequantError

DTYPES = ("auto", "float32", "float16", "bfloat16")
_ALIASES = {"fp32": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16", "float": "float32"}
_FALLBACK = "float32"  # a checkpoint that names no dtype was written by a tool that saves float32


def check_dtype(name: str) -> str:
    """The canonical dtype name for `name` (auto | float32 | float16 | bfloat16, or an alias); one clear error else."""
    text = str(name).strip().lower().removeprefix("torch.")
    text = _ALIASES.get(text, text)
    if text not in DTYPES:
        raise CodequantError(f"unknown dtype {name!r}; use one of {', '.join(DTYPES)} (or fp32, fp16, bf16)")
    return text


def torch_dtype(name: str) -> Any:
    """The torch dtype of an explicit name (not `auto`)."""
    import torch

    text = check_dtype(name)
    if text == "auto":
        raise CodequantError(
            "dtype 'auto' must be resolved against a device and a checkpoint first (resolve_dtype)"
        )
    return getattr(torch, text)


def dtype_name(dtype: Any) -> str:
    """`torch.float16` -> "float16" (what configs, keys and quantize.json record)."""
    return str(dtype).removeprefix("torch.")


def config_dtype(config: dict[str, Any]) -> str | None:
    """The dtype an HF config.json names (transformers 5 writes `dtype`, older versions `torch_dtype`), if any."""
    for key in ("dtype", "torch_dtype"):
        value = config.get(key)
        if isinstance(value, str) and value not in ("auto", ""):
            try:
                resolved = check_dtype(value)
            except CodequantError:
                continue
            if resolved != "auto":
                return resolved
    return None


def folder_dtype(folder: str | Path) -> str:
    """The own dtype of an HF folder, from its config.json (float32 when it names none)."""
    path = Path(folder) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return _FALLBACK
    return config_dtype(config) or _FALLBACK


def hub_dtype(repo: str) -> str:
    """The own dtype of a hub model, from its config (read without the weights)."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(repo).to_dict()
    except (OSError, ValueError, KeyError):
        return _FALLBACK
    return config_dtype(config) or _FALLBACK


def resolve_dtype(name: str, device: str, own: str | None) -> Any:
    """The torch dtype to load in: an explicit name as is; `auto` = `own` (the checkpoint's dtype) on a GPU,
    float32 on the CPU (see the module doc)."""
    text = check_dtype(name)
    if text != "auto":
        return torch_dtype(text)
    on_gpu = str(device).startswith("cuda")
    return torch_dtype(own or _FALLBACK) if on_gpu else torch_dtype("float32")


def model_dtype(model: Any) -> Any:
    """The dtype a loaded model computes in: its input embeddings' (quantized layers keep codebooks/scales in
    their own storage dtypes, so the first parameter is no guide)."""
    get = getattr(model, "get_input_embeddings", None)
    emb = get() if callable(get) else None
    weight = getattr(emb, "weight", None)
    if weight is not None and weight.is_floating_point():
        return weight.dtype
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    import torch

    return torch.float32
